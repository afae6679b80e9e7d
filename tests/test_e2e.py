"""End to end: `make install` into a scratch prefix, a real Apache running the shipped
config (CGI as www-data when we are root), the real MariaDB, the sandbox cloud
API, and the monitor run exactly as its cron line says."""

import os
import secrets
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from cloudprovisioner.devstack import Apache
from tests.support import assert_problem, http, knob

ROOT = Path(__file__).resolve().parents[1]
VALID = {"name": "e2e-1", "region": "ams3", "size": "s-1vcpu-1gb", "image": "debian-12-x64",
         "description": "end to end", "owner": "ci"}


@pytest.fixture(scope="module")
def installed(stack_dir, mariadb, sandbox):
    prefix = stack_dir / "install"
    dirs = {"PREFIX": prefix, "CONFDIR": prefix / "etc", "APACHE_CONFDIR": prefix / "apache",
            "CRONDIR": prefix / "cron.d"}
    subprocess.run(["make", "-C", str(ROOT), "install", *(f"{k}={v}" for k, v in dirs.items())],
                   check=True, capture_output=True, timeout=900)
    password = secrets.token_urlsafe(18)
    mariadb.create_app_database("cp_e2e", "cp_e2e", password)
    env_file = prefix / "etc" / "cloudprovisioner.env"
    settings = {"CP_DB_SOCKET": mariadb.socket, "CP_DB_NAME": "cp_e2e", "CP_DB_USER": "cp_e2e",
                "CP_DB_PASSWORD": password, "CP_DO_TOKEN": "test-token", "CP_DO_API_URL": sandbox,
                "CP_MAX_BODY_BYTES": "100000"}
    lines = [line for line in env_file.read_text().splitlines() if line.split("=")[0] not in settings]
    env_file.write_text("\n".join(lines + [f"{k}={v}" for k, v in settings.items()]) + "\n")
    migrate = [str(prefix / "bin" / "cloudprovisioner-admin"), "--config", str(env_file), "migrate"]
    assert "applied 001_servers.sql" in subprocess.run(migrate, check=True, capture_output=True,
                                                       text=True).stdout
    assert "up to date" in subprocess.run(migrate, check=True, capture_output=True, text=True).stdout
    return prefix


@pytest.fixture(scope="module")
def apache(stack_dir, installed):
    server = Apache(stack_dir / "apache", 0, [installed / "apache" / "cloudprovisioner.conf"])
    server.start()
    yield server
    server.stop()


def run_cron_job(prefix):
    """Run the monitor's line from the installed cron file as cron would: its user, its command."""
    line = next(line for line in (prefix / "cron.d" / "cloudprovisioner").read_text().splitlines()
                if line.startswith("* * * * *"))
    fields = line.split(None, 6)
    user, command = fields[5], fields[6]
    argv = ["sh", "-c", command]
    if os.geteuid() == 0:
        argv = ["/usr/sbin/runuser", "-u", user, "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=120)


def test_the_whole_life_of_a_server(apache, installed, sandbox):
    knob(sandbox, "POST", "/_sandbox/reset")
    api = apache.url + "/api"
    created = http("POST", api + "/servers", VALID)
    assert created.status == 202, (created.body, apache.error_log())
    server = created.json
    assert created.headers["location"] == f"/api/servers/{server['id']}"
    assert server["status"] == "pending"

    time.sleep(1.2)  # the sandbox activates droplets after a second
    job = run_cron_job(installed)
    assert job.returncode == 0, job.stderr
    assert "1 ready" in job.stdout

    listed = http("GET", api + "/servers")
    assert listed.status == 200
    ready = next(s for s in listed.json if s["id"] == server["id"])
    assert ready["status"] == "ready" and ready["public_ip"]
    assert http("GET", f"{api}/servers/{server['id']}").json == ready
    assert http("GET", f"{api}/servers/{server['id']}/status").json["status"] == "ready"

    deleting = http("DELETE", f"{api}/servers/{server['id']}")
    assert deleting.status == 202 and deleting.json["status"] == "deleting"
    job = run_cron_job(installed)
    assert job.returncode == 0 and "1 deleted" in job.stdout, job.stderr
    assert http("GET", f"{api}/servers/{server['id']}").json["status"] == "deleted"
    assert http("GET", api + "/servers").json == []
    assert run_cron_job(installed).stdout == ""  # quiet when nothing changed


def test_cgi_runs_as_the_unprivileged_user(apache):
    if os.geteuid() != 0:
        pytest.skip("only root can make Apache switch users")
    out = subprocess.run(["ps", "-o", "user=", "-C", "apache2"], capture_output=True, text=True).stdout
    assert "www-data" in out.split()


def test_the_cgi_bin_url_answers_too(apache):
    answer = http("GET", apache.url + "/cgi-bin/cloudprovisioner/api/servers")
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
def test_bad_input_through_apache(apache, method, path, body, content_type, status):
    answer = http(method, apache.url + path, body, content_type)
    assert_problem(answer, status)


def test_database_down_is_503_then_recovers(apache, mariadb):
    mariadb.stop()
    try:
        answer = http("GET", apache.url + "/api/servers")
        assert_problem(answer, 503)
        assert answer.headers["retry-after"]
    finally:
        mariadb.start()
    assert http("GET", apache.url + "/api/servers").status == 200


def test_shims_have_the_venv_shebang(installed):
    for shim in ("cgi-bin/api", "monitor/monitor_new_node", "bin/cloudprovisioner-admin"):
        first = (installed / shim).read_text().splitlines()[0]
        assert shlex.split(first[2:])[0] == str(installed / "venv" / "bin" / "python3")
