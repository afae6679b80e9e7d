"""End to end: `make install` into a scratch prefix, a real Apache running the shipped
config (CGI as www-data when we are root), the real MariaDB, the sandbox cloud
API, and the monitor run exactly as its cron line says (fixtures in conftest.py)."""

import json
import os
import shlex
import subprocess
import time

import pytest

from tests.support import assert_problem, http, knob, run_cron_job

VALID = {"name": "e2e-1", "region": "ams3", "size": "s-1vcpu-1gb", "image": "debian-12-x64",
         "description": "end to end"}


@pytest.fixture(scope="module")
def tenant(apache, smtp):
    """A tenant registered over HTTP; its welcome mail arrived; its admin logged in."""
    api = apache.url + "/api"
    registered = http("POST", api + "/auth/register", {"tenant_name": "E2E", "name": "Eve",
                                                       "email": "eve@e2e.test", "password": "e2e password 123"})
    assert registered.status == 201, (registered.body, apache.error_log())
    tenant_id = registered.json["tenant"]["id"]
    assert any(tenant_id in mail.get_content() for mail in smtp.messages if mail["To"] == "eve@e2e.test")
    tokens = http("POST", api + "/auth/login", {"email": "eve@e2e.test", "password": "e2e password 123"})
    assert tokens.status == 200, tokens.body
    return tokens.json


def bearer(tokens):
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def test_the_authorization_header_reaches_the_script(apache, tenant):
    assert http("GET", apache.url + "/api/me", headers=bearer(tenant)).json["email"] == "eve@e2e.test"
    assert_problem(http("GET", apache.url + "/api/me"), 401)


def test_the_whole_life_of_a_server(apache, installed, sandbox, tenant):
    knob(sandbox, "POST", "/_sandbox/reset")
    api = apache.url + "/api"
    # A session of its own: this test refreshes and ends it.
    session = http("POST", api + "/auth/login", {"email": "eve@e2e.test", "password": "e2e password 123"}).json
    auth = bearer(session)
    assert_problem(http("POST", api + "/servers", VALID), 401)
    created = http("POST", api + "/servers", VALID, headers=auth)
    assert created.status == 202, (created.body, apache.error_log())
    server = created.json
    assert created.headers["location"] == f"/api/servers/{server['id']}"
    assert server["status"] == "pending"

    time.sleep(1.2)  # the sandbox activates droplets after a second
    job = run_cron_job(installed, "monitor_new_node")
    assert job.returncode == 0, job.stderr
    assert "1 ready" in job.stdout

    listed = http("GET", api + "/servers", headers=auth)
    assert listed.status == 200
    ready = next(s for s in listed.json if s["id"] == server["id"])
    assert ready["status"] == "ready" and ready["public_ip"]
    assert http("GET", f"{api}/servers/{server['id']}", headers=auth).json == ready
    assert http("GET", f"{api}/servers/{server['id']}/status", headers=auth).json["status"] == "ready"

    # A new pair from the refresh token; the old access token still works until it expires.
    refreshed = http("POST", api + "/auth/refresh", {"refresh_token": session["refresh_token"]})
    assert refreshed.status == 200, refreshed.body
    auth = bearer(refreshed.json)

    deleting = http("DELETE", f"{api}/servers/{server['id']}", headers=auth)
    assert deleting.status == 202 and deleting.json["status"] == "deleting"
    job = run_cron_job(installed, "monitor_new_node")
    assert job.returncode == 0 and "1 deleted" in job.stdout, job.stderr
    assert http("GET", f"{api}/servers/{server['id']}", headers=auth).json["status"] == "deleted"
    assert http("GET", api + "/servers", headers=auth).json == []
    assert run_cron_job(installed, "monitor_new_node").stdout == ""  # quiet when nothing changed

    assert http("POST", api + "/auth/logout", headers=auth).status == 204
    assert_problem(http("GET", api + "/me", headers=auth), 401)
    assert http("GET", api + "/me", headers=bearer(tenant)).status == 200  # other sessions live on


def test_the_mail_cron_job_runs_and_is_quiet_with_nothing_to_send(installed, apache, tenant):
    job = run_cron_job(installed, "send_mail")
    assert (job.returncode, job.stdout, job.stderr) == (0, "", "")


def test_cgi_runs_as_the_unprivileged_user(apache):
    if os.geteuid() != 0:
        pytest.skip("only root can make Apache switch users")
    out = subprocess.run(["ps", "-o", "user=", "-C", "apache2"], capture_output=True, text=True).stdout
    assert "www-data" in out.split()


def test_the_cgi_bin_url_answers_too(apache, tenant):
    answer = http("GET", apache.url + "/cgi-bin/cloudprovisioner/api/servers", headers=bearer(tenant))
    assert answer.status == 200 and answer.content_type == "application/json"


def test_nothing_else_of_the_install_is_served(apache, installed):
    for path in ("/cgi-bin/cloudprovisioner/", "/etc/cloudprovisioner.env", "/cloudprovisioner.env",
                 "/api/../etc/cloudprovisioner.env", "/sql/001_servers.sql", "/venv/bin/python3"):
        answer = http("GET", apache.url + path)
        assert answer.status in (403, 404), path
        assert b"CP_DB_PASSWORD" not in answer.body


@pytest.mark.parametrize("method, path, body, content_type, status", [
    ("GET", "/api/nothing", None, None, 404),
    ("PUT", "/api/servers", b"{}", "application/json", 405),
    ("POST", "/api/servers", b"{oops", "application/json", 400),
    ("POST", "/api/servers", b"<xml/>", "application/xml", 415),
    ("POST", "/api/servers", b"x" * 200_000, "application/json", 413),
    ("POST", "/api/servers", {"name": "bad name", "region": "x"}, "application/json", 422),
    ("GET", "/api/servers?limit=9999", None, None, 422),
])
def test_bad_input_through_apache(apache, tenant, method, path, body, content_type, status):
    answer = http(method, apache.url + path, body, content_type, headers=bearer(tenant))
    assert_problem(answer, status)


def test_database_down_is_503_then_recovers(apache, mariadb, tenant):
    mariadb.stop()
    try:
        answer = http("GET", apache.url + "/api/servers", headers=bearer(tenant))
        assert_problem(answer, 503)
        assert answer.headers["retry-after"]
    finally:
        mariadb.start()
    assert http("GET", apache.url + "/api/servers", headers=bearer(tenant)).status == 200


def test_shims_have_the_venv_shebang(installed):
    for shim in ("cgi-bin/api", "monitor/monitor_new_node", "monitor/send_mail", "bin/cloudprovisioner-admin"):
        first = (installed / shim).read_text().splitlines()[0]
        assert shlex.split(first[2:])[0] == str(installed / "venv" / "bin" / "python3")


def chunked(url, method, body, headers):
    """A request whose body is sent chunked (no Content-Length), read to the end."""
    import http.client
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request(method, parts.path, body=iter([body[:10], body[10:]]), headers=headers,
                       encode_chunked=True)
    answer = connection.getresponse()
    return answer.status, answer.read()


def test_a_chunked_body_is_read_and_answered_whole(apache, tenant, sandbox):
    headers = {**bearer(tenant), "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    body = json.dumps(VALID).encode()
    status, payload = chunked(apache.url + "/api/servers", "POST", body, headers)
    assert status == 202 and json.loads(payload)["name"] == VALID["name"]
    status, payload = chunked(apache.url + "/api/servers", "PATCH", body, headers)
    assert status == 405 and json.loads(payload)["status"] == 405
