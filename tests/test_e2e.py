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


@pytest.fixture
def tenant(fresh_installed, apache, smtp):
    """A tenant of the test's own on an empty installed service and an empty cloud, so that no test meets
    another's servers or networks, whatever order they run in: registered over HTTP, its welcome mail
    arrived, its admin logged in."""
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


def test_a_server_with_a_key_in_a_vpc_behind_the_default_firewall_in_a_workspace(apache, installed, sandbox, tenant):
    """Issue 6 end to end: every network object made over HTTP, checked in the cloud, settled by cron."""
    from email import message_from_string

    from tests.support import TEST_TOKEN, new_public_key
    api, auth = apache.url + "/api", bearer(tenant)
    cloud = {"Authorization": f"Bearer {TEST_TOKEN}"}
    key = http("POST", api + "/ssh-keys", {"name": "laptop", "public_key": new_public_key()}, headers=auth)
    assert key.status == 201, (key.body, apache.error_log())
    assert_problem(http("POST", api + "/ssh-keys", {"name": "oops", "public_key": "-----BEGIN OPENSSH PRIVATE KEY-----"
                                                    "\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"},
                        headers=auth), 422)
    assert http("POST", api + "/workspaces", {"name": "e2e-team"}, headers=auth).status == 201
    script = "#!/bin/sh\necho hello > /tmp/hello\n"
    created = http("POST", api + "/servers", dict(VALID, name="e2e-net", region="fra1", ssh_keys=[key.json["id"]],
                                                 workspace="e2e-team", user_data=script), headers=auth)
    assert created.status == 202, (created.body, apache.error_log())
    server = created.json

    [vpc] = http("GET", api + "/vpcs?region=fra1", headers=auth).json
    [firewall] = http("GET", api + "/firewalls", headers=auth).json
    assert (vpc["name"], vpc["region"], vpc["status"]) == ("default-fra1", "fra1", "ready")
    assert (firewall["name"], firewall["default"], firewall["status"]) == ("default", True, "ready")
    assert (server["vpc_id"], server["firewall_ids"], server["ssh_key_ids"]) == (vpc["id"], [firewall["id"]],
                                                                                 [key.json["id"]])
    told = knob(sandbox, "GET", f"/_sandbox/droplets/{server['instance_id']}").json
    cloud_vpcs = http("GET", sandbox + "vpcs", headers=cloud).json["vpcs"]
    cloud_vpc = next(v for v in cloud_vpcs if v["id"] == told["vpc_uuid"])
    assert cloud_vpc["ip_range"] == vpc["ip_range"] and vpc["id"] in cloud_vpc["name"]
    cloud_key = http("GET", f"{sandbox}account/keys/{key.json['fingerprint']}", headers=cloud).json["ssh_key"]
    assert told["ssh_keys"] == [cloud_key["id"]]
    [cloud_firewall_id] = told["firewall_ids"]
    cloud_firewall = http("GET", f"{sandbox}firewalls/{cloud_firewall_id}", headers=cloud).json["firewall"]
    assert sorted(rule["ports"] for rule in cloud_firewall["inbound_rules"]) == ["22", "80"]
    parts = [(part.get_content_type(), part.get_payload(decode=True).decode())
             for part in message_from_string(told["user_data"]).walk() if not part.is_multipart()]
    assert parts[0] == ("text/x-shellscript", script)  # the user's, then the platform's
    assert "ssh_pwauth: false" in "".join(text for _, text in parts)

    time.sleep(1.2)
    job = run_cron_job(installed, "monitor_new_node")
    assert job.returncode == 0 and "1 ready" in job.stdout, job.stderr
    ready = http("GET", f"{api}/servers/{server['id']}", headers=auth).json
    import ipaddress
    assert ipaddress.ip_address(ready["private_ip"]) in ipaddress.ip_network(vpc["ip_range"])
    workspace = http("GET", api + "/workspaces/e2e-team", headers=auth).json
    assert [s["id"] for s in workspace["servers"]] == [server["id"]] and workspace["counts"]["ready"] == 1
    assert [s["id"] for s in http("GET", api + "/servers?workspace=e2e-team", headers=auth).json] == [server["id"]]
    assert server["id"] not in [s["id"] for s in http("GET", api + "/servers?workspace=default", headers=auth).json]

    opened = http("PATCH", f"{api}/firewalls/{firewall['id']}", {"inbound_rules": [
        {"protocol": "tcp", "ports": port, "sources": {"addresses": ["0.0.0.0/0", "::/0"]}} for port in ("22", "443")]},
        headers=auth)
    assert opened.status == 202 and opened.json["operation"]["status"] == "succeeded", opened.body
    cloud_firewall = http("GET", f"{sandbox}firewalls/{cloud_firewall_id}", headers=cloud).json["firewall"]
    assert sorted(rule["ports"] for rule in cloud_firewall["inbound_rules"]) == ["22", "443"]
    assert run_cron_job(installed, "monitor_new_node").stdout == ""  # nothing drifted: a quiet run

    assert_problem(http("DELETE", f"{api}/vpcs/{vpc['id']}", headers=auth), 409)
    assert http("DELETE", f"{api}/servers/{server['id']}", headers=auth).status == 202
    assert "1 deleted" in run_cron_job(installed, "monitor_new_node").stdout
    gone = http("DELETE", f"{api}/vpcs/{vpc['id']}", headers=auth)
    assert gone.status == 202 and gone.json["status"] == "deleted", gone.body
    assert all(v["id"] != told["vpc_uuid"] for v in http("GET", sandbox + "vpcs", headers=cloud).json["vpcs"])


def test_overlapping_ranges_are_refused_and_other_tenants_see_nothing(apache, installed, sandbox, tenant):
    api, auth = apache.url + "/api", bearer(tenant)
    lab = http("POST", api + "/vpcs", {"name": "lab", "region": "sfo3", "ip_range": "10.77.0.0/20"}, headers=auth)
    assert lab.status == 202 and lab.json["status"] == "ready", (lab.body, apache.error_log())
    mine = assert_problem(http("POST", api + "/vpcs", {"name": "lab2", "region": "sfo3", "ip_range": "10.77.8.0/24"},
                               headers=auth), 409)
    assert "lab" in mine["errors"]["ip_range"]
    other = http("POST", api + "/auth/register", {"tenant_name": "Other", "name": "Otto", "email": "otto@e2e.test",
                                                  "password": "e2e password 456"})
    assert other.status == 201, other.body
    otto = bearer(http("POST", api + "/auth/login", {"email": "otto@e2e.test", "password": "e2e password 456"}).json)
    theirs = assert_problem(http("POST", api + "/vpcs", {"name": "net", "region": "sfo3", "ip_range": "10.77.0.0/16"},
                                 headers=otto), 409)
    assert "lab" not in theirs["detail"] + str(theirs["errors"])  # nothing of Eve's tenant leaks
    for path in ("/vpcs", "/firewalls", "/ssh-keys", "/workspaces"):
        listed = http("GET", api + path, headers=otto)
        assert listed.status == 200 and all(item["name"] in ("default",) for item in listed.json), (path, listed.body)
    assert_problem(http("GET", f"{api}/vpcs/{lab.json['id']}", headers=otto), 404)
    assert_problem(http("DELETE", f"{api}/vpcs/{lab.json['id']}", headers=otto), 404)
    assert http("DELETE", f"{api}/vpcs/{lab.json['id']}", headers=auth).json["status"] == "deleted"


def test_a_vmcp_configuration_is_served_signed_through_apache(apache, installed, tenant):
    """Issue 7 end to end: a key and a configuration made over HTTP, fetched as the CernVM WebAPI extension
    fetches it (both paths), and verified the way the client verifies it, and by openssl."""
    import secrets as random

    from tests.vmcpclient import verify
    api, auth = apache.url + "/api", bearer(tenant)
    env = (installed / "etc" / "cloudprovisioner.env").read_text()
    assert "CP_VMCP_KEY_SECRET=" in env and "vmcp-platform-key.pem" in env  # made by make install
    assert oct((installed / "etc" / "vmcp-platform-key.pem").stat().st_mode & 0o777) == "0o640"
    config = http("POST", api + "/vmcp-configs", {"name": "e2e-vm", "secret": "s3cr3t-value", "ram": 1024, "cpus": 1,
                                                  "userData": "[cernvm]\nusers=user:users:user\n", "flags": 49},
                  headers=auth)
    assert config.status == 201, (config.body, apache.error_log())
    assert config.json["memory"] == 1024 and config.json["notes"]
    platform = http("GET", api + "/vmcp-key", headers=auth).json
    assert platform["source"] == "platform"
    salt = random.token_hex(32)
    for url in (f"{apache.url}/cgi-bin/vmcp?config={config.json['id']}&cvm_salt={salt}&cvm_hostid=e2e-host",
                f"{apache.url}{config.json['url']}?cvm_salt={salt}&cvm_hostid=e2e-host"):
        answer = http("GET", url)
        assert answer.status == 200, (url, answer.body, apache.error_log())
        assert answer.headers["cache-control"] == "no-store"
        assert answer.json["secret"] == "s3cr3t-value" and verify(answer.body, salt, platform["public_key_pem"])

    own = http("POST", api + "/vmcp-key", {"generate": True}, headers=auth)
    assert own.status == 201 and own.json["source"] == "tenant", own.body
    answer = http("GET", f"{apache.url}{config.json['url']}?cvm_salt={salt}")
    assert verify(answer.body, salt, own.json["public_key_pem"])
    assert not verify(answer.body, salt, platform["public_key_pem"])
    assert not verify(answer.body, random.token_hex(32), own.json["public_key_pem"])
    assert_problem(http("GET", f"{apache.url}{config.json['url']}"), 400)  # no salt
    assert_problem(http("GET", f"{apache.url}/cgi-bin/vmcp?config=01m8440000000000000000000z&cvm_salt={salt}"), 404)
    for path in ("/vmcp/%C2%84", "/vmcp/me"):  # not an id: Apache's own page, the script never runs
        answer = http("GET", f"{apache.url}{path}?cvm_salt={salt}", headers=auth)
        assert answer.status in (403, 404) and answer.content_type.startswith("text/html"), path
    # The responder's script path with a path after it: the service's problem document, never the API.
    assert_problem(http("GET", f"{apache.url}/cgi-bin/vmcp/me?cvm_salt={salt}", headers=auth), 404)
    # The secret went to the extension and nowhere else: not into Apache's error log.
    assert "s3cr3t-value" not in apache.error_log()
