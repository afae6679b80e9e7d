"""Headers every answer carries: `X-Content-Type-Options: nosniff` on all of them (problems, preflights and the
VMCP responder included) and `Cache-Control: no-store` on every answer to a request that carried credentials.
In-process against the real MariaDB, then through the real Apache (CGI passes them on)."""

import secrets

import pytest

from tests.support import Client, call, http

CONFIG = {"name": "analysis-vm", "secret": "s3cret-s3cret-s3cret", "memory": 2048}


def assert_nosniff(answer):
    assert answer.headers["x-content-type-options"] == "nosniff"


def assert_no_store(answer):
    assert answer.headers["cache-control"] == "no-store"


# With the admin's token: (method, path, body, status).
AUTHENTICATED = [
    ("GET", "/me", None, 200),
    ("GET", "/servers", None, 200),
    ("GET", "/users", None, 200),
    ("GET", "/tokens", None, 200),
    ("GET", "/ssh-keys", None, 200),
    ("GET", "/firewalls", None, 200),
    ("GET", "/vpcs", None, 200),
    ("GET", "/workspaces", None, 200),
    ("GET", "/vmcp-configs", None, 200),
    ("GET", "/vmcp-key", None, 200),
    ("GET", "/audit", None, 200),
    ("GET", "/operations", None, 200),
    ("POST", "/vmcp-configs", CONFIG, 201),
    ("GET", "/servers/01m84c81jh0k8vfrj9szp66m36", None, 404),
    ("POST", "/servers", {}, 422),
    ("PUT", "/servers", None, 405),
    ("GET", "/version", None, 200),  # public, but asked with credentials: still not for a shared cache
]


@pytest.mark.parametrize(("method", "path", "body", "status"), AUTHENTICATED)
def test_an_authenticated_answer_is_no_store_and_nosniff(admin, method, path, body, status):
    answer = admin.request(method, path, body)
    assert answer.status == status, answer.body
    assert_no_store(answer)
    assert_nosniff(answer)


@pytest.mark.parametrize("token", ["not-a-token", "a.b.c"])
def test_a_refused_token_is_no_store_and_nosniff(app, token):
    answer = Client(app, token).get("/servers")
    assert answer.status == 401
    assert_no_store(answer)
    assert_nosniff(answer)


@pytest.mark.filterwarnings("ignore:Unknown REQUEST_METHOD:Warning")  # BREW, from wsgiref's validator
@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/servers", 401),
    ("GET", "/openapi.json", 200),
    ("GET", "/version", 200),
    ("OPTIONS", "/servers", 204),
    ("POST", "/auth/login", 422),
    ("GET", "/nothing-here", 404),
    ("BREW", "/servers", 405),
])
def test_every_public_answer_is_nosniff(app, method, path, status):
    answer = call(app, method, path, {} if method == "POST" else None)
    assert answer.status == status
    assert_nosniff(answer)


def test_the_vmcp_responder_is_no_store_and_nosniff(admin, app):
    config_id = admin.post("/vmcp-configs", CONFIG).json["id"]
    salt = secrets.token_hex(32)
    for path, status in ((f"/{config_id}?cvm_salt={salt}", 200), (f"/{config_id}?cvm_salt=short", 400),
                         (f"/01m84c81jh0k8vfrj9szp66m36?cvm_salt={salt}", 404)):
        answer = call(app, "GET", path, script_name="/vmcp")
        assert answer.status == status, answer.body
        assert_nosniff(answer)
    assert_no_store(call(app, "GET", f"/{config_id}?cvm_salt={salt}", script_name="/vmcp"))


def test_apache_passes_the_headers_on(apache):
    for path, status in (("/health", None), ("/api/openapi.json", 200), ("/api/servers", 401),
                         (f"/vmcp/01m84c81jh0k8vfrj9szp66m36?cvm_salt={'ab' * 32}", 404)):
        answer = http("GET", apache.url + path, timeout=30)
        assert status is None or answer.status == status
        assert_nosniff(answer)
    refused = http("GET", apache.url + "/api/me", headers={"Authorization": "Bearer not-a-token"}, timeout=30)
    assert refused.status == 401
    assert_no_store(refused)
    assert_nosniff(refused)
