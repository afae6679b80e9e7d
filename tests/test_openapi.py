"""The OpenAPI document, cloudprovisioner/openapi.json: valid, in step with web.ROUTES, served by the
API, and true of the real deployment (Schemathesis against Apache running the installed CGI).
"""

import json
import time
from pathlib import Path

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import cloudprovisioner
from cloudprovisioner import web
from tests.support import http, installed_settings, run_cron_job

DOCUMENT_PATH = Path(cloudprovisioner.__file__).with_name("openapi.json")
DOCUMENT = json.loads(DOCUMENT_PATH.read_text())
METHODS = ("get", "put", "post", "patch", "delete", "head", "options", "trace")
ORIGIN = "https://console.openapi.test"  # the one browser origin the deployment grants here
PASSWORD = "openapi long passphrase"


# -- a. the document is valid OpenAPI 3.1 ------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1():
    assert DOCUMENT["openapi"] == "3.1.0"
    assert DOCUMENT["info"]["title"] == "CloudProvisioner"
    assert DOCUMENT["info"]["version"] == cloudprovisioner.__version__ == "0.1.0"
    assert DOCUMENT["servers"] == [{"url": "/api"}]
    schemathesis.openapi.from_path(DOCUMENT_PATH).validate()  # against the OpenAPI 3.1 meta-schema


def _refs(node, where="#"):
    if isinstance(node, dict):
        if "$ref" in node:
            yield where, node["$ref"]
        for key, value in node.items():
            yield from _refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _refs(value, f"{where}/{index}")


def _resolve(pointer):
    assert pointer.startswith("#/"), f"only local references: {pointer}"
    node = DOCUMENT
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_reference_resolves_and_every_component_is_used():
    used = set()
    for where, pointer in _refs(DOCUMENT):
        try:
            _resolve(pointer)
        except (KeyError, TypeError):
            pytest.fail(f"{where}: $ref {pointer} does not resolve")
        used.add(pointer)
    unused = {f"#/components/{kind}/{name}" for kind, entries in DOCUMENT["components"].items()
              if kind != "securitySchemes" for name in entries} - used
    assert not unused, f"components nothing refers to: {sorted(unused)}"


def test_every_schema_is_a_valid_json_schema_2020_12():
    from jsonschema import Draft202012Validator
    for name, schema in DOCUMENT["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema), name


# -- b. the document and the routes agree ------------------------------------------------------------------------


def documented_operations():
    """{(METHOD, path)} of the API under /api: /health (outside it) and the OPTIONS every path answers left out."""
    return {(method.upper(), path) for path, item in DOCUMENT["paths"].items() if path != "/health"
            for method in item if method in METHODS and method != "options"}


def routed_operations():
    return {(method, template) for template, methods in web.ROUTES for method in methods}


def test_every_route_is_documented_and_every_documented_operation_is_routed():
    documented, routed = documented_operations(), routed_operations()
    assert not routed - documented, f"routes the document lacks: {sorted(routed - documented)}"
    assert not documented - routed, f"documented operations no route answers: {sorted(documented - routed)}"


def test_the_observability_endpoints_are_documented():
    paths = DOCUMENT["paths"]
    assert [server["url"] for server in paths["/health"]["servers"]] == ["/"]  # outside /api
    assert set(paths["/health"]["get"]["responses"]) >= {"200", "503"}
    assert paths["/health"]["get"]["security"] == []
    for path in ("/openapi.json", "/version"):
        assert paths[path]["get"]["security"] == []
        assert "200" in paths[path]["get"]["responses"]
    metrics = paths["/metrics"]["get"]
    assert "security" not in metrics  # the global bearer: an admin's token or CP_METRICS_TOKEN
    assert list(metrics["responses"]["200"]["content"]) == ["text/plain; version=0.0.4"]
    assert {"401", "403"} <= set(metrics["responses"])


def test_every_path_answers_options_without_credentials():
    for path, item in DOCUMENT["paths"].items():
        assert item["options"]["security"] == [], path
        assert "204" in item["options"]["responses"], path


def test_security_matches_the_route_permissions():
    """Public routes need no credentials (logout takes one optionally); every other one the bearer scheme."""
    assert DOCUMENT["security"] == [{"bearerAuth": []}]
    assert DOCUMENT["components"]["securitySchemes"]["bearerAuth"] == {
        **DOCUMENT["components"]["securitySchemes"]["bearerAuth"], "type": "http", "scheme": "bearer"}
    for template, methods in web.ROUTES:
        for method, (_handler, permission) in methods.items():
            operation = DOCUMENT["paths"][template][method.lower()]
            security = operation.get("security", DOCUMENT["security"])
            if (method, template) == ("GET", "/metrics"):  # routed as public: it checks its caller itself
                assert security == [{"bearerAuth": []}]
            elif permission is web.PUBLIC:
                assert {} in security or security == [], (method, template)
            else:
                assert security == [{"bearerAuth": []}], (method, template)
                assert "401" in operation["responses"], (method, template)


def test_bodies_are_documented_as_json_and_form_where_the_handler_reads_fields():
    import inspect
    import sys
    for template, methods in web.ROUTES:
        for method, (handler, _permission) in methods.items():
            module_name, function_name = handler.split(":")
            __import__(f"cloudprovisioner.{module_name}")
            source = inspect.getsource(getattr(sys.modules[f"cloudprovisioner.{module_name}"], function_name))
            operation = DOCUMENT["paths"][template][method.lower()]
            if "request.fields()" in source:
                assert set(operation["requestBody"]["content"]) == {
                    "application/json", "application/x-www-form-urlencoded"}, (method, template)
                assert {"400", "411", "413", "415", "422"} <= set(operation["responses"]), (method, template)
            else:
                assert "requestBody" not in operation, (method, template)


def _schema(name):
    return DOCUMENT["components"]["schemas"][name]


def test_fields_match_the_validation_schemas():
    from cloudprovisioner import audit, servers
    from cloudprovisioner.config import Config
    config = Config({})
    create = servers.create_schema(config)
    for name in ("ServerCreate", "ServerCreateForm"):
        assert set(_schema(name)["properties"]) == set(create), name
        assert set(_schema(name)["required"]) == {key for key, field in create.items() if field.required}
        assert _schema(name)["additionalProperties"] is False
    assert _schema("ServerCreate")["properties"]["region"]["enum"] == config.get_list("CP_ALLOWED_REGIONS")
    assert _schema("ServerCreate")["properties"]["size"]["enum"] == config.get_list("CP_ALLOWED_SIZES")
    assert _schema("ServerCreate")["properties"]["image"]["enum"] == config.get_list("CP_ALLOWED_IMAGES")

    def query_names(path):
        return {parameter["name"] for parameter in (_resolve(p["$ref"]) if "$ref" in p else p
                                                    for p in DOCUMENT["paths"][path]["get"]["parameters"])}
    assert query_names("/servers") == set(servers.list_schema(config))
    assert query_names("/audit") == set(audit._list_schema())
    assert query_names("/operations") == {"status", "kind", "target", "limit", "cursor"}


# -- c. the API serves this very document --------------------------------------------------------------------------


def test_the_api_serves_this_document(apache):
    answer = http("GET", apache.url + "/api/openapi.json")
    assert answer.status == 200, answer.body[:500]
    assert answer.content_type.split(";")[0] == "application/json"
    assert answer.json == DOCUMENT


# -- d. the real deployment conforms to the document (Schemathesis) -----------------------------------------------

# Bounded and deterministic: a fixed seed, derandomized generation, a fixed number of examples per operation.
CONFIG = schemathesis.Config.from_dict({
    "seed": 20261123,
    "generation": {"max-examples": 12, "deterministic": True, "database": "none"},
    "phases": {"coverage": {"enabled": False}},
    "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "502"]}},
})
SCHEMA = schemathesis.openapi.from_path(DOCUMENT_PATH, config=CONFIG)
CLOUD_CALLING = {"POST /servers", "DELETE /servers/{server_id}", "POST /servers/{server_id}/actions"}


def only_the_cloud_answers_502(ctx, response, case):
    """A 502 is the cloud refusing or failing (a documented answer); anything else 5xx is a server error."""
    if response.status_code == 502:
        assert case.operation.label in CLOUD_CALLING, f"502 from {case.operation.label}, which calls no cloud"
        assert response.json()["type"] == "urn:cloudprovisioner:problem:cloud-error", response.text
    return None


def media_type_parameters_conform(ctx, response, case):
    """Media type parameters the document names (`text/plain; version=0.0.4`) are the ones sent."""
    definition = case.operation.responses.find_by_status_code(response.status_code)
    documented = list((definition.definition if definition else {}).get("content", {}))
    sent = response.headers.get("content-type", [""])[0]
    for media_type in documented:
        wanted = {part.strip() for part in media_type.split(";")[1:]}
        if wanted and media_type.split(";")[0] == sent.split(";")[0].strip():
            got = {part.strip() for part in sent.split(";")[1:]}
            assert wanted <= got, f"Content-Type {sent!r}; the document says {media_type!r}"
    return None


def problems_name_their_request(ctx, response, case):
    """A problem's `instance` is `urn:request:` + the X-Request-Id sent with it."""
    if response.headers.get("content-type", [""])[0].startswith("application/problem+json"):
        instance = response.json().get("instance")
        request_id = response.headers.get("x-request-id", [None])[0]
        assert instance == f"urn:request:{request_id}", (instance, request_id)
    return None


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, only_the_cloud_answers_502, media_type_parameters_conform,
          problems_name_their_request]


class Deployment:
    """The installed service behind Apache, a tenant admin logged in over HTTP, and real resources to aim at.

    Operations that would end or weaken the module's own session get fresh credentials or fresh targets of
    their own, so every operation is tested and none is excluded:
    - POST /auth/logout ends a fresh session each example (its access token, or its refresh token in the body);
    - POST /auth/refresh and POST /auth/login use a fresh session or real credentials every other example;
    - DELETE /users/{id}, DELETE /tokens/{id}, DELETE /servers/{id}, POST /operations/{id}/cancel aim every
      other example at a resource made for it; PATCH /users/{id} at a user made for that;
    - the reads and POST /servers/{id}/actions aim every other example at a ready server.
    The generated value is kept for the other examples (mostly ids nobody has: 404).
    """

    def __init__(self, apache, installed, db):
        self.root, self.api, self.installed, self.db = apache.url, apache.url + "/api", installed, db
        self.counters = {}
        self.serial = 0
        self.email = "admin@openapi.test"
        registered = self.post("/auth/register", {"tenant_name": "OpenAPI", "name": "Olga Admin",
                                                  "email": self.email, "password": PASSWORD})
        assert registered.status == 201, registered.body
        self.token = self.login(self.email)["access_token"]
        self.auth = {"Authorization": f"Bearer {self.token}"}
        self.victim_id = self.new_user()
        self.ready = self.new_server()
        time.sleep(1.2)  # the sandbox activates droplets after a second
        job = run_cron_job(installed, "monitor_new_node")
        assert job.returncode == 0 and "1 ready" in job.stdout, (job.stdout, job.stderr)
        assert self.get(f"/servers/{self.ready['id']}").json["status"] == "ready"

    # -- plain HTTP, as the admin unless told otherwise

    def post(self, path, body, headers=None):
        return http("POST", self.api + path, body, headers=headers)

    def get(self, path):
        return http("GET", self.api + path, headers=self.auth)

    def unthrottle(self):
        """Fuzzed logins may block this client address (a documented 429); our own logins must still work."""
        self.db.update("DELETE FROM login_throttle WHERE scope LIKE 'addr:%%'")

    def login(self, email):
        self.unthrottle()
        answer = self.post("/auth/login", {"email": email, "password": PASSWORD})
        assert answer.status == 200, answer.body
        return answer.json

    def unique(self, prefix):
        self.serial += 1
        return f"{prefix}-{self.serial}"

    def new_user(self):
        answer = self.post("/users", {"name": "Victor Victim", "email": self.unique("victim") + "@openapi.test",
                                      "role": "viewer", "password": PASSWORD}, self.auth)
        assert answer.status == 201, answer.body
        return answer.json["id"]

    def new_token(self):
        answer = self.post("/tokens", {"name": self.unique("token")}, self.auth)
        assert answer.status == 201, answer.body
        return answer.json["id"]

    def new_server(self):
        answer = self.post("/servers", {"name": self.unique("openapi"), "region": "ams3", "size": "s-1vcpu-1gb",
                                        "image": "debian-12-x64"}, self.auth)
        assert answer.status == 202, answer.body
        return {"id": answer.json["id"], "operation": answer.json["operation"]["id"]}

    # -- one generated case

    def aimed(self, label):
        """Every other example (deterministically) is aimed at a real resource."""
        self.counters[label] = self.counters.get(label, 0) + 1
        return self.counters[label] % 2 == 0

    def prepare(self, case):
        """The headers to send and the base URL for this case, after aiming it."""
        label = case.operation.label
        headers = dict(self.auth)
        path_ids = {
            "PATCH /users/{user_id}": lambda: {"user_id": self.victim_id},
            "DELETE /users/{user_id}": lambda: {"user_id": self.new_user()},
            "DELETE /tokens/{token_id}": lambda: {"token_id": self.new_token()},
            "GET /servers/{server_id}": lambda: {"server_id": self.ready["id"]},
            "GET /servers/{server_id}/status": lambda: {"server_id": self.ready["id"]},
            "POST /servers/{server_id}/actions": lambda: {"server_id": self.ready["id"]},
            "DELETE /servers/{server_id}": lambda: {"server_id": self.new_server()["id"]},
            "GET /operations/{operation_id}": lambda: {"operation_id": self.ready["operation"]},
            "POST /operations/{operation_id}/cancel": lambda: {"operation_id": self.new_server()["operation"]},
        }
        if case.method == "OPTIONS":
            headers = {"Origin": ORIGIN} if self.aimed(label) else {}
        elif label in path_ids:
            if self.aimed(label):
                case.path_parameters.update(path_ids[label]())
        elif label == "POST /auth/logout":
            session = self.login(self.email)
            headers = {"Authorization": f"Bearer {session['access_token']}"} if self.aimed(label) else {}
            if not headers and isinstance(case.body, dict):
                case.body["refresh_token"] = session["refresh_token"]
        elif label == "POST /auth/refresh":
            headers = {}
            if self.aimed(label) and isinstance(case.body, dict):
                case.body["refresh_token"] = self.login(self.email)["refresh_token"]
        elif label == "POST /auth/login":
            headers = {}
            if self.aimed(label) and isinstance(case.body, dict):
                self.unthrottle()
                case.body.update(email=self.email, password=PASSWORD)
        elif case.operation.definition.raw.get("security") == []:
            headers = {}
        base_url = self.root if case.path == "/health" else self.api
        return headers, base_url


@pytest.fixture(scope="module")
def deployment(apache, installed, sandbox):
    from cloudprovisioner.config import load
    from cloudprovisioner.db import Database
    db = Database(load(environ={}, path=installed / "etc" / "cloudprovisioner.env"))
    with installed_settings(installed, CP_CORS_ORIGINS=ORIGIN):
        try:
            yield Deployment(apache, installed, db)
        finally:
            db.update("DELETE FROM login_throttle")  # leave no block behind for later tests
            db.close()


@SCHEMA.parametrize()
def test_the_deployment_conforms_to_the_document(case, deployment):
    headers, base_url = deployment.prepare(case)
    case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)
