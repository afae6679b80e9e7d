"""Who may call what: the role x endpoint matrix, 401s, tenant isolation, role changes taking effect at once.

The expected answer of every (endpoint, role) is written out below (EXPECTED_LEAST_ROLE, and the order of
ROLES): the matrix never asks auth.PERMISSIONS or web.ROUTES what the answer should be, so a permission
that moves in the production table fails the matrix cell it changes, not only the test that pins the table.
The route table is read once, to check that the matrix covers exactly the routes web/app.py serves.
"""

import json
import secrets

import pytest

from cloudprovisioner import auth
from cloudprovisioner.ids import new_id
from cloudprovisioner.web import app as web
from tests.support import TEST_TOKEN, Client, assert_problem, http, new_public_key

ROLES = ("viewer", "developer", "operator", "admin")
SERVER = {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}
FIREWALL = {"name": "web", "inbound_rules": [{"protocol": "tcp", "ports": "443",
                                              "sources": {"addresses": ["0.0.0.0/0", "::/0"]}}]}
VMCP_CONFIG = {"name": "analysis-vm", "secret": "s3cret", "memory": 2048, "cpus": 2, "flags": 49}
_VPC_RANGES = iter(f"192.168.{n}.0/24" for n in range(256))
PASSWORD = "long enough password"
CHALLENGE = 'Bearer realm="cloudprovisioner"'

# The permission table as it is meant to be: (method, route) -> the least role allowed.
# Routes are templates, as in web.ROUTES: `/users/{user_id}`.
EXPECTED_LEAST_ROLE = {
    ("GET", "/me"): "viewer",
    ("POST", "/me/password"): "viewer",
    ("GET", "/users"): "admin",
    ("POST", "/users"): "admin",
    ("PATCH", "/users/{user_id}"): "admin",
    ("DELETE", "/users/{user_id}"): "admin",
    ("GET", "/users/{user_id}/tokens"): "admin",
    ("DELETE", "/users/{user_id}/tokens/{token_id}"): "admin",
    ("GET", "/tokens"): "viewer",
    ("POST", "/tokens"): "viewer",
    ("DELETE", "/tokens/{token_id}"): "viewer",
    ("GET", "/servers"): "viewer",
    ("POST", "/servers"): "operator",
    ("GET", "/servers/{server_id}"): "viewer",
    ("PATCH", "/servers/{server_id}"): "operator",
    ("DELETE", "/servers/{server_id}"): "operator",
    ("GET", "/servers/{server_id}/status"): "viewer",
    ("POST", "/servers/{server_id}/actions"): "operator",
    ("GET", "/operations"): "viewer",
    ("GET", "/operations/{operation_id}"): "viewer",
    ("POST", "/operations/{operation_id}/cancel"): "operator",
    ("GET", "/ssh-keys"): "viewer",
    ("POST", "/ssh-keys"): "developer",
    ("GET", "/ssh-keys/{key_id}"): "viewer",
    ("DELETE", "/ssh-keys/{key_id}"): "developer",
    ("GET", "/firewalls"): "viewer",
    ("POST", "/firewalls"): "operator",
    ("GET", "/firewalls/{firewall_id}"): "viewer",
    ("PATCH", "/firewalls/{firewall_id}"): "operator",
    ("DELETE", "/firewalls/{firewall_id}"): "operator",
    ("GET", "/vpcs"): "viewer",
    ("POST", "/vpcs"): "operator",
    ("GET", "/vpcs/{vpc_id}"): "viewer",
    ("DELETE", "/vpcs/{vpc_id}"): "operator",
    ("GET", "/workspaces"): "viewer",
    ("POST", "/workspaces"): "operator",
    ("GET", "/workspaces/{workspace_name}"): "viewer",
    ("GET", "/vmcp-configs"): "viewer",
    ("POST", "/vmcp-configs"): "operator",
    ("GET", "/vmcp-configs/{config_id}"): "viewer",
    ("PATCH", "/vmcp-configs/{config_id}"): "operator",
    ("DELETE", "/vmcp-configs/{config_id}"): "operator",
    ("GET", "/vmcp-key"): "viewer",
    ("POST", "/vmcp-key"): "admin",
    ("DELETE", "/vmcp-key"): "admin",
    ("GET", "/audit"): "admin",
    ("GET", "/admin/orphans"): "admin",  # and a platform admin (test_identity checks the flag alone)
    ("GET", "/costs"): "viewer",
    ("GET", "/admin/costs"): "admin",  # and a platform admin (test_costs checks the flag alone)
    ("GET", "/quota"): "viewer",
    ("GET", "/tenants/{tenant_id}/quota"): "admin",  # and a platform admin
    ("PATCH", "/tenants/{tenant_id}/quota"): "admin",  # and a platform admin
}
# Anyone may call these (they authenticate the caller themselves, if at all).
EXPECTED_PUBLIC = {("POST", "/auth/register"), ("POST", "/auth/login"), ("POST", "/auth/refresh"),
                   ("POST", "/auth/logout"), ("GET", "/openapi.json"), ("GET", "/version"), ("GET", "/health"),
                   ("GET", "/verify-email"), ("POST", "/verify-email"), ("POST", "/password-reset"),
                   ("POST", "/password-reset/confirm"), ("POST", "/invitations/accept"),
                   ("GET", "/metrics")}  # /metrics checks its caller itself: a platform admin or the scrape token


# Every method but GET may change something, so each refusal of one is on record in the audit log.
AUDITED_METHODS = {"POST", "PATCH", "DELETE"}
# Over the whole platform: their ids may name any tenant, and anyone but a platform admin gets 403 whatever the id
# (test_quotas checks that a tenant admin's answers are the same for its own, another and a made-up tenant).
PLATFORM_ID_ENDPOINTS = {("GET", "/tenants/{tenant_id}/quota"), ("PATCH", "/tenants/{tenant_id}/quota")}
ID_ENDPOINTS = sorted(key for key in EXPECTED_LEAST_ROLE if "{" in key[1] and key not in PLATFORM_ID_ENDPOINTS)


def allowed(role, endpoint):
    """What the table above says: the endpoint's least role and every role after it in ROLES."""
    return ROLES.index(role) >= ROLES.index(EXPECTED_LEAST_ROLE[endpoint])


def served_routes():
    """{(method, template): permission} of web.ROUTES: what the app serves, for the coverage check only."""
    table = {}
    for template, methods in web.ROUTES:
        for method, (_handler, permission) in methods.items():
            assert (method, template) not in table, "two routes with the same template"
            table[(method, template)] = permission
    return table


def routed_pattern(path):
    """The template web/app.py routes this path to (so a case's request reaches the route it is about)."""
    _params, methods = web.match_route(path)
    return next(pattern for pattern, candidate in web.ROUTES if candidate is methods)


def case_id(endpoint):
    return f"{endpoint[0]} {endpoint[1]}"


class Scene:
    """Real targets for a request: servers and users made by the tenant's admin, tokens owned by `owner`."""

    def __init__(self, admin, owner, owner_email, db):
        self.admin, self.owner, self.owner_email, self.db = admin, owner, owner_email, db

    def server(self):
        answer = self.admin.post("/servers", SERVER)
        assert answer.status == 202, answer.body
        return answer.json["id"]

    def platform_admin(self):
        """Flag the caller a platform admin: a role below admin must still be refused."""
        self.db.update("UPDATE users SET platform_admin = 1 WHERE email = %s", (self.owner_email,))

    def tenant_quota(self):
        """The caller's own tenant's quota, the caller flagged a platform admin (it needs the flag)."""
        self.platform_admin()
        return f"/tenants/{tenant_of(self.db, self.owner_email)}/quota"

    def operation(self):
        answer = self.admin.post("/servers", SERVER)
        assert answer.status == 202, answer.body
        return answer.json["operation"]["id"]

    def ready_server(self):
        server_id = self.server()
        self.db.update("UPDATE servers SET status = 'ready' WHERE id = %s", (server_id,))
        return server_id

    def user(self):
        answer = self.admin.post("/users", {"name": "Target", "email": "target@acme.test", "role": "viewer",
                                            "password": PASSWORD})
        assert answer.status == 201, answer.body
        return answer.json["id"]

    def ssh_key(self):
        answer = self.admin.post("/ssh-keys", {"name": new_id(), "public_key": new_public_key()})
        assert answer.status == 201, answer.body
        return answer.json["id"]

    def own_ssh_key(self):
        """A key of the caller's own; made directly when the caller's role may not add keys."""
        answer = self.owner.post("/ssh-keys", {"name": "mine", "public_key": new_public_key()})
        if answer.status == 201:
            return answer.json["id"]
        key_id = new_id()
        user = self.db.one("SELECT id, tenant_id FROM users WHERE email = %s", (self.owner_email,))
        self.db.update("INSERT INTO ssh_keys (id, tenant_id, user_id, name, public_key, algorithm, bits, fingerprint, "
                       "sha256, created_at) VALUES (%s, %s, %s, 'mine', 'ssh-ed25519 AAAA', 'ssh-ed25519', 256, %s, "
                       "'SHA256:x', UTC_TIMESTAMP(6))", (key_id, user["tenant_id"], user["id"], key_id[:26]))
        return key_id

    def firewall(self):
        answer = self.admin.post("/firewalls", dict(FIREWALL, name=f"fw-{new_id()}"))
        assert answer.status == 202, answer.body
        return answer.json["id"]

    def vpc(self):
        answer = self.admin.post("/vpcs", {"name": f"net-{new_id()}", "region": "nyc3", "ip_range": next(_VPC_RANGES)})
        assert answer.status == 202, answer.body
        return answer.json["id"]

    def workspace(self):
        answer = self.admin.post("/workspaces", {"name": "team-a"})
        assert answer.status == 201, answer.body
        return answer.json["name"]

    def vmcp_config(self):
        answer = self.admin.post("/vmcp-configs", dict(VMCP_CONFIG, name=f"vm-{new_id()}"))
        assert answer.status == 201, answer.body
        return answer.json["id"]

    def vmcp_key(self):
        answer = self.admin.post("/vmcp-key", {"generate": True})
        assert answer.status == 201, answer.body

    def owner_id(self):
        return self.db.one("SELECT id FROM users WHERE email = %s", (self.owner_email,))["id"]

    def own_token(self):
        """A token of the caller's own (DELETE /tokens/<id> only finds the caller's tokens)."""
        answer = self.owner.post("/tokens", {"name": "mine"})
        if answer.status == 201:
            return answer.json["id"]
        # Only if the table ever refuses this role POST /tokens: make the token directly.
        token_id = new_id()
        user = self.db.one("SELECT id FROM users WHERE email = %s", (self.owner_email,))
        self.db.update("INSERT INTO api_tokens (id, user_id, name, role, token_hash, created_at) "
                       "VALUES (%s, %s, 'mine', 'viewer', %s, UTC_TIMESTAMP(6))",
                       (token_id, user["id"], auth.token_hash(auth.API_TOKEN_PREFIX + secrets.token_urlsafe(32))))
        return token_id


# For each protected endpoint: a request on real targets, as (path, body, status when allowed).
# The bodies are complete and valid, so an allowed call must succeed, not merely get past the 403.
REQUESTS = {
    ("GET", "/me"): lambda s: ("/me", None, 200),
    ("POST", "/me/password"): lambda s: ("/me/password", {"current_password": PASSWORD,
                                                         "password": "another long password"}, 204),
    ("GET", "/users"): lambda s: ("/users", None, 200),
    ("POST", "/users"): lambda s: ("/users", {"name": "New", "email": "new@acme.test", "role": "viewer",
                                              "password": PASSWORD}, 201),
    ("PATCH", "/users/{user_id}"): lambda s: (f"/users/{s.user()}", {"name": "Renamed"}, 200),
    ("DELETE", "/users/{user_id}"): lambda s: (f"/users/{s.user()}", None, 204),
    ("GET", "/users/{user_id}/tokens"): lambda s: (f"/users/{s.user()}/tokens", None, 200),
    ("DELETE", "/users/{user_id}/tokens/{token_id}"): lambda s: (f"/users/{s.owner_id()}/tokens/{s.own_token()}",
                                                                 None, 204),
    ("GET", "/tokens"): lambda s: ("/tokens", None, 200),
    ("POST", "/tokens"): lambda s: ("/tokens", {"name": "ci"}, 201),
    ("DELETE", "/tokens/{token_id}"): lambda s: (f"/tokens/{s.own_token()}", None, 204),
    ("GET", "/servers"): lambda s: ("/servers", None, 200),
    ("POST", "/servers"): lambda s: ("/servers", SERVER, 202),
    ("GET", "/servers/{server_id}"): lambda s: (f"/servers/{s.server()}", None, 200),
    ("PATCH", "/servers/{server_id}"): lambda s: (f"/servers/{s.server()}", {"ttl": "8h"}, 200),
    ("DELETE", "/servers/{server_id}"): lambda s: (f"/servers/{s.server()}", None, 202),
    ("GET", "/servers/{server_id}/status"): lambda s: (f"/servers/{s.server()}/status", None, 200),
    ("POST", "/servers/{server_id}/actions"): lambda s: (f"/servers/{s.ready_server()}/actions",
                                                         {"type": "reboot"}, 202),
    ("GET", "/operations"): lambda s: ("/operations", None, 200),
    ("GET", "/operations/{operation_id}"): lambda s: (f"/operations/{s.operation()}", None, 200),
    ("POST", "/operations/{operation_id}/cancel"): lambda s: (f"/operations/{s.operation()}/cancel", None, 202),
    ("GET", "/audit"): lambda s: ("/audit", None, 200),
    ("GET", "/admin/orphans"): lambda s: (s.platform_admin(), "/admin/orphans", None, 200)[1:],
    ("GET", "/costs"): lambda s: ("/costs", None, 200),
    ("GET", "/admin/costs"): lambda s: (s.platform_admin(), "/admin/costs", None, 200)[1:],
    ("GET", "/quota"): lambda s: ("/quota", None, 200),
    ("GET", "/tenants/{tenant_id}/quota"): lambda s: (s.tenant_quota(), None, 200),
    ("PATCH", "/tenants/{tenant_id}/quota"): lambda s: (s.tenant_quota(), {"servers": 30}, 200),
    ("GET", "/ssh-keys"): lambda s: ("/ssh-keys", None, 200),
    ("POST", "/ssh-keys"): lambda s: ("/ssh-keys", {"name": "laptop", "public_key": new_public_key()}, 201),
    ("GET", "/ssh-keys/{key_id}"): lambda s: (f"/ssh-keys/{s.ssh_key()}", None, 200),
    ("DELETE", "/ssh-keys/{key_id}"): lambda s: (f"/ssh-keys/{s.own_ssh_key()}", None, 204),
    ("GET", "/firewalls"): lambda s: ("/firewalls", None, 200),
    ("POST", "/firewalls"): lambda s: ("/firewalls", FIREWALL, 202),
    ("GET", "/firewalls/{firewall_id}"): lambda s: (f"/firewalls/{s.firewall()}", None, 200),
    ("PATCH", "/firewalls/{firewall_id}"): lambda s: (f"/firewalls/{s.firewall()}", {"name": "renamed"}, 202),
    ("DELETE", "/firewalls/{firewall_id}"): lambda s: (f"/firewalls/{s.firewall()}", None, 202),
    ("GET", "/vpcs"): lambda s: ("/vpcs", None, 200),
    ("POST", "/vpcs"): lambda s: ("/vpcs", {"name": "lab", "region": "nyc3", "ip_range": "10.250.0.0/24"}, 202),
    ("GET", "/vpcs/{vpc_id}"): lambda s: (f"/vpcs/{s.vpc()}", None, 200),
    ("DELETE", "/vpcs/{vpc_id}"): lambda s: (f"/vpcs/{s.vpc()}", None, 202),
    ("GET", "/workspaces"): lambda s: ("/workspaces", None, 200),
    ("POST", "/workspaces"): lambda s: ("/workspaces", {"name": "team-b"}, 201),
    ("GET", "/workspaces/{workspace_name}"): lambda s: (f"/workspaces/{s.workspace()}", None, 200),
    ("GET", "/vmcp-configs"): lambda s: ("/vmcp-configs", None, 200),
    ("POST", "/vmcp-configs"): lambda s: ("/vmcp-configs", VMCP_CONFIG, 201),
    ("GET", "/vmcp-configs/{config_id}"): lambda s: (f"/vmcp-configs/{s.vmcp_config()}", None, 200),
    ("PATCH", "/vmcp-configs/{config_id}"): lambda s: (f"/vmcp-configs/{s.vmcp_config()}", {"cpus": 4}, 200),
    ("DELETE", "/vmcp-configs/{config_id}"): lambda s: (f"/vmcp-configs/{s.vmcp_config()}", None, 204),
    ("GET", "/vmcp-key"): lambda s: ("/vmcp-key", None, 200),
    ("POST", "/vmcp-key"): lambda s: ("/vmcp-key", {"generate": True}, 201),
    ("DELETE", "/vmcp-key"): lambda s: (s.vmcp_key() or "/vmcp-key", None, 204),
}


def cloud_droplets(sandbox):
    answer = http("GET", f"{sandbox}droplets?per_page=200", headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    assert answer.status == 200, answer.body
    return sorted(droplet["id"] for droplet in answer.json["droplets"])


def cloud_listing(sandbox, kind):
    answer = http("GET", f"{sandbox}{kind}?per_page=200", headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    assert answer.status == 200, answer.body
    return sorted((item["id"], item["name"], json.dumps(item.get("inbound_rules"))) for item in answer.json[kind])


def snapshot(db, sandbox):
    """Everything a refused request must leave alone: rows that matter, and the cloud's droplets."""
    return (db.query("SELECT id, tenant_id, status, instance_id, expires_at FROM servers ORDER BY id"),
            db.query("SELECT id, tenant_id, name, fingerprint FROM ssh_keys ORDER BY id"),
            db.query("SELECT id, name, status, revision, cloud_id FROM firewalls ORDER BY id"),
            db.query("SELECT id, name, status, cloud_id FROM vpcs ORDER BY id"),
            db.query("SELECT id, name FROM workspaces ORDER BY id"),
            db.query("SELECT id, tenant_id, name, secret, parameters FROM vmcp_configs ORDER BY id"),
            db.query("SELECT tenant_id, fingerprint FROM vmcp_keys ORDER BY tenant_id"),
            cloud_listing(sandbox, "firewalls"), cloud_listing(sandbox, "vpcs"),
            db.query("SELECT id, tenant_id, email, name, role, disabled, deleted_at FROM users ORDER BY id"),
            db.query("SELECT id, user_id, role, revoked_at FROM api_tokens ORDER BY id"),
            db.query("SELECT id, revoked_at FROM sessions ORDER BY id"),
            cloud_droplets(sandbox))


def last_audit_row(db):
    return db.one("SELECT tenant_id, action, result, status FROM audit_log ORDER BY id DESC LIMIT 1")


def without_instance(problem):
    return {key: value for key, value in problem.items() if key != "instance"}


def tenant_of(db, email):
    return db.one("SELECT tenant_id FROM users WHERE email = %s", (email,))["tenant_id"]


# -- the table itself ------------------------------------------------------------------------------------------

def test_the_permission_table_is_the_one_we_expect():
    # A permission moved to another role, or a route given another permission, shows up here by name
    # (the matrix below fails on the same change, in the cells it alters).
    served = served_routes()
    production = {endpoint: auth.PERMISSIONS[permission] for endpoint, permission in served.items()
                  if permission is not web.PUBLIC}
    assert production == EXPECTED_LEAST_ROLE
    assert {endpoint for endpoint, permission in served.items() if permission is web.PUBLIC} == EXPECTED_PUBLIC
    assert auth.ROLES == ROLES
    assert auth.RANK == {"viewer": 0, "developer": 1, "operator": 2, "admin": 3}
    assert set(auth.PERMISSIONS.values()) <= set(ROLES)


def test_the_matrix_covers_exactly_the_routes_the_app_serves():
    # No endpoint forgotten, none left over: the matrix, the 401 test and the isolation test run exactly the
    # routes web/app.py serves. This reads web.ROUTES for its list of routes only, never for an expected answer.
    served = set(served_routes())
    assert set(EXPECTED_LEAST_ROLE) | EXPECTED_PUBLIC == served
    assert not set(EXPECTED_LEAST_ROLE) & EXPECTED_PUBLIC
    assert set(REQUESTS) == set(EXPECTED_LEAST_ROLE)
    assert sorted(ISOLATION_CASES) == ID_ENDPOINTS


# -- role x endpoint -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("role", "endpoint"),
                         [pytest.param(role, endpoint, id=f"{role}-{case_id(endpoint)}")
                          for role in ROLES for endpoint in sorted(REQUESTS)])
def test_role_by_endpoint(role, endpoint, admin, member, db, sandbox):
    email = f"{role}.caller@acme.test"
    caller = member(role, email=email)
    method, _route = endpoint
    path, body, success = REQUESTS[endpoint](Scene(admin, caller, email, db))
    assert routed_pattern(path) == endpoint[1]  # the request reaches the route under test
    before = snapshot(db, sandbox)

    answer = caller.request(method, path, body)

    if allowed(role, endpoint):
        assert answer.status == success, answer.body
    else:
        problem = assert_problem(answer, 403)
        assert EXPECTED_LEAST_ROLE[endpoint] in problem["detail"]
        assert snapshot(db, sandbox) == before  # refused means nothing happened, in the DB or the cloud
        if method in AUDITED_METHODS:  # and the refusal is on record, in the caller's tenant
            row = last_audit_row(db)
            assert (row["result"], row["status"], row["tenant_id"]) == ("denied", 403, tenant_of(db, email))


# -- no or bad credentials -------------------------------------------------------------------------------------

CREDENTIALS = {
    "none": None,
    "basic": "Basic YWRtaW5AYWNtZS50ZXN0OmNvcnJlY3QgaG9yc2U=",
    "malformed-jwt": "Bearer not.a.jwt",
    "unknown-api-token": "Bearer cpt_" + "x" * 43,
}


@pytest.mark.parametrize("credentials", sorted(CREDENTIALS))
@pytest.mark.parametrize("endpoint", sorted(REQUESTS), ids=case_id)
def test_without_valid_credentials_every_protected_endpoint_is_401(endpoint, credentials, admin, app, db, sandbox):
    # Real targets, so a 401 is not a 404 in disguise; the admin owns the token to be deleted.
    method, _route = endpoint
    path, body, _success = REQUESTS[endpoint](Scene(admin, admin, "admin@acme.test", db))
    headers = {"Authorization": CREDENTIALS[credentials]} if CREDENTIALS[credentials] else None
    before = snapshot(db, sandbox)

    answer = Client(app).request(method, path, body, headers=headers)

    assert_problem(answer, 401)
    assert answer.headers["www-authenticate"].startswith(CHALLENGE)
    assert snapshot(db, sandbox) == before
    if method in AUDITED_METHODS:  # recorded, but in no tenant: nobody was identified
        row = last_audit_row(db)
        assert (row["result"], row["status"], row["tenant_id"]) == ("denied", 401, None)


# -- tenant isolation ------------------------------------------------------------------------------------------

# What Globex's admin sends to each id endpoint; the PATCH would make Acme's viewer an admin and lock them out.
ISOLATION_CASES = {
    ("GET", "/servers/{server_id}"): None,
    ("PATCH", "/servers/{server_id}"): {"ttl": "1h"},
    ("DELETE", "/servers/{server_id}"): None,
    ("GET", "/servers/{server_id}/status"): None,
    ("PATCH", "/users/{user_id}"): {"name": "Pwned", "role": "admin", "disabled": True},
    ("DELETE", "/users/{user_id}"): None,
    ("GET", "/users/{user_id}/tokens"): None,
    ("DELETE", "/users/{user_id}/tokens/{token_id}"): None,
    ("DELETE", "/tokens/{token_id}"): None,
    ("POST", "/servers/{server_id}/actions"): {"type": "reboot"},
    ("GET", "/operations/{operation_id}"): None,
    ("POST", "/operations/{operation_id}/cancel"): None,
    ("GET", "/ssh-keys/{key_id}"): None,
    ("DELETE", "/ssh-keys/{key_id}"): None,
    ("GET", "/firewalls/{firewall_id}"): None,
    ("PATCH", "/firewalls/{firewall_id}"): {"inbound_rules": [{"protocol": "tcp", "ports": "all",
                                                                "sources": {"addresses": ["0.0.0.0/0"]}}],
                                            "allow_all_ports_from_anywhere": True},
    ("DELETE", "/firewalls/{firewall_id}"): None,
    ("GET", "/vpcs/{vpc_id}"): None,
    ("DELETE", "/vpcs/{vpc_id}"): None,
    ("GET", "/workspaces/{workspace_name}"): None,
    ("GET", "/vmcp-configs/{config_id}"): None,
    ("PATCH", "/vmcp-configs/{config_id}"): {"secret": "stolen", "userData": "#!/bin/sh\nrm -rf /"},
    ("DELETE", "/vmcp-configs/{config_id}"): None,
}


@pytest.fixture
def globex(register):
    return register(tenant="Globex", email="admin@globex.test")


@pytest.mark.parametrize("endpoint", sorted(ISOLATION_CASES), ids=case_id)
def test_another_tenants_ids_are_404_and_untouched(endpoint, admin, member, globex, app, db, sandbox):
    viewer = member("viewer")
    server = admin.post("/servers", SERVER).json
    token = admin.post("/tokens", {"name": "acme-ci"}).json
    viewer_token = viewer.post("/tokens", {"name": "viewer-ci"}).json  # the viewer's: user_id and token_id agree
    key = admin.post("/ssh-keys", {"name": "laptop", "public_key": new_public_key()}).json
    firewall = admin.post("/firewalls", FIREWALL).json
    vpc = admin.post("/vpcs", {"name": "lab", "region": "nyc3", "ip_range": "10.250.0.0/24"}).json
    workspace = admin.post("/workspaces", {"name": "acme-only"}).json
    vmcp_config = admin.post("/vmcp-configs", VMCP_CONFIG).json
    ids = {"server_id": server["id"], "user_id": viewer.get("/me").json["id"], "token_id": viewer_token["id"],
           "operation_id": server["operation"]["id"], "key_id": key["id"], "firewall_id": firewall["id"],
           "vpc_id": vpc["id"], "workspace_name": workspace["name"], "config_id": vmcp_config["id"]}
    db.update("UPDATE servers SET status = 'ready' WHERE id = %s", (server["id"],))  # so actions would apply
    method, route = endpoint
    acme_view = (admin.get(f"/servers/{server['id']}").json, admin.get("/users").json, admin.get("/tokens").json)
    before = snapshot(db, sandbox)

    answer = globex.request(method, route.format(**ids), ISOLATION_CASES[endpoint])

    assert_problem(answer, 404)  # never 403: that would confirm the id exists somewhere
    made_up_ids = {name: new_id() for name in ids} | {"workspace_name": "made-up"}
    made_up = globex.request(method, route.format(**made_up_ids), ISOLATION_CASES[endpoint])
    # Indistinguishable from a made-up id (but for the request id each answer names).
    assert (made_up.status, without_instance(made_up.json)) == (answer.status, without_instance(answer.json))
    assert snapshot(db, sandbox) == before
    # Acme sees the same objects, and its viewer and its API token still work.
    assert (admin.get(f"/servers/{server['id']}").json, admin.get("/users").json,
            admin.get("/tokens").json) == acme_view
    assert viewer.get("/me").json["role"] == "viewer"
    assert Client(app, token=token["token"]).get("/me").status == 200
    assert Client(app, token=viewer_token["token"]).get("/me").status == 200


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_another_tenants_last_admin_is_404_not_409(method, admin, globex, db):
    # "last admin" (409) is checked after the tenant lookup; otherwise it would leak that the id exists.
    acme_admin_id = admin.get("/me").json["id"]
    answer = globex.request(method, f"/users/{acme_admin_id}", {"role": "viewer"} if method == "PATCH" else None)
    assert_problem(answer, 404)
    row = db.one("SELECT role, disabled, deleted_at FROM users WHERE id = %s", (acme_admin_id,))
    assert (row["role"], row["disabled"], row["deleted_at"]) == ("admin", 0, None)


def test_lists_show_only_the_callers_tenant(admin, member, globex, db):
    # Acme: servers (one deleted), users, tokens and audit rows; Globex: one server and one token of its own.
    acme_servers = [admin.post("/servers", dict(SERVER, name=f"acme-{i}")).json["id"] for i in range(3)]
    assert admin.delete(f"/servers/{acme_servers[0]}").status == 202
    db.update("UPDATE servers SET status = 'deleted' WHERE id = %s", (acme_servers[0],))
    member("operator")
    admin.post("/tokens", {"name": "acme-ci"})
    globex_server = globex.post("/servers", dict(SERVER, name="globex-1")).json["id"]
    globex_token = globex.post("/tokens", {"name": "globex-ci"}).json["id"]
    globex_admin_id = globex.get("/me").json["id"]
    acme_admin_id = admin.get("/me").json["id"]

    for query in ("", "?include_deleted=true", "?status=pending", "?status=deleted", "?limit=1"):
        listed = globex.get("/servers" + query)
        assert listed.status == 200, listed.body
        expected = [] if query == "?status=deleted" else [globex_server]
        assert [server["id"] for server in listed.json] == expected, query
        assert "link" not in listed.headers  # no next page pointing into Acme's rows
    assert [user["id"] for user in globex.get("/users").json] == [globex_admin_id]
    assert [token["id"] for token in globex.get("/tokens").json] == [globex_token]
    globex_network = {item["id"] for path in ("/firewalls", "/vpcs") for item in globex.get(path).json}
    assert len(globex_network) == 2  # its default firewall and VPC, made by its first server
    for query in ("", f"?target={acme_servers[1]}", "?kind=server.create", "?status=running"):
        operations = globex.get("/operations" + query).json
        assert {op["target"]["id"] for op in operations} <= {globex_server} | globex_network, query
    assert {op["target"]["id"] for op in globex.get("/operations").json} == {globex_server} | globex_network

    acme, globex_tenant = tenant_of(db, "admin@acme.test"), tenant_of(db, "admin@globex.test")
    assert db.one("SELECT COUNT(*) AS n FROM audit_log WHERE tenant_id = %s", (acme,))["n"] > 0
    for query in ("", f"?user={acme_admin_id}", "?action=servers.create_server", "?limit=200"):
        rows = globex.get("/audit" + query).json
        ids = [int(row["id"]) for row in rows]
        if ids:
            marks = ", ".join(["%s"] * len(ids))
            tenants = {row["tenant_id"] for row in db.query(
                f"SELECT tenant_id FROM audit_log WHERE id IN ({marks})", tuple(ids))}
            assert tenants == {globex_tenant}, query
        assert all(row["user_id"] != acme_admin_id for row in rows), query
    # Not vacuous: Globex does see its own rows.
    assert [row["target"] for row in globex.get("/audit?action=servers.create_server").json] == [globex_server]


# -- role changes take effect at once --------------------------------------------------------------------------

def test_demoting_an_operator_takes_effect_on_their_existing_access_token(admin, member):
    operator = member("operator")
    assert operator.post("/servers", SERVER).status == 202
    user_id = operator.get("/me").json["id"]

    assert admin.patch(f"/users/{user_id}", {"role": "viewer"}).status == 200

    # The same JWT still says "operator"; the role is read from the users table on every request.
    assert_problem(operator.post("/servers", dict(SERVER, name="web-2")), 403)
    assert operator.get("/me").json["role"] == "viewer"
    assert operator.get("/servers").status == 200


def test_promoting_a_viewer_takes_effect_on_their_existing_access_token(admin, member):
    viewer = member("viewer")
    assert_problem(viewer.post("/servers", SERVER), 403)

    assert admin.patch(f"/users/{viewer.get('/me').json['id']}", {"role": "operator"}).status == 200

    assert viewer.post("/servers", SERVER).status == 202


def test_a_disabled_users_existing_tokens_are_401_at_once(admin, member, app):
    operator = member("operator")
    api_token = Client(app, token=operator.post("/tokens", {"name": "ci"}).json["token"])
    assert api_token.get("/me").status == 200

    assert admin.patch(f"/users/{operator.get('/me').json['id']}", {"disabled": True}).status == 200

    for client in (operator, api_token):  # the access token (a JWT not yet expired) and the API token
        for method, path, body in (("GET", "/me", None), ("POST", "/servers", SERVER)):
            answer = client.request(method, path, body)
            assert_problem(answer, 401)
            assert answer.headers["www-authenticate"].startswith(CHALLENGE)
    assert Client(app).post("/auth/refresh", {"refresh_token": operator.refresh_token}).status == 401


def test_an_operators_api_token_is_limited_to_viewer_once_they_are_demoted(admin, member, app):
    operator = member("operator")
    created = operator.post("/tokens", {"name": "ci", "role": "operator"})
    assert created.status == 201 and created.json["role"] == "operator"
    api_token = Client(app, token=created.json["token"])
    assert api_token.post("/servers", SERVER).status == 202

    assert admin.patch(f"/users/{operator.get('/me').json['id']}", {"role": "viewer"}).status == 200

    # Never more than its creator has now, whatever it was made with.
    assert_problem(api_token.post("/servers", dict(SERVER, name="web-2")), 403)
    assert api_token.get("/me").json["role"] == "viewer"
    assert api_token.get("/servers").status == 200


def test_an_api_token_made_with_a_lower_role_stays_there(member, app):
    operator = member("operator")
    api_token = Client(app, token=operator.post("/tokens", {"name": "ro", "role": "viewer"}).json["token"])
    assert_problem(api_token.post("/servers", SERVER), 403)
    assert api_token.get("/servers").status == 200
    # And a token can never be made above its creator's role.
    assert_problem(operator.post("/tokens", {"name": "up", "role": "admin"}), 422)
