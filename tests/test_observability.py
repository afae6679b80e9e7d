"""Health, version, metrics, CORS and request ids: in-process against the real MariaDB,
then through the real Apache (the shipped /health mapping and /api/health, a Prometheus scrape, a preflight)."""

import io
import re
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cloudprovisioner import SCHEMA_VERSION, monitor, telemetry
from cloudprovisioner.web.app import make_app
from tests.support import Client, assert_problem, call, http, installed_settings, make_config, run_cron_job

ROOT = Path(__file__).resolve().parents[1]
VALID = {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}


def health(app):
    return call(app, "GET", "/health", script_name="")


def run_monitor(values):
    return monitor.run_once(make_config(values), io.StringIO(), io.StringIO())


def test_the_code_expects_the_newest_migration():
    newest = max(int(path.name.split("_")[0]) for path in (ROOT / "sql").glob("*.sql"))
    assert newest == SCHEMA_VERSION


# --- /health ---

def test_health_is_degraded_until_the_monitor_has_run_then_healthy(app, values):
    before = health(app)
    assert before.status == 200 and before.json["status"] == "degraded"
    assert before.json["checks"]["monitor"]["status"] == "never"
    assert before.json["checks"]["database"] == {"status": "ok", "schema_version": SCHEMA_VERSION,
                                                  "expected_schema_version": SCHEMA_VERSION}
    assert run_monitor(values) == 0
    after = health(app).json
    assert after["status"] == "healthy" and after["checks"]["monitor"]["status"] == "ok"
    assert after["checks"]["cloud"]["rate_limit_remaining"] is not None  # the monitor's last headroom


def test_health_is_degraded_when_the_monitor_is_stale(app, values, db):
    run_monitor(values)
    db.update("UPDATE service_state SET updated_at = UTC_TIMESTAMP(6) - INTERVAL 1 HOUR "
              "WHERE name = 'monitor.last_success'")
    answer = health(app)
    assert answer.status == 200 and answer.json["status"] == "degraded"
    assert answer.json["checks"]["monitor"]["status"] == "stale"
    assert answer.json["checks"]["monitor"]["age_seconds"] >= 3600


def test_health_is_unhealthy_without_the_database_or_with_another_schema(values, monkeypatch):
    down = make_app(make_config(dict(values, CP_DB_SOCKET="/nonexistent.sock", CP_DB_CONNECT_TIMEOUT="1")))
    answer = health(down)
    assert answer.status == 503 and answer.content_type == "application/json"
    assert answer.json["status"] == "unhealthy" and answer.json["checks"]["database"]["status"] == "down"
    monkeypatch.setattr(telemetry, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    assert health(make_app(make_config(values))).json["status"] == "unhealthy"


def test_health_answers_at_the_root_and_under_the_api(app):
    """/health for load balancers; /api/health for clients generated from the OpenAPI document, which call
    every path under /api. The same report, GET only at both."""
    root, api = health(app), call(app, "GET", "/health")
    assert (root.status, api.status) == (200, 200)
    assert api.json == root.json and api.json["status"] == "degraded"
    assert api.headers["cache-control"] == "no-store" and api.content_type == "application/json"
    for script_name in ("", "/api"):
        refused = call(app, "POST", "/health", b"", "application/json", script_name=script_name)
        assert_problem(refused, 405)
        assert refused.headers["allow"] == "GET, OPTIONS"
    assert_problem(call(app, "GET", "/health/x"), 404)


def test_version(app):
    answer = call(app, "GET", "/version")
    assert answer.status == 200
    assert answer.json["version"] == "0.1.0" and answer.json["schema_version"] == SCHEMA_VERSION


# --- /api/metrics ---

def scrape(client, **kw):
    answer = client.get("/metrics", **kw)
    assert answer.status == 200, answer.body
    assert answer.content_type.startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(answer.body.decode())}


def samples(family):
    return {tuple(sorted(sample.labels.items())): sample.value for sample in family.samples}


def test_metrics_for_an_admin_parse_and_count_what_happened(admin, member, values, db):
    db.update("UPDATE users SET platform_admin = 1 WHERE email = 'admin@acme.test'")  # every tenant's figures
    tenant = admin.get("/me").json["tenant_id"]
    admin.post("/servers", VALID)
    Client(admin.app).post("/auth/login", {"email": "admin@acme.test", "password": "wrong password!"})
    run_monitor(values)
    families = scrape(admin)
    assert samples(families["cloudprovisioner_servers"])[(("status", "pending"), ("tenant", tenant))] == 1
    assert samples(families["cloudprovisioner_operations"])[(("kind", "server.create"), ("status", "running"))] == 1
    requests = samples(families["cloudprovisioner_http_requests"])
    assert requests[(("method", "POST"), ("route", "/servers"), ("status_class", "2xx"))] == 1
    assert requests[(("method", "POST"), ("route", "/auth/login"), ("status_class", "4xx"))] == 1
    assert samples(families["cloudprovisioner_login_failures"])[()] == 1
    assert samples(families["cloudprovisioner_monitor_runs"])[(("result", "ok"),)] == 1
    assert samples(families["cloudprovisioner_cloud_api_calls"])[()] >= 1
    assert families["cloudprovisioner_monitor_last_success_timestamp_seconds"].samples[0].value > 1.7e9
    assert "cloudprovisioner_cloud_ratelimit_remaining" in families
    viewer = member("viewer")
    assert_problem(viewer.get("/metrics"), 403)
    assert_problem(Client(admin.app).get("/metrics"), 401)


def test_metrics_with_the_scrape_token(values, admin):
    app = make_app(make_config(dict(values, CP_METRICS_TOKEN="scrape-token-0123456789abcdef")))
    assert "cloudprovisioner_servers" in scrape(Client(app, "scrape-token-0123456789abcdef"))
    assert_problem(Client(app, "scrape-token-wrong").get("/metrics"), 401)


# --- CORS ---

def cors_app(values):
    return make_app(make_config(dict(values, CP_CORS_ORIGINS="https://console.example.com")))


def test_a_preflight_from_an_allowed_origin(values):
    answer = call(cors_app(values), "OPTIONS", "/servers", headers={
        "Origin": "https://console.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert answer.status == 204
    assert answer.headers["access-control-allow-origin"] == "https://console.example.com"
    assert answer.headers["access-control-allow-methods"] == "GET, OPTIONS, POST"
    assert "Authorization" in answer.headers["access-control-allow-headers"]
    assert answer.headers["vary"] == "Origin"


def test_an_origin_not_on_the_list_gets_no_grant(values, admin):
    app = cors_app(values)
    refused = call(app, "OPTIONS", "/servers", headers={"Origin": "https://evil.example"})
    assert refused.status == 204 and "access-control-allow-origin" not in refused.headers
    assert refused.headers["vary"] == "Origin"
    listed = Client(app, admin.token).get("/servers", headers={"Origin": "https://evil.example"})
    assert listed.status == 200 and "access-control-allow-origin" not in listed.headers


def test_an_allowed_origin_can_read_the_answer_and_its_headers(values, admin):
    answer = Client(cors_app(values), admin.token).get("/servers", headers={"Origin": "https://console.example.com"})
    assert answer.headers["access-control-allow-origin"] == "https://console.example.com"
    assert "X-Request-Id" in answer.headers["access-control-expose-headers"]


# --- request ids ---

def test_a_well_formed_request_id_is_kept_everywhere(admin, db):
    answer = admin.post("/servers", {"name": "bad name!"}, headers={"X-Request-Id": "ci-run-42-step-7"})
    assert answer.headers["x-request-id"] == "ci-run-42-step-7"
    assert answer.json["instance"] == "urn:request:ci-run-42-step-7"
    assert db.one("SELECT request_id FROM audit_log ORDER BY id DESC LIMIT 1")["request_id"] == "ci-run-42-step-7"


@pytest.mark.parametrize("sent", ["", "short", "has spaces in it", "x" * 65, "bad\nnewline"])
def test_a_malformed_request_id_is_replaced(admin, sent):
    answer = admin.get("/servers", headers={"X-Request-Id": sent})
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"])


def test_a_5xx_logs_its_request_id(admin, monkeypatch):
    from cloudprovisioner.web import servers
    monkeypatch.setattr(servers, "list_servers", lambda request: 1 / 0)
    errors = io.StringIO()
    monkeypatch.setattr(sys, "stderr", errors)
    answer = call(admin.app, "GET", "/servers", headers={"Authorization": f"Bearer {admin.token}",
                                                         "X-Request-Id": "trace-me-1234"})
    assert_problem(answer, 500)
    assert answer.json["instance"] == "urn:request:trace-me-1234"
    assert "[trace-me-1234] 500 internal-error GET /api/servers" in errors.getvalue()
    assert "[trace-me-1234] unhandled error" in errors.getvalue()


# --- through the real Apache ---

def test_health_through_apache_and_unhealthy_with_the_database_down(apache, installed, mariadb):
    for path in ("/health", "/api/health"):
        answer = http("GET", apache.url + path)
        assert answer.status == 200 and answer.json["status"] in ("healthy", "degraded"), path
    mariadb.stop()
    try:
        for path in ("/health", "/api/health"):
            down = http("GET", apache.url + path)
            assert down.status == 503 and down.json["status"] == "unhealthy", path
    finally:
        mariadb.start()


def test_a_prometheus_scrape_through_apache(apache, installed):
    with installed_settings(installed, CP_METRICS_TOKEN="scrape-0123456789abcdef0123456789"):
        assert run_cron_job(installed, "monitor_new_node").returncode == 0
        answer = http("GET", apache.url + "/api/metrics",
                      headers={"Authorization": "Bearer scrape-0123456789abcdef0123456789"})
    assert answer.status == 200, answer.body
    names = {family.name for family in text_string_to_metric_families(answer.body.decode())}
    assert {"cloudprovisioner_servers", "cloudprovisioner_monitor_runs", "cloudprovisioner_http_requests"} <= names


def test_cors_through_apache(apache, installed):
    with installed_settings(installed, CP_CORS_ORIGINS="https://console.example.com"):
        allowed = http("OPTIONS", apache.url + "/api/servers", headers={"Origin": "https://console.example.com"})
        refused = http("OPTIONS", apache.url + "/api/servers", headers={"Origin": "https://evil.example"})
    assert allowed.status == 204 and allowed.headers["access-control-allow-origin"] == "https://console.example.com"
    assert "access-control-allow-origin" not in refused.headers


def test_version_through_apache_names_the_installed_revision(apache):
    import subprocess
    revision = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
    answer = http("GET", apache.url + "/api/version")
    assert answer.status == 200 and answer.json["schema_version"] == SCHEMA_VERSION
    assert answer.json["revision"] == (revision or None)
