"""A client nobody here wrote: openapi-python-client generates one from the document the running API serves
(`GET /api/openapi.json` through the real Apache), and that client alone walks the API.

The generator must print nothing but the line naming what it generated: any model or endpoint it reports
dropped or skipped (a warning) fails the generation test. Each answer is parsed into the generated model,
so a response the document describes wrongly fails here as a client would.
"""

import ast
import importlib
import os
import pkgutil
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support import http, new_public_key

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PASSWORD = "generated client passphrase"
UNKNOWN_ID = "01m8440000000000000000000z"  # well-formed, never made


@pytest.fixture(scope="module")
def generation(apache, tmp_path_factory):
    """One run of the generator against the served document: (its exit status, its output, the package).

    The package's name is unique so that no module of another run (or a same-named package) is imported."""
    folder = tmp_path_factory.mktemp("generated-client")
    package = folder / f"cloudprovisioner_client_{secrets.token_hex(4)}"
    # Its post hooks run ruff, which lives beside this interpreter.
    env = dict(os.environ, PATH=f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run([str(GENERATOR), "generate", "--url", f"{apache.url}/api/openapi.json", "--meta", "none",
                           "--output-path", str(package), "--fail-on-warning"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=folder)
    return done.returncode, done.stdout + done.stderr, package


def complaints(output, package):
    """Every line of the generator's output but the one naming what it generated: its warnings (a model or
    an endpoint dropped, a response omitted) and errors, which it prints as paragraphs."""
    return [line for line in output.splitlines() if line.strip() and line.strip() != f"Generating {package}"]


def test_the_served_document_generates_a_client_without_a_warning(generation):
    returncode, output, package = generation
    assert complaints(output, package) == [], output
    assert returncode == 0, output
    assert output.strip() == f"Generating {package}"
    assert {"api", "models", "client.py", "types.py"} <= {path.name for path in package.iterdir()}


def operations_with_a_required_body_in_two_media_types(document):
    return {operation["operationId"] for item in document["paths"].values() for operation in item.values()
            if isinstance(operation, dict) and operation.get("requestBody", {}).get("required")
            and len(operation["requestBody"]["content"]) > 1}


def work_around_the_missing_unset_import(package, document):
    """openapi-python-client's open bug #1451: an operation with a required body in two media types (JSON and
    a form, as most writes here) gets `body: ... | Unset = UNSET` without importing `Unset`, so its module
    cannot be imported. Add the import to those modules only; a module of any other operation missing a name
    is another bug and fails. Answers the operations patched."""
    patched = set()
    for module in sorted((package / "api").rglob("*.py")):
        text = module.read_text()
        tree = ast.parse(text)
        imported = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    for alias in node.names}
        if "Unset" in {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} - imported:
            module.write_text(text.replace("from ...types import ", "from ...types import Unset\nfrom ...types import ",
                                           1))
            patched.add(module.stem)
    assert patched <= operations_with_a_required_body_in_two_media_types(document), patched
    return patched


@pytest.fixture(scope="module")
def client_package(generation, apache):
    """The generated package, imported (after the work-around above); removed from sys.modules after the module."""
    returncode, output, package = generation
    if returncode != 0 or not package.is_dir():
        pytest.fail(f"the generator made no client:\n{output}")
    work_around_the_missing_unset_import(package, http("GET", apache.url + "/api/openapi.json").json)
    sys.path.insert(0, str(package.parent))
    try:
        yield importlib.import_module(package.name)
    finally:
        sys.path.remove(str(package.parent))
        for name in [name for name in sys.modules if name.split(".")[0] == package.name]:
            del sys.modules[name]


def test_every_module_of_the_generated_client_imports(client_package):
    broken = {}
    for module in pkgutil.walk_packages(client_package.__path__, client_package.__name__ + "."):
        try:
            importlib.import_module(module.name)
        except Exception as error:  # noqa: BLE001 (any failure to import is what this test reports)
            broken[module.name] = repr(error)
    assert broken == {}


class Generated:
    """The generated package's operations (`api("servers.get_server")`) and models (`models.Server`)."""

    def __init__(self, package, base_url):
        self.package, self.base_url = package, base_url
        self.models = importlib.import_module(f"{package.__name__}.models")

    def api(self, name):
        return importlib.import_module(f"{self.package.__name__}.api.{name}")

    def anonymous(self):
        return self.package.Client(base_url=self.base_url, raise_on_unexpected_status=True, timeout=30)

    def signed_in(self, token):
        return self.package.AuthenticatedClient(base_url=self.base_url, token=token, raise_on_unexpected_status=True,
                                                timeout=30)


@pytest.fixture
def generated(client_package, apache):
    return Generated(client_package, apache.url + "/api")


def answer(response, status, model):
    """The parsed answer of a `sync_detailed` call, after checking its status and the model it was parsed into."""
    assert response.status_code == status, response.content
    assert type(response.parsed) is model, (type(response.parsed), response.content)
    return response.parsed


def register_and_log_in(generated, email):
    """A new tenant through the generated client: the session's access token and the registration."""
    models, client = generated.models, generated.anonymous()
    registered = answer(generated.api("accounts.register").sync_detailed(client=client, body=models.RegisterRequest(
        tenant_name="Generated", name="Gene Rated", email=email, password=PASSWORD)), 201, models.Registration)
    assert (registered.user.email, registered.user.role.value, registered.tenant.name) == (email, "admin",
                                                                                          "Generated")
    session = answer(generated.api("sessions.login").sync_detailed(client=client, body=models.LoginRequest(
        email=email, password=PASSWORD)), 200, models.TokenPair)
    assert session.token_type == "Bearer" and session.expires_in > 0
    return session.access_token, registered


def create_server(generated, client, name, ssh_key_id):
    models = generated.models
    body = models.ServerCreate(name=name, region=models.ServerCreateRegion("ams3"),
                               size=models.ServerCreateSize("s-1vcpu-1gb"),
                               image=models.ServerCreateImage("debian-12-x64"), ssh_keys=[ssh_key_id])
    server = answer(generated.api("servers.create_server").sync_detailed(client=client, body=body), 202,
                    models.AcceptedServer)
    assert (server.name, server.status, server.ssh_key_ids) == (name, models.ServerState.PENDING, [ssh_key_id])
    assert server.operation.kind.value == "server.create"
    return server


def next_cursor(response):
    """The cursor of the `Link: <...>; rel="next"` header, or None on the last page."""
    link = response.headers.get("link")
    if link is None:
        return None
    assert link.endswith('>; rel="next"'), link
    return parse_qs(urlsplit(link[1:link.index(">")]).query)["cursor"][0]


def page_through_servers(generated, client):
    """Every server, one per page, following each page's next link: their names in order."""
    names, cursor, list_servers = [], None, generated.api("servers.list_servers")
    for _ in range(10):
        response = list_servers.sync_detailed(client=client, limit=1, **({"cursor": cursor} if cursor else {}))
        page = answer(response, 200, list)
        assert len(page) == 1 and type(page[0]) is generated.models.Server
        names.append(page[0].name)
        cursor = next_cursor(response)
        if cursor is None:
            return names
    pytest.fail(f"more pages than servers: {names}")


def test_health_through_the_generated_client(generated):
    health = answer(generated.api("meta.health").sync_detailed(client=generated.anonymous()), 200,
                    generated.models.Health)
    assert health.status.value in ("healthy", "degraded")
    assert health.checks.database.status.value == "ok"


def test_a_walk_through_the_api_with_the_generated_client(generated, smtp):
    email = f"walk-{secrets.token_hex(4)}@generated.test"
    token, registered = register_and_log_in(generated, email)
    assert any(str(registered.tenant.id) in mail.get_content() for mail in smtp.messages if mail["To"] == email)
    models, client = generated.models, generated.signed_in(token)
    key = answer(generated.api("ssh_keys.create_ssh_key").sync_detailed(client=client, body=models.SshKeyCreate(
        name="laptop", public_key=new_public_key())), 201, models.SshKey)
    first = create_server(generated, client, "gen-1", key.id)
    create_server(generated, client, "gen-2", key.id)
    assert page_through_servers(generated, client) == ["gen-1", "gen-2"]  # oldest first
    server = answer(generated.api("servers.get_server").sync_detailed(first.id, client=client), 200, models.Server)
    assert (server.id, server.name, server.region, server.firewall_ids != []) == (first.id, "gen-1", "ams3", True)
    operations = answer(generated.api("operations.list_operations").sync_detailed(client=client), 200, list)
    assert all(type(operation) is models.Operation for operation in operations)
    assert first.operation.id in {operation.id for operation in operations}
    walk_the_network(generated, client, first.id)
    deleting = answer(generated.api("servers.delete_server").sync_detailed(first.id, client=client), 202,
                      models.DeletingServer)
    assert (deleting.id, deleting.status) == (first.id, models.ServerState.DELETING)


def walk_the_network(generated, client, server_id):
    """A workspace, a firewall and a VPC made through the generated client, and the default workspace read."""
    models = generated.models
    workspace = answer(generated.api("workspaces.create_workspace").sync_detailed(
        client=client, body=models.WorkspaceCreate(name="team-a")), 201, models.Workspace)
    assert (workspace.name, workspace.default) == ("team-a", False)
    default = answer(generated.api("workspaces.get_workspace").sync_detailed("default", client=client), 200,
                     models.WorkspaceDetail)
    assert server_id in {server.id for server in default.servers} and default.counts.pending == 2
    rule = models.FirewallInboundRuleType0(protocol=models.FirewallInboundRuleType0Protocol("tcp"), ports="22",
                                           sources=models.FirewallTargets(addresses=["192.0.2.0/24"]))
    body = models.FirewallCreate(name="ssh-only", inbound_rules=[rule])
    firewall = answer(generated.api("firewalls.create_firewall").sync_detailed(client=client, body=body), 202,
                      models.AcceptedFirewall)
    assert firewall.inbound_rules[0].sources.addresses == ["192.0.2.0/24"]
    assert firewall.operation.kind.value == "firewall.create"
    vpc = answer(generated.api("vpcs.create_vpc").sync_detailed(client=client, body=models.VpcCreate(
        name="lab", region=models.VpcCreateRegion("ams3"), ip_range="10.200.7.0/24")), 202, models.AcceptedVpc)
    assert (vpc.name, vpc.ip_range, vpc.operation.kind.value) == ("lab", "10.200.7.0/24", "vpc.create")


def test_refusals_parse_into_the_generated_problem_models(generated):
    token, _registered = register_and_log_in(generated, f"refusals-{secrets.token_hex(4)}@generated.test")
    models, client = generated.models, generated.signed_in(token)
    create_workspace = generated.api("workspaces.create_workspace")
    invalid = answer(create_workspace.sync_detailed(client=client, body=models.WorkspaceCreate(name="Not A Name!")),
                     422, models.ValidationProblem)
    assert (invalid.status, invalid.type_) == (422, "urn:cloudprovisioner:problem:invalid-fields")
    assert list(invalid.errors.additional_properties) == ["name"]
    missing = answer(generated.api("servers.get_server").sync_detailed(UNKNOWN_ID, client=client), 404,
                     models.Problem)
    assert (missing.status, missing.type_, missing.detail) == (404, "urn:cloudprovisioner:problem:not-found",
                                                               "no such server")
    answer(create_workspace.sync_detailed(client=client, body=models.WorkspaceCreate(name="twice")), 201,
           models.Workspace)
    taken = answer(create_workspace.sync_detailed(client=client, body=models.WorkspaceCreate(name="twice")), 409,
                   models.Problem)
    assert (taken.status, taken.type_) == (409, "urn:cloudprovisioner:problem:workspace-name-taken")
    assert taken.instance.startswith("urn:request:")
