"""The OpenAPI document, cloudprovisioner/openapi.json: valid, in step with web.ROUTES, served by the API,
and true of the real deployment: Schemathesis against Apache running the installed CGI (fixtures in
conftest.py), plus one request for each answer fuzzing is unlikely to reach (429, 411, 413, 502, 503,
replays...).

What the product still gets wrong is listed in KNOWN_PRODUCT_FINDINGS: each finding has a reproduction
test below, marked xfail(strict=True), so fixing one makes its test fail until the entry is removed; the
Schemathesis run tolerates exactly those failures and no others.
"""

import inspect
import json
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

import cloudprovisioner
from cloudprovisioner.web import app as web
from tests.support import http, installed_settings, knob, new_public_key, run_cron_job

DOCUMENT_PATH = Path(cloudprovisioner.__file__).with_name("openapi.json")
DOCUMENT = json.loads(DOCUMENT_PATH.read_text())
METHODS = ("get", "put", "post", "patch", "delete", "head", "options", "trace")
ORIGIN = "https://console.openapi.test"  # the one browser origin the deployment grants here
METRICS_TOKEN = "openapi-scrape-" + secrets.token_urlsafe(24)
PASSWORD = "openapi long passphrase"
VALID_SERVER = {"name": "openapi", "region": "ams3", "size": "s-1vcpu-1gb", "image": "debian-12-x64"}


# -- a. the document is valid OpenAPI 3.1 ------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1():
    assert DOCUMENT["openapi"] == "3.1.0"
    assert DOCUMENT["info"]["title"] == "CloudProvisioner"
    assert DOCUMENT["info"]["version"] == cloudprovisioner.__version__ == "0.1.0"
    assert DOCUMENT["servers"] == [{"url": "/api"}]
    schemathesis.openapi.from_path(DOCUMENT_PATH).validate()  # against the OpenAPI 3.1 meta-schema
    assert DOCUMENT_PATH.read_text() == json.dumps(DOCUMENT, indent=2, ensure_ascii=False) + "\n"  # readable


def _references(node, where="#"):
    if isinstance(node, dict):
        if "$ref" in node:
            yield where, node["$ref"]
        for key, value in node.items():
            yield from _references(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _references(value, f"{where}/{index}")


def _resolve(pointer):
    assert pointer.startswith("#/"), f"only local references: {pointer}"
    node = DOCUMENT
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_reference_resolves_and_every_component_is_used():
    used = set()
    for where, pointer in _references(DOCUMENT):
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
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as exc:
            pytest.fail(f"components/schemas/{name}: {exc}")


def _schemas_in(node, where):
    """(where, schema) of every schema below a schema: what properties, items, not and the combinators hold."""
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            children = [(f"{where}/{key}/{name}", child) for name, child in value.items()]
        elif key in ("allOf", "anyOf", "oneOf", "prefixItems"):
            children = [(f"{where}/{key}/{index}", child) for index, child in enumerate(value)]
        elif key in ("items", "not", "if", "then", "else", "contains", "propertyNames"):
            children = [(f"{where}/{key}", value)]
        else:
            continue
        for child_where, child in children:
            yield child_where, child
            yield from _schemas_in(child, child_where)


def _pascal(name):
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name))


def test_the_document_says_nothing_client_generators_drop():
    """What made openapi-python-client stop or drop models (test_generated_client.py runs it for real): a boolean
    schema (`not: {}` forbids a property; `additionalProperties: false` is a keyword, not a schema), an enum of
    mixed types, a `const` merged into a property another part of an allOf types, and a schema named like the
    enum a generator derives from an inline enum (schema name + property name)."""
    schemas = DOCUMENT["components"]["schemas"]
    found = []
    for name, schema in schemas.items():
        top = f"#/components/schemas/{name}"
        for where, child in [(top, schema), *_schemas_in(schema, top)]:
            if isinstance(child, bool):
                found.append(f"{where}: boolean schema")
                continue
            if len({type(value) for value in child.get("enum", []) if value is not None}) > 1:
                found.append(f"{where}: enum of mixed types {child['enum']}")
            if "allOf" in child and any(isinstance(merged, dict) and "const" in merged for part in child["allOf"]
                                        for merged in part.get("properties", {}).values()):
                found.append(f"{where}: const in an allOf")
            for field, property_schema in child.get("properties", {}).items():
                if isinstance(property_schema, dict) and "enum" in property_schema and "$ref" not in property_schema \
                        and _pascal(name) + _pascal(field) in schemas:
                    found.append(f"{where}/properties/{field}: its enum's derived name is a schema's")
    assert not found, "\n".join(found)


# -- b. the document and the routes agree ------------------------------------------------------------------------


def served_at(path):
    """The server URLs the document serves `path` at: its own `servers`, else the document's (`/api`)."""
    return [server["url"] for server in DOCUMENT["paths"][path].get("servers", DOCUMENT["servers"])]


def outside_api(path):
    """Whether the document serves `path` at the root: /health (under /api too) and the VMCP responder."""
    return "/" in served_at(path)


def documented_operations():
    """{(METHOD, path)} of the API under /api: the paths only outside it and the OPTIONS every path answers
    left out."""
    return {(method.upper(), path) for path, item in DOCUMENT["paths"].items() if "/api" in served_at(path)
            for method in item if method in METHODS and method != "options"}


def routed_operations():
    return {(method, template) for template, methods in web.ROUTES for method in methods}


def test_every_route_is_documented_and_every_documented_operation_is_routed():
    documented, routed = documented_operations(), routed_operations()
    assert not routed - documented, f"routes the document lacks: {sorted(routed - documented)}"
    assert not documented - routed, f"documented operations no route answers: {sorted(documented - routed)}"


def test_the_paths_outside_the_api_are_the_ones_apache_maps_onto_the_script():
    """web.OUTSIDE_API and the responder's /vmcp/<id>: each documented at "/", public, GET (and OPTIONS) only.
    Health is also under /api, listed first: generators ignore a path's own `servers` and call the document's
    (`/api`), and a client that reads them takes the first."""
    outside = {path for path in DOCUMENT["paths"] if outside_api(path)}
    assert outside == {route for route, _handler in web.OUTSIDE_API.values()} | {web.VMCP_PRETTY + "/{config_id}"}
    assert {path: served_at(path) for path in outside} == {
        "/health": ["/api", "/"], "/cgi-bin/vmcp": ["/"], "/vmcp/{config_id}": ["/"]}
    for path in outside:
        item = DOCUMENT["paths"][path]
        assert set(item) == {"servers", "get", "options"}, path
        assert item["get"]["security"] == [], path


def test_the_vmcp_responder_is_documented_as_the_code_answers():
    from cloudprovisioner import vmcp
    paths = DOCUMENT["paths"]
    for path, names in (("/cgi-bin/vmcp", {"config", "cvm_salt", "cvm_hostid"}),
                        ("/vmcp/{config_id}", {"cvm_salt", "cvm_hostid"})):
        operation = paths[path]["get"]
        parameters = {p["name"]: p for p in (_resolve(p["$ref"]) if "$ref" in p else p
                                             for p in operation["parameters"]) if p["in"] == "query"}
        assert set(parameters) == names, path
        assert parameters["cvm_salt"]["required"] is True and not parameters["cvm_hostid"]["required"]
        assert parameters["cvm_salt"]["schema"]["pattern"] == f"^{vmcp.SALT_PATTERN}$"
        assert parameters["cvm_hostid"]["schema"]["pattern"] == f"^{vmcp.HOSTID_PATTERN}$"
        # 409: a configuration or a signing key stored before today's limits (vmcp.signed).
        assert set(operation["responses"]) == {"200", "400", "404", "409", "500", "503"}, path
        answer = operation["responses"]["200"]
        assert answer["headers"]["Cache-Control"] == {"$ref": "#/components/headers/Cache-Control-No-Store"}
        assert answer["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/VmcpSignedConfiguration"}
    signed = _schema("VmcpSignedConfiguration")
    assert set(signed["required"]) == {"name", "secret", "signature"}
    assert set(signed["properties"]) == {"name", "secret", "signature", *vmcp.parameter_schema()}


def test_the_observability_endpoints_are_documented():
    paths = DOCUMENT["paths"]
    assert served_at("/health") == ["/api", "/"]  # /api/health, and /health for load balancers
    assert set(paths["/health"]) == {"servers", "get", "options"}
    assert {"200", "503"} <= set(paths["/health"]["get"]["responses"])
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
    scheme = DOCUMENT["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for template, methods in web.ROUTES:
        for method, (_handler, permission) in methods.items():
            operation = DOCUMENT["paths"][template][method.lower()]
            security = operation.get("security", DOCUMENT["security"])
            if (method, template) == ("GET", "/metrics"):  # routed as public: it checks its caller itself
                assert security == [{"bearerAuth": []}]
            elif permission is web.PUBLIC:
                assert security == [] or {} in security, (method, template)
            else:
                assert security == [{"bearerAuth": []}], (method, template)
            if security != []:
                assert "401" in operation["responses"], (method, template)


def _handler_source(handler, package="cloudprovisioner.web"):
    """The source of a route string's handler ("servers:create_server", in the HTTP layer), or of a domain
    function with package="cloudprovisioner"."""
    module_name, function_name = handler.split(":")
    __import__(f"{package}.{module_name}")
    return inspect.getsource(getattr(sys.modules[f"{package}.{module_name}"], function_name))


def test_bodies_are_documented_as_json_and_form_where_the_handler_reads_fields():
    for template, methods in web.ROUTES:
        for method, (handler, _permission) in methods.items():
            operation = DOCUMENT["paths"][template][method.lower()]
            if "request.fields()" in _handler_source(handler):
                assert set(operation["requestBody"]["content"]) == {
                    "application/json", "application/x-www-form-urlencoded"}, (method, template)
                assert {"400", "411", "413", "415", "422"} <= set(operation["responses"]), (method, template)
            else:
                assert "requestBody" not in operation, (method, template)


def _schema(name):
    return DOCUMENT["components"]["schemas"][name]


def _query_names(path):
    return {parameter["name"] for parameter in (_resolve(p["$ref"]) if "$ref" in p else p
                                                for p in DOCUMENT["paths"][path]["get"].get("parameters", []))}


def test_fields_match_the_validation_schemas():
    from cloudprovisioner import audit, servers
    from cloudprovisioner.config import Config
    config = Config({})
    create = servers.create_schema(config)
    for name in ("ServerCreate", "ServerCreateForm"):
        assert set(_schema(name)["properties"]) == set(create), name
        assert set(_schema(name)["required"]) == {key for key, field in create.items() if field.required}
        assert _schema(name)["additionalProperties"] is False
    for field, key in (("region", "CP_ALLOWED_REGIONS"), ("size", "CP_ALLOWED_SIZES"), ("image", "CP_ALLOWED_IMAGES")):
        assert _schema("ServerCreate")["properties"][field]["enum"] == config.get_list(key)
    assert _query_names("/servers") == set(servers.list_schema(config)) | {"limit", "cursor"}  # list_query's
    assert _query_names("/audit") == set(audit.list_schema())


def test_network_fields_match_the_validation_schemas():
    from cloudprovisioner import firewalls, vpcs
    from cloudprovisioner.config import Config
    config = Config({})
    for name, schema in (("FirewallCreate", firewalls.schema(config)),
                         ("FirewallUpdate", firewalls.schema(config, partial=True)),
                         ("VpcCreate", vpcs.create_schema(config)), ("VpcCreateForm", vpcs.create_schema(config))):
        assert set(_schema(name)["properties"]) == set(schema), name
        assert set(_schema(name).get("required", [])) == {key for key, field in schema.items() if field.required}
        assert _schema(name)["additionalProperties"] is False
    for form, plain in (("FirewallCreateForm", "FirewallCreate"), ("FirewallUpdateForm", "FirewallUpdate")):
        # A form cannot carry a boolean: the one field it lacks is allow_all_ports_from_anywhere.
        assert set(_schema(plain)["properties"]) - set(_schema(form)["properties"]) == {"allow_all_ports_from_anywhere"}
        assert _schema(form).get("required") == _schema(plain).get("required")
    assert _schema("VpcCreate")["properties"]["region"]["enum"] == config.get_list("CP_ALLOWED_REGIONS")
    for names, rule in ((("SshKeyCreate",), "sshkeys:create"),
                        (("WorkspaceCreate", "WorkspaceCreateForm"), "workspaces:create")):
        source = _handler_source(rule, package="cloudprovisioner")
        for name in names:
            assert all(f'"{field}": Field(' in source for field in _schema(name)["properties"]), name
            assert source.count("Field(") == len(_schema(name)["properties"]), name
            assert _schema(name)["additionalProperties"] is False
    # (path, its handler, the domain function that holds its filters when the handler does not)
    for path, handler, filters in (("/ssh-keys", "sshkeys:list_keys", None),
                                   ("/firewalls", "firewalls:list_firewalls", None),
                                   ("/vpcs", "vpcs:list_vpcs", None),
                                   ("/workspaces", "workspaces:list_workspaces", None),
                                   ("/operations", "operations:list_operations", "operations:list_schema")):
        source = _handler_source(handler)
        # list_query adds the page's limit and cursor to the handler's own filters.
        paged = {"limit", "cursor"} if "list_query(request" in source else set()
        source = _handler_source(filters, package="cloudprovisioner") if filters else source
        assert paged <= _query_names(path), path
        assert all(f'"{name}": Field(' in source for name in _query_names(path) - paged), path
        assert source.count("Field(") == len(_query_names(path) - paged), path
    assert all(f'"{name}": Field(' in _handler_source("responses:list_query") for name in ("limit", "cursor"))


def test_vmcp_fields_match_the_validation_schemas():
    from cloudprovisioner import vmcp
    for name, schema in (("VmcpConfigCreate", vmcp.schema()), ("VmcpConfigCreateForm", vmcp.schema()),
                         ("VmcpConfigUpdate", vmcp.schema(partial=True)),
                         ("VmcpConfigUpdateForm", vmcp.schema(partial=True))):
        # The aliases (`ram`) are taken before validation, as the names they stand for.
        assert set(_schema(name)["properties"]) == set(schema) | set(vmcp.ALIASES), name
        assert set(_schema(name).get("required", [])) == {key for key, field in schema.items() if field.required}
        assert _schema(name)["additionalProperties"] is False
        properties = _schema(name)["properties"]
        assert properties["name"]["pattern"] == f"^{vmcp.NAME_PATTERN}$", name
        for alias, target in vmcp.ALIASES.items():
            assert {k: v for k, v in properties[alias].items() if k != "description"} == {
                k: v for k, v in properties[target].items() if k != "description"}, (name, alias)
    stored = set(_schema("VmcpConfig")["properties"]) - {"id", "name", "secret_set", "url", "created_at",
                                                           "updated_at", "notes"}
    assert stored == set(vmcp.parameter_schema())
    assert "secret" not in _schema("VmcpConfig")["properties"]  # write-only
    flags = _schema("VmcpConfigCreateForm")["properties"]["flags"]
    assert (flags["minimum"], flags["maximum"]) == (0, 255)
    assert all(f"{bit} {meaning}" in flags["description"] for bit, meaning in vmcp.FLAG_BITS.items())
    source = _handler_source("vmcp:set_key", package="cloudprovisioner")
    for name in ("VmcpKeySet", "VmcpKeySetForm"):
        assert all(f'"{field}": Field(' in source for field in _schema(name)["properties"]), name
        assert source.count("Field(") == len(_schema(name)["properties"]), name
        assert _schema(name)["additionalProperties"] is False
    assert _schema("VmcpKeySetForm")["properties"]["bits"]["enum"] == ["2048", "3072", "4096"]
    assert _query_names("/vmcp-configs") == {"limit", "cursor"}  # list_query's, and no filters of its own
    assert "list_query(request, {})" in _handler_source("vmcp:list_configs")


# -- c. the API serves this very document --------------------------------------------------------------------------


def test_the_api_serves_this_document(apache):
    answer = http("GET", apache.url + "/api/openapi.json")
    assert answer.status == 200, answer.body[:500]
    assert answer.content_type.split(";")[0] == "application/json"
    assert answer.json == DOCUMENT


# -- known product findings -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """Something the product does that the document says it should not; the lead fixes the product."""

    key: str
    operations: frozenset
    matches: object  # (failure, case) -> bool: which Schemathesis failures this finding explains
    summary: str


def _accepted_bad(failure, case, name):
    """Schemathesis's negative_data_rejection failure, blaming the query parameter `name`."""
    return (name in case.query and "should have been rejected" in failure.message
            and f"parameter `{name}` in query" in failure.message)


KNOWN_PRODUCT_FINDINGS = ()  # none open: each fixed one is kept below as a regression test

def known_finding(failure, case):
    return next((finding for finding in KNOWN_PRODUCT_FINDINGS
                 if case.operation.label in finding.operations and finding.matches(failure, case)), None)


# -- d. the real deployment conforms to the document (Schemathesis) -----------------------------------------------

# Bounded and deterministic: a fixed seed, derandomized generation, a fixed number of examples per operation in
# the fuzzing phase; the coverage phase adds its fixed boundary cases (and undeclared methods, which must be 405).
CONFIG = schemathesis.Config.from_dict({
    "seed": 20261123,
    "generation": {"max-examples": 12, "deterministic": True, "database": "none"},
    "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "502"]}},
})
SCHEMA = schemathesis.openapi.from_path(DOCUMENT_PATH, config=CONFIG)
CLOUD_CALLING = {"POST /servers", "DELETE /servers/{server_id}", "POST /servers/{server_id}/actions"}


def only_the_cloud_answers_502(ctx, response, case):
    """A 502 is the cloud refusing or failing (documented); not_a_server_error lets 502 through for this."""
    if response.status_code == 502:
        assert case.operation.label in CLOUD_CALLING, f"502 from {case.operation.label}, which calls no cloud"
        assert response.json()["type"] == "urn:cloudprovisioner:problem:cloud-error", response.text
    return None


def header(response, name):
    """One header of a Schemathesis response (its names are lower case, its values lists), or None."""
    return (response.headers.get(name.lower()) or [None])[0]


def media_type_parameters_conform(ctx, response, case):
    """Media type parameters the document names (`text/plain; version=0.0.4`) are the ones sent."""
    definition = case.operation.responses.find_by_status_code(response.status_code)
    documented = list((definition.definition if definition else {}).get("content", {}))
    sent = header(response, "Content-Type") or ""
    for media_type in documented:
        wanted = {part.strip() for part in media_type.split(";")[1:]}
        if wanted and media_type.split(";")[0] == sent.split(";")[0].strip():
            got = {part.strip() for part in sent.split(";")[1:]}
            assert wanted <= got, f"Content-Type {sent!r}; the document says {media_type!r}"
    return None


def problems_name_their_request(ctx, response, case):
    """A problem's `instance` is `urn:request:` + the X-Request-Id sent with it."""
    if (header(response, "Content-Type") or "").startswith("application/problem+json"):
        instance = response.json().get("instance")
        assert instance == f"urn:request:{header(response, 'X-Request-Id')}", instance
    return None


CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance,
               response_headers_conformance, media_type_parameters_conform, problems_name_their_request]
CHECKS = [not_a_server_error, only_the_cloud_answers_502, *CONFORMANCE, negative_data_rejection, ignored_auth,
          unsupported_method, allow_header_conformance]


class Deployment:
    """The installed service behind Apache, a tenant admin logged in over HTTP, and real resources to aim at.

    Operations that would end or weaken the module's own session get fresh credentials or fresh targets of
    their own, so every operation is tested and none is excluded. Every other positive example (counted per
    operation, so deterministic) is aimed at something real:
    - POST /auth/logout ends a fresh session every positive example: by its access token, by its refresh
      token in the body, or (every third) the example goes out as generated;
    - POST /auth/refresh and POST /auth/login get a fresh session's refresh token, or real credentials;
    - DELETE /users/{id}, DELETE /tokens/{id}, DELETE /servers/{id}, POST /operations/{id}/cancel,
      DELETE /ssh-keys/{id}, DELETE /vpcs/{id}, PATCH and DELETE /firewalls/{id}, PATCH and DELETE
      /vmcp-configs/{id} get a resource made for that example; PATCH /users/{id} a user made for it (never the
      admin itself);
    - the reads and POST /servers/{id}/actions get a ready server and its create operation, its SSH key,
      firewall (the tenant's default), VPC (the region's default) and workspace (`default`); the reads of a VMCP
      configuration and the responder (`/vmcp/{id}`, `/cgi-bin/vmcp?config=`) a configuration of the tenant;
    - OPTIONS gets the allowed Origin.
    Negative examples go out as generated (with the admin's token where the operation needs one).
    """

    def __init__(self, apache, installed, db):
        self.root, self.api, self.installed, self.db = apache.url, apache.url + "/api", installed, db
        self.counters = {}
        self.serial = 0
        self.email = "admin@openapi.test"
        registered = self.post("/auth/register", {"tenant_name": "OpenAPI", "name": "Olga Admin",
                                                  "email": self.email, "password": PASSWORD})
        assert registered.status == 201, registered.body
        self.session = self.login(self.email)
        self.auth = self.bearer(self.session["access_token"])
        self.victim_id, _email = self.new_user()
        self.key = self.new_key()
        self.ready = self.new_server(ssh_keys=[self.key])
        time.sleep(1.2)  # the sandbox activates droplets after a second
        job = run_cron_job(installed, "monitor_new_node")
        assert job.returncode == 0 and "1 ready" in job.stdout, (job.stdout, job.stderr)
        server = self.get(f"/servers/{self.ready['id']}").json
        assert server["status"] == "ready"
        self.firewall_id, self.vpc_id = server["firewall_ids"][0], server["vpc_id"]
        self.vmcp_config = self.new_vmcp_config()

    # -- plain HTTP, as the admin unless told otherwise

    @staticmethod
    def bearer(token):
        return {"Authorization": f"Bearer {token}"}

    def post(self, path, body, headers=None):
        return http("POST", self.api + path, body, headers=headers)

    def get(self, path):
        return http("GET", self.api + path, headers=self.auth)

    def unthrottle(self):
        """Fuzzed logins may block this client address (a documented 429); our own logins must still work."""
        try:
            self.db.update("DELETE FROM login_throttle WHERE scope LIKE 'addr:%%'")
        finally:
            self.db.close()  # the next use reconnects (a test stops and starts MariaDB)

    def login(self, email):
        self.unthrottle()
        answer = self.post("/auth/login", {"email": email, "password": PASSWORD})
        assert answer.status == 200, answer.body
        return answer.json

    def unique(self, prefix):
        self.serial += 1
        return f"{prefix}-{self.serial}"

    def new_user(self):
        """A viewer of the tenant: its id and email."""
        email = self.unique("viewer") + "@openapi.test"
        answer = self.post("/users", {"name": "Victor Victim", "email": email, "role": "viewer",
                                      "password": PASSWORD}, self.auth)
        assert answer.status == 201, answer.body
        return answer.json["id"], email

    def new_token(self, secret=False):
        answer = self.post("/tokens", {"name": self.unique("token")}, self.auth)
        assert answer.status == 201, answer.body
        return answer.json["token" if secret else "id"]

    def new_server(self, **fields):
        answer = self.post("/servers", dict(VALID_SERVER, name=self.unique("openapi"), **fields), self.auth)
        assert answer.status == 202, answer.body
        return {"id": answer.json["id"], "operation": answer.json["operation"]["id"]}

    def new_key(self):
        answer = self.post("/ssh-keys", {"name": self.unique("key"), "public_key": new_public_key()}, self.auth)
        assert answer.status == 201, answer.body
        return answer.json["id"]

    def new_firewall(self):
        answer = self.post("/firewalls", {"name": self.unique("fw"), "inbound_rules": [
            {"protocol": "tcp", "ports": "22", "sources": {"addresses": ["192.0.2.0/24"]}}]}, self.auth)
        assert answer.status == 202, answer.body
        return answer.json["id"]

    def new_vmcp_config(self):
        answer = self.post("/vmcp-configs", {"name": self.unique("vm"), "secret": "openapi-secret", "memory": 2048,
                                             "cpus": 2, "flags": 49, "userData": "[cernvm]\nusers=user:users:user\n"},
                           self.auth)
        assert answer.status == 201, answer.body
        return answer.json["id"]

    def new_vpc(self):
        """A VPC of its own in 10.200.0.0/16 (clear of CP_VPC_POOL and the cloud's own), skipping fuzzed ones."""
        for _ in range(256):
            self.serial += 1
            answer = self.post("/vpcs", {"name": self.unique("vpc"), "region": "ams3",
                                         "ip_range": f"10.200.{self.serial % 256}.0/24"}, self.auth)
            if answer.status != 409:
                assert answer.status == 202, answer.body
                return answer.json["id"]
        pytest.fail("no free /24 left in 10.200.0.0/16")

    # -- one generated case

    def turn(self, label):
        """How many positive examples of this operation came before (deterministic: derandomized)."""
        self.counters[label] = self.counters.get(label, 0) + 1
        return self.counters[label]

    def prepare(self, case):
        """Aim the case; answer the headers to send and the base URL."""
        label = case.operation.label
        public = case.operation.definition.raw.get("security") == []
        headers = {} if public else dict(self.auth)
        positive = case.meta is None or case.meta.generation.mode.is_positive
        aimed_ids = {
            "PATCH /users/{user_id}": lambda: {"user_id": self.victim_id},
            "DELETE /users/{user_id}": lambda: {"user_id": self.new_user()[0]},
            "DELETE /tokens/{token_id}": lambda: {"token_id": self.new_token()},
            "GET /servers/{server_id}": lambda: {"server_id": self.ready["id"]},
            "GET /servers/{server_id}/status": lambda: {"server_id": self.ready["id"]},
            "POST /servers/{server_id}/actions": lambda: {"server_id": self.ready["id"]},
            "DELETE /servers/{server_id}": lambda: {"server_id": self.new_server()["id"]},
            "PATCH /servers/{server_id}": lambda: {"server_id": self.new_server()["id"]},
            "GET /operations/{operation_id}": lambda: {"operation_id": self.ready["operation"]},
            "POST /operations/{operation_id}/cancel": lambda: {"operation_id": self.new_server()["operation"]},
            "GET /ssh-keys/{key_id}": lambda: {"key_id": self.key},
            "DELETE /ssh-keys/{key_id}": lambda: {"key_id": self.new_key()},
            "GET /firewalls/{firewall_id}": lambda: {"firewall_id": self.firewall_id},
            "PATCH /firewalls/{firewall_id}": lambda: {"firewall_id": self.new_firewall()},
            "DELETE /firewalls/{firewall_id}": lambda: {"firewall_id": self.new_firewall()},
            "GET /vpcs/{vpc_id}": lambda: {"vpc_id": self.vpc_id},
            "DELETE /vpcs/{vpc_id}": lambda: {"vpc_id": self.new_vpc()},
            "GET /workspaces/{workspace_name}": lambda: {"workspace_name": "default"},
            "GET /vmcp-configs/{config_id}": lambda: {"config_id": self.vmcp_config},
            "PATCH /vmcp-configs/{config_id}": lambda: {"config_id": self.new_vmcp_config()},
            "DELETE /vmcp-configs/{config_id}": lambda: {"config_id": self.new_vmcp_config()},
            "GET /vmcp/{config_id}": lambda: {"config_id": self.vmcp_config},
        }
        if label == "POST /auth/logout":
            headers = {}  # never the module's own session
            if positive:
                turn, session = self.turn(label), self.login(self.email)
                if turn % 3 == 1:
                    headers = self.bearer(session["access_token"])
                elif turn % 3 == 2 and isinstance(case.body, dict):
                    case.headers.pop("Authorization", None)  # a generated bearer would be read first
                    case.body["refresh_token"] = session["refresh_token"]
        elif positive and label in aimed_ids and self.turn(label) % 2 == 0:
            case.path_parameters.update(aimed_ids[label]())
        elif positive and label == "GET /cgi-bin/vmcp" and isinstance(case.query, dict) and self.turn(label) % 2:
            case.query["config"] = self.vmcp_config
        elif positive and label == "POST /auth/refresh" and isinstance(case.body, dict) and self.turn(label) % 2:
            case.body["refresh_token"] = self.login(self.email)["refresh_token"]
        elif positive and label == "POST /auth/login" and isinstance(case.body, dict) and self.turn(label) % 2:
            self.unthrottle()
            case.body.update(email=self.email, password=PASSWORD)
        elif positive and case.method == "OPTIONS" and self.turn(label) % 2:
            headers = {"Origin": ORIGIN}
        return headers, self.base_url(case)

    def base_url(self, case):
        """Where the document serves the case's path; a path served at two places (health) takes each in turn."""
        served = served_at(case.path)
        where = served[self.turn(f"served at: {case.operation.label}") % len(served)]
        return {"/api": self.api, "/": self.root}[where]


@pytest.fixture(scope="module")
def deployment(apache, installed, sandbox):
    from cloudprovisioner.config import load
    from cloudprovisioner.db import Database
    db = Database(load(environ={}, path=installed / "etc" / "cloudprovisioner.env"))
    # Every registration and password reset of the module (fuzzed ones too) comes from this one address.
    with installed_settings(installed, CP_CORS_ORIGINS=ORIGIN, CP_METRICS_TOKEN=METRICS_TOKEN,
                            CP_MAIL_MAX_PER_ADDRESS="1000"):
        try:
            yield Deployment(apache, installed, db)
        finally:
            knob(sandbox, "DELETE", "/_sandbox/faults")
            db.close()
            db.update("DELETE FROM login_throttle")  # leave no block behind for later tests
            db.close()


# Apache maps only configuration ids under /vmcp/ (apache/cloudprovisioner.conf): a request for any other path
# there never reaches the service, and Apache answers it with a page of its own, outside the document.
CONFIGURATION_ID = re.compile(r"[0-9a-hjkmnp-tv-z]{26}")


def answered_by_apache_alone(case):
    config_id = (case.path_parameters or {}).get("config_id")
    return case.operation.path == "/vmcp/{config_id}" and not CONFIGURATION_ID.fullmatch(str(config_id))


@SCHEMA.parametrize()
def test_the_deployment_conforms_to_the_document(case, deployment):
    headers, base_url = deployment.prepare(case)
    if answered_by_apache_alone(case):
        response = case.call(base_url=base_url, headers=headers)
        assert response.status_code in (403, 404) and "X-Request-Id" not in response.headers, response.text
        return
    try:
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)
    except FailureGroup as group:
        if not all(known_finding(failure, case) for failure in group.exceptions):
            raise


# -- d'. the answers fuzzing rarely reaches, one request each, checked against the document --------------------------


def call(deployment, label, *, expect, headers=None, base_url=None, **case_fields):
    """One request for the operation `label` ("METHOD /path"), validated against the document like the fuzzing."""
    method, path = label.split(" ", 1)
    transport = {key: case_fields.pop(key) for key in ("data",) if key in case_fields}
    if "body" in case_fields:
        case_fields.setdefault("media_type", "application/json")
    case = SCHEMA[path][method].Case(**case_fields)
    base_url, headers = base_url or deployment.api, deployment.auth if headers is None else headers
    response = case.call(base_url=base_url, headers=headers, **transport)
    try:
        case.validate_response(response, checks=CONFORMANCE, headers=headers)
    except FailureGroup as group:
        if not all(known_finding(failure, case) for failure in group.exceptions):
            raise
    assert response.status_code == expect, response.text
    return response


def test_too_many_failed_logins_is_429_with_retry_after(deployment):
    email = deployment.unique("throttled") + "@openapi.test"
    for _ in range(5):  # CP_LOGIN_MAX_FAILURES
        call(deployment, "POST /auth/login", body={"email": email, "password": "wrong"}, headers={}, expect=401)
    answer = call(deployment, "POST /auth/login", body={"email": email, "password": "wrong"}, headers={}, expect=429)
    assert int(header(answer, "Retry-After")) > 0


def test_malformed_and_refused_bodies(deployment):
    json_type = {**deployment.auth, "Content-Type": "application/json"}
    call(deployment, "POST /servers", headers=json_type, data=b'{"name": ', expect=400)
    call(deployment, "POST /servers", headers=json_type, data=b"[1, 2]", expect=400)
    call(deployment, "POST /servers", headers=json_type, data=b"\xff\xfe", expect=400)
    call(deployment, "POST /servers", headers=json_type, data=b"x" * 100_001, expect=413)  # CP_MAX_BODY_BYTES
    call(deployment, "POST /servers", headers={**deployment.auth, "Content-Type": "text/plain"}, data=b"name=x",
         expect=415)
    # What requests cannot send: a bad escape (urllib3 would quote it), a POST with no Content-Length at all.
    check_raw(deployment, "GET /servers", "?limit=%ZZ", expect=400)
    check_raw(deployment, "POST /servers", "", expect=411)


def check_raw(deployment, label, query, *, expect):
    """Send `label` with http.client exactly as written (no body, no Content-Length), validate like the rest."""
    from http.client import HTTPConnection
    from urllib.parse import urlsplit
    method, path = label.split(" ", 1)
    url = deployment.api + path + query
    connection = HTTPConnection(urlsplit(url).netloc, timeout=30)
    try:
        connection.putrequest(method, urlsplit(url).path + query)
        for name, value in {**deployment.auth, "Content-Type": "application/json"}.items():
            connection.putheader(name, value)
        connection.endheaders()
        answer = connection.getresponse()
        body, headers = answer.read(), answer.getheaders()
    finally:
        connection.close()
    response = schemathesis.Response(status_code=answer.status, content=body, elapsed=0.0, verify=True,
                                     headers={name: [value] for name, value in headers},
                                     request=requests.Request(method, url).prepare())
    SCHEMA[path][method].Case().validate_response(response, checks=CONFORMANCE)
    assert answer.status == expect, body


def test_a_form_create_and_an_idempotent_replay(deployment):
    form = dict(VALID_SERVER, name="form-1", tags="web,demo")
    created = call(deployment, "POST /servers", body=form, media_type="application/x-www-form-urlencoded",
                   expect=202)
    assert created.json()["tags"] == ["web", "demo"]
    key = {**deployment.auth, "Idempotency-Key": f'"{deployment.unique("deploy")}"'}
    first = call(deployment, "POST /servers", body=dict(VALID_SERVER, name="idem-1"), headers=key, expect=202)
    again = call(deployment, "POST /servers", body=dict(VALID_SERVER, name="idem-1"), headers=key, expect=202)
    assert header(again, "Idempotent-Replayed") == "true" and again.json()["id"] == first.json()["id"]
    other = call(deployment, "POST /servers", body=dict(VALID_SERVER, name="idem-2"), headers=key, expect=422)
    assert other.json()["type"].endswith(":idempotency-key-reused")
    call(deployment, "POST /servers", body=VALID_SERVER, headers={**deployment.auth, "Idempotency-Key": '""'},
         expect=400)


def test_roles_tokens_and_bad_credentials(deployment):
    viewer = deployment.bearer(deployment.login(deployment.new_user()[1])["access_token"])
    call(deployment, "POST /servers", body=VALID_SERVER, headers=viewer, expect=403)
    call(deployment, "GET /metrics", headers=viewer, expect=403)
    call(deployment, "POST /tokens", body={"name": "too strong", "role": "admin"}, headers=viewer, expect=422)
    api_token = deployment.bearer(deployment.new_token(secret=True))
    me = call(deployment, "GET /me", headers=api_token, expect=200)
    assert me.json()["authenticated_by"]["type"] == "api_token"
    call(deployment, "POST /tokens", body={"name": "from a token"}, headers=api_token, expect=403)
    call(deployment, "GET /metrics", headers=deployment.bearer(METRICS_TOKEN), expect=200)
    refused = call(deployment, "GET /me", headers=deployment.bearer("not.a.token"), expect=401)
    assert 'error="invalid_token"' in header(refused, "WWW-Authenticate")
    session = deployment.login(deployment.email)
    call(deployment, "POST /auth/refresh", body={"refresh_token": session["refresh_token"]}, headers={}, expect=200)
    call(deployment, "POST /auth/refresh", body={"refresh_token": session["refresh_token"]}, headers={}, expect=401)
    call(deployment, "POST /auth/register", headers={}, expect=409,
         body={"tenant_name": "Again", "name": "Olga", "email": deployment.email, "password": PASSWORD})


def test_conflicts(deployment):
    # A tenant of its own: the module's tenant has more admins by now (fuzzing creates users).
    solo = {"tenant_name": "Solo", "name": "Sol", "email": deployment.unique("solo") + "@openapi.test",
            "password": PASSWORD}
    assert deployment.post("/auth/register", solo).status == 201
    sole_admin = deployment.bearer(deployment.login(solo["email"])["access_token"])
    me = {"user_id": call(deployment, "GET /me", headers=sole_admin, expect=200).json()["id"]}
    call(deployment, "PATCH /users/{user_id}", path_parameters=me, body={"role": "viewer"}, headers=sole_admin,
         expect=409)
    call(deployment, "DELETE /users/{user_id}", path_parameters=me, headers=sole_admin, expect=409)
    pending = deployment.new_server()
    call(deployment, "POST /servers/{server_id}/actions", path_parameters={"server_id": pending["id"]},
         body={"type": "reboot"}, expect=409)
    cancel = {"operation_id": pending["operation"]}
    call(deployment, "POST /operations/{operation_id}/cancel", path_parameters=cancel, expect=202)
    call(deployment, "POST /operations/{operation_id}/cancel", path_parameters=cancel, expect=409)
    ready = {"server_id": deployment.ready["id"]}
    action = call(deployment, "POST /servers/{server_id}/actions", path_parameters=ready, body={"type": "reboot"},
                  expect=202)
    call(deployment, "POST /operations/{operation_id}/cancel", path_parameters={"operation_id": action.json()["id"]},
         expect=409)
    doomed = {"server_id": deployment.new_server()["id"]}
    assert "operation" in call(deployment, "DELETE /servers/{server_id}", path_parameters=doomed, expect=202).json()
    assert "operation" not in call(deployment, "DELETE /servers/{server_id}", path_parameters=doomed,
                                   expect=202).json()


def test_pages_are_linked(deployment):
    # Two of each at least, so every list has a next page at limit=1 (whether fuzzing made more or not yet:
    # the tests run in random order).
    deployment.new_server(), deployment.new_vmcp_config()
    for label in ("GET /servers", "GET /operations", "GET /audit", "GET /vmcp-configs"):
        answer = call(deployment, label, query={"limit": 1}, expect=200)
        assert header(answer, "Link").endswith('>; rel="next"'), label
        link = header(answer, "Link")[1:header(answer, "Link").index(">")]
        call(deployment, label, query=dict(pair.split("=") for pair in link.split("?")[1].split("&")), expect=200)


def vmcp_salt():
    return secrets.token_urlsafe(48)[:64].replace("_", "-")


def test_the_vmcp_responder_answers_signed_and_refuses_as_documented(deployment):
    from tests.vmcpclient import verify
    public = {"base_url": deployment.root, "headers": {}}
    config, salt = {"config_id": deployment.vmcp_config}, vmcp_salt()
    key = call(deployment, "GET /vmcp-key", expect=200).json()
    for label, fields in (("GET /vmcp/{config_id}", {"path_parameters": config}),
                          ("GET /cgi-bin/vmcp", {"query": {"config": deployment.vmcp_config}})):
        query = {**fields.get("query", {}), "cvm_salt": salt, "cvm_hostid": "openapi-host"}
        answer = call(deployment, label, **{**fields, "query": query}, **public, expect=200)
        assert header(answer, "Cache-Control") == "no-store"
        assert answer.json()["secret"] == "openapi-secret" and verify(answer.content, salt, key["public_key_pem"])
        assert not verify(answer.content, vmcp_salt(), key["public_key_pem"])
        for bad in ({"cvm_salt": salt[:-1]}, {"cvm_salt": salt[:-1] + "_"}, {"cvm_hostid": "a b"}):
            call(deployment, label, **{**fields, "query": {**query, **bad}}, **public, expect=400)
    call(deployment, "GET /cgi-bin/vmcp", query={"cvm_salt": salt}, **public, expect=400)  # no config
    call(deployment, "GET /cgi-bin/vmcp", query={"config": "01m8440000000000000000000z", "cvm_salt": salt},
         **public, expect=404)
    call(deployment, "GET /vmcp/{config_id}", path_parameters={"config_id": "01m8440000000000000000000z"},
         query={"cvm_salt": salt}, **public, expect=404)


def test_vmcp_configurations_and_keys_refuse_as_documented(deployment, tmp_path):
    made = call(deployment, "POST /vmcp-configs", body={"name": deployment.unique("old"), "secret": "s", "ram": 256},
                expect=201)
    assert made.json()["memory"] == 256 and made.json()["notes"] and "secret" not in made.json()
    taken = {"name": made.json()["name"], "secret": "s"}
    call(deployment, "POST /vmcp-configs", body=taken, expect=409)
    call(deployment, "PATCH /vmcp-configs/{config_id}", path_parameters={"config_id": deployment.new_vmcp_config()},
         body={"name": taken["name"]}, expect=409)
    for wrong in ({"ram": 256, "memory": 256}, {"diskURL": "https://example.org/disk.iso"}, {"cpus": 1.5}):
        call(deployment, "POST /vmcp-configs", body={"name": deployment.unique("bad"), "secret": "s", **wrong},
             expect=422)
    # A tenant of its own, without a key: the platform's signs, and without the platform's key nothing can.
    solo = {"tenant_name": "Keyless", "name": "Kim", "email": deployment.unique("keys") + "@openapi.test",
            "password": PASSWORD}
    assert deployment.post("/auth/register", solo).status == 201
    admin = deployment.bearer(deployment.login(solo["email"])["access_token"])
    theirs = call(deployment, "POST /vmcp-configs", body={"name": "vm", "secret": "s"}, headers=admin, expect=201)
    responder = {"path_parameters": {"config_id": theirs.json()["id"]}, "query": {"cvm_salt": vmcp_salt()},
                 "base_url": deployment.root, "headers": {}}
    assert call(deployment, "GET /vmcp-key", headers=admin, expect=200).json()["source"] == "platform"
    with installed_settings(deployment.installed, CP_VMCP_PLATFORM_KEY=""):
        refused = call(deployment, "GET /vmcp-key", headers=admin, expect=503)
        assert refused.json()["type"].endswith(":no-signing-key")
        call(deployment, "GET /vmcp/{config_id}", **responder, expect=503)
    call(deployment, "DELETE /vmcp-key", headers=admin, expect=404)
    pem = tmp_path / "domain.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(pem), "2048"], check=True, capture_output=True)
    own = call(deployment, "POST /vmcp-key", body={"private_key": pem.read_text()}, headers=admin,
               media_type="application/x-www-form-urlencoded", expect=201)
    assert own.json()["source"] == "tenant" and "PRIVATE" not in own.text
    call(deployment, "POST /vmcp-key", body={"private_key": pem.read_text(), "generate": True}, headers=admin,
         expect=422)
    call(deployment, "POST /vmcp-key", body={"generate": True, "bits": "1024"}, headers=admin, expect=422)
    with installed_settings(deployment.installed, CP_VMCP_PLATFORM_KEY=""):  # its own key signs now
        call(deployment, "GET /vmcp/{config_id}", **responder, expect=200)
    call(deployment, "DELETE /vmcp-key", headers=admin, expect=204)
    viewer = deployment.bearer(deployment.login(deployment.new_user()[1])["access_token"])
    call(deployment, "POST /vmcp-configs", body={"name": "vm", "secret": "s"}, headers=viewer, expect=403)
    call(deployment, "POST /vmcp-key", body={"generate": True}, headers=viewer, expect=403)


def test_cors_grants_only_the_allowed_origin(deployment):
    granted = call(deployment, "OPTIONS /servers", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
                   expect=204)
    assert header(granted, "Access-Control-Allow-Origin") == ORIGIN
    assert set(header(granted, "Access-Control-Allow-Methods").split(", ")) == {"GET", "POST", "OPTIONS"}
    stranger = call(deployment, "OPTIONS /servers", headers={"Origin": "https://elsewhere.example"}, expect=204)
    assert header(stranger, "Access-Control-Allow-Origin") is None
    assert header(call(deployment, "GET /me", headers={**deployment.auth, "Origin": ORIGIN},
                expect=200), "Access-Control-Allow-Origin") == ORIGIN


def test_cloud_failures_are_502_and_503(deployment, sandbox):
    # An allow-list naming an image the cloud does not have: the platform takes it, the cloud refuses it.
    with installed_settings(deployment.installed, CP_ALLOWED_IMAGES="debian-12-x64,no-such-image"):
        refused = call(deployment, "POST /servers", body=dict(VALID_SERVER, image="no-such-image"), expect=502)
    assert refused.json()["type"] == "urn:cloudprovisioner:problem:cloud-error"
    actions = f"/v2/droplets/{deployment.get('/servers/' + deployment.ready['id']).json['instance_id']}/actions"
    fault = {"status": 500, "method": "POST", "path_prefix": actions}
    assert knob(sandbox, "POST", "/_sandbox/faults", fault).status == 201
    ready = {"server_id": deployment.ready["id"]}
    failed = call(deployment, "POST /servers/{server_id}/actions", path_parameters=ready, body={"type": "power_on"},
                  expect=502)
    assert int(header(failed, "Retry-After")) > 0
    assert knob(sandbox, "POST", "/_sandbox/faults", {"status": 429, "retry_after": 3600, "method": "POST",
                                                      "path_prefix": "/v2/droplets"}).status == 201
    limited = call(deployment, "POST /servers", body=VALID_SERVER, expect=503)
    assert limited.json()["type"] == "urn:cloudprovisioner:problem:cloud-rate-limited"
    assert int(header(limited, "Retry-After")) > 0


def test_without_the_database_health_is_503_and_the_api_503_with_retry_after(deployment, mariadb):
    mariadb.stop()
    try:
        for base_url in (deployment.root, deployment.api):
            health = call(deployment, "GET /health", base_url=base_url, headers={}, expect=503)
            assert health.json()["status"] == "unhealthy"
            assert health.json()["checks"]["database"]["status"] == "down"
        assert call(deployment, "GET /version", headers={}, expect=200).json()["schema_version"] is None
        down = call(deployment, "GET /servers", expect=503)
        assert int(header(down, "Retry-After")) > 0
    finally:
        mariadb.start()
    assert call(deployment, "GET /health", base_url=deployment.root, headers={}, expect=200).json()["status"] in (
        "healthy", "degraded")


# -- answers this document caught wrong once, and the lead fixed: kept as regressions ------------------------------


def test_next_page_links_are_well_formed_uris(deployment):
    deployment.new_server(), deployment.new_server()  # so /servers has a next page at limit=1
    for path in ("/audit", "/servers", "/operations"):
        for limit in ("%D9%A1", "%EF%BC%91", "%201"):
            answer = deployment.get(f"{path}?limit={limit}")
            assert answer.status in (200, 422), (path, limit, answer.status)
            link = answer.headers.get("link", "<>")
            uri = link[link.index("<") + 1:link.index(">")]
            assert uri.isascii() and " " not in uri, (path, limit, link)


def test_metrics_are_served_as_documented(deployment):
    answer = http("GET", deployment.api + "/metrics", headers=deployment.bearer(METRICS_TOKEN))
    assert answer.status == 200
    assert answer.content_type.replace(" ", "").startswith("text/plain;version=0.0.4")


def test_health_answers_options_and_refuses_other_methods(deployment):
    for base_url in (deployment.root, deployment.api):
        preflight = http("OPTIONS", base_url + "/health", headers={"Origin": ORIGIN})
        assert (preflight.status, preflight.headers.get("allow")) == (204, "GET, OPTIONS"), base_url
        for method in ("POST", "DELETE"):
            refused = http(method, base_url + "/health", b"", "application/json")
            assert (refused.status, refused.headers.get("allow")) == (405, "GET, OPTIONS"), (base_url, method)


def test_empty_filters_are_refused(deployment):
    for path in ("/audit?user=", "/audit?action=", "/audit?since=", "/audit?until=", "/operations?target="):
        answer = deployment.get(path)
        assert answer.status == 422, (path, answer.status, answer.body[:200])


def test_audit_times_are_real_utc_times(deployment):
    arabic_indic = "".join(chr(0x660 + int(c)) if c.isdigit() else c for c in "2026-11-23T10:00:00Z")
    for since in (arabic_indic, "2026-13-45T99:99:99Z"):
        answer = deployment.get("/audit?limit=1&since=" + requests.utils.quote(since))
        assert answer.status == 422, (since, answer.status, answer.body[:200])


def test_disabled_must_be_a_boolean(deployment):
    for value in (0, 1, 0.0, 1.0):
        answer = http("PATCH", f"{deployment.api}/users/{deployment.victim_id}", {"disabled": value},
                      headers=deployment.auth)
        assert answer.status == 422, (value, answer.status, answer.body[:200])


def test_a_chunked_body_is_read_and_answered_whole(deployment):
    """Apache hands a chunked body to CGI without a length: it is read (up to the limit), and answered intact."""
    operation = SCHEMA["/servers"]["POST"]
    for body, status in ((b"{}", 422), (b'{"description": "' + b"x" * 100_001 + b'"}', 413)):
        response = requests.post(deployment.api + "/servers", data=iter([body]), timeout=30,
                                 headers={**deployment.auth, "Content-Type": "application/json"})
        assert response.status_code == status
        operation.Case(media_type="application/json").validate_response(response, checks=CONFORMANCE)
