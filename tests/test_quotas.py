"""Per-tenant quotas (live servers, vCPUs, memory, VPCs, firewalls, a monthly budget) and dry runs of a server
create: a create past any quota is a 409 `quota-exceeded` naming the quota, its limit, the use and the request,
however many creates run at once (through Apache); a dry run checks what a create checks and writes nothing and
calls no cloud. Platform admins override a tenant's quotas; every tenant reads its own.

Sizes used (the local cloud's, as DigitalOcean lists them): s-1vcpu-1gb 1 vCPU, 1,024 MB, $6 a month;
s-2vcpu-2gb 2 vCPUs, 2,048 MB, $18 a month.
"""

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from cloudprovisioner import monitor
from cloudprovisioner.web.app import make_app
from tests.support import (
    TEST_TOKEN,
    Client,
    assert_problem,
    http,
    installed_settings,
    knob,
    make_config,
)

ONE = {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "debian-12-x64"}
TWO = {**ONE, "name": "big-1", "size": "s-2vcpu-2gb"}
SIZES = "s-1vcpu-1gb,s-2vcpu-2gb"
PASSWORD = "correct horse battery"


def client(values, token, **settings):
    return Client(make_app(make_config({**values, "CP_ALLOWED_SIZES": SIZES, **settings})), token)


def server(n, base=ONE):
    return {**base, "name": f"{base['name'].split('-')[0]}-{n}"}


def cloud_calls(sandbox):
    return knob(sandbox, "GET", "/_sandbox/stats").json["total"]


def live_rows(db):
    return db.one("SELECT COUNT(*) AS n FROM servers WHERE status IN ('pending', 'ready')")["n"]


def quota_of(answer):
    problem = assert_problem(answer, 409)
    assert problem["type"].endswith(":quota-exceeded"), problem
    return problem["quota"], problem["detail"]


def list_sizes(values):
    """What the monitor does on its first run (among the rest): the cloud's sizes and prices in the cache."""
    assert monitor.run_once(make_config(values), io.StringIO(), io.StringIO()) == 0


# --- each quota ---

def test_a_create_past_the_server_quota_is_409_and_makes_nothing(values, admin, db, sandbox):
    api = client(values, admin.token, CP_QUOTA_MAX_SERVERS="2")
    assert [api.post("/servers", server(n)).status for n in range(2)] == [202, 202]
    calls = cloud_calls(sandbox)

    quota, detail = quota_of(api.post("/servers", server(3)))

    assert quota == {"name": "servers", "limit": 2, "used": 2, "requested": 1}
    assert detail == "quota exceeded: live servers: this tenant may have 2, holds 2, and this request needs 1 more"
    assert live_rows(db) == 2
    assert cloud_calls(sandbox) == calls  # refused before its network or its droplet


def test_a_first_create_past_a_quota_makes_not_even_the_network(values, admin, db, sandbox):
    """Refused before the tenant's default firewall and VPC are made, which a first create makes."""
    list_sizes(values)
    calls = cloud_calls(sandbox)
    quota_of(client(values, admin.token, CP_QUOTA_MAX_VCPUS="0").post("/servers", server(1)))
    assert db.one("SELECT (SELECT COUNT(*) FROM firewalls) + (SELECT COUNT(*) FROM vpcs) AS n")["n"] == 0
    assert cloud_calls(sandbox) == calls


def test_a_deleted_server_frees_its_place(values, admin, db):
    api = client(values, admin.token, CP_QUOTA_MAX_SERVERS="1")
    first = api.post("/servers", server(1)).json
    quota_of(api.post("/servers", server(2)))
    assert api.delete(f"/servers/{first['id']}").status == 202
    assert api.post("/servers", server(2)).status == 202


def test_a_server_being_deleted_counts_until_its_droplet_is_destroyed(values, admin, db):
    """An expired server is marked deleting first and its droplet destroyed by the monitor after: until then
    it still holds its place (a user's DELETE destroys the droplet first, so it frees the place at once)."""
    api = client(values, admin.token, CP_QUOTA_MAX_SERVERS="1")
    first = api.post("/servers", server(1)).json
    db.update("UPDATE servers SET status = 'deleting' WHERE id = %s", (first["id"],))
    quota_of(api.post("/servers", server(2)))
    db.update("UPDATE servers SET destroyed_at = UTC_TIMESTAMP(6) WHERE id = %s", (first["id"],))
    assert api.post("/servers", server(2)).status == 202


def test_vcpus_and_memory_count_by_size(values, admin):
    api = client(values, admin.token, CP_QUOTA_MAX_VCPUS="3", CP_QUOTA_MAX_MEMORY_MB="4096")
    assert api.post("/servers", server(1, TWO)).status == 202  # 2 vCPUs, 2,048 MB
    assert api.post("/servers", server(1)).status == 202  # 3 vCPUs, 3,072 MB
    quota, _ = quota_of(api.post("/servers", server(2)))
    assert quota == {"name": "vcpus", "limit": 3, "used": 3, "requested": 1}

    roomier = client(values, admin.token, CP_QUOTA_MAX_VCPUS="10", CP_QUOTA_MAX_MEMORY_MB="4096")
    quota, detail = quota_of(roomier.post("/servers", server(2, TWO)))
    assert quota == {"name": "memory_mb", "limit": 4096, "used": 3072, "requested": 2048}
    assert detail == ("quota exceeded: MB of memory: this tenant may have 4096, holds 3072, and this request "
                      "needs 2048 more")


def test_the_monthly_budget_counts_the_new_servers_projection(values, admin, db):
    tight = client(values, admin.token, CP_QUOTA_MONTHLY_BUDGET="0")
    quota, detail = quota_of(tight.post("/servers", server(1)))
    assert quota["name"] == "monthly_budget" and quota["limit"] == 0 and quota["used"] == 0
    # $6 a month for 672 hours, so between 60 s ($0.01) and a whole month ($6.00) to the month's end
    assert 0.01 <= quota["requested"] <= 6.0
    assert detail.startswith("quota exceeded: this tenant's monthly budget is 0.0 USD, its servers are projected "
                             "to cost 0.0 USD this month, and this server ")
    assert live_rows(db) == 0

    assert client(values, admin.token, CP_QUOTA_MONTHLY_BUDGET="6").post("/servers", server(1)).status == 202


def test_vpcs_and_firewalls_follow_a_tenants_override(values, admin, db):
    platform = platform_admin(admin, db)
    tenant_id = admin.get("/me").json["tenant_id"]
    assert platform.patch(f"/tenants/{tenant_id}/quota", {"vpcs": 0, "firewalls": 1}).status == 200
    api = client(values, admin.token)
    refused = assert_problem(api.post("/vpcs", {"name": "lab", "region": "nyc3", "ip_range": "10.10.0.0/24"}), 409)
    assert refused["quota"] == {"name": "vpcs", "limit": 0, "used": 0, "requested": 1}
    rules = [{"protocol": "tcp", "ports": "22", "sources": {"addresses": ["10.0.0.0/8"]}}]
    assert api.post("/firewalls", {"name": "one", "inbound_rules": rules}).status == 202
    refused = assert_problem(api.post("/firewalls", {"name": "two", "inbound_rules": rules}), 409)
    assert refused["quota"] == {"name": "firewalls", "limit": 1, "used": 1, "requested": 1}


# --- reading and setting quotas ---

def platform_admin(admin, db):
    """The tenant's admin made a platform admin (as `cloudprovisioner-admin platform-admin` does)."""
    db.update("UPDATE users SET platform_admin = 1 WHERE email = 'admin@acme.test'")
    return admin


def test_a_tenant_reads_its_quotas_and_use(values, admin, member):
    api = client(values, admin.token)
    assert api.post("/servers", server(1, TWO)).status == 202
    report = client(values, member("viewer").token).get("/quota")
    assert report.status == 200, report.body
    quotas = report.json["quotas"]
    assert report.json["tenant_id"] == admin.get("/me").json["tenant_id"]
    assert {name: quotas[name] for name in ("servers", "vcpus", "memory_mb", "vpcs", "firewalls")} == {
        "servers": {"limit": 25, "used": 1}, "vcpus": {"limit": 50, "used": 2},
        "memory_mb": {"limit": 102400, "used": 2048}, "vpcs": {"limit": 10, "used": 0},
        "firewalls": {"limit": 20, "used": 0}}
    assert quotas["monthly_budget"]["limit"] == 500.0
    assert 0.01 <= quotas["monthly_budget"]["used"] <= 18.0
    assert report.json["expiry"] == {"require_ttl": False, "max_ttl_seconds": 0}


def test_a_platform_admin_overrides_and_restores_a_tenants_quota(values, admin, register, db):
    other = register("Other", "other@other.test")
    other_id = other.get("/me").json["tenant_id"]
    platform = platform_admin(admin, db)

    changed = platform.patch(f"/tenants/{other_id}/quota", {"servers": 1, "monthly_budget": 12.5})
    assert changed.status == 200, changed.body
    assert changed.json["quotas"]["servers"] == {"limit": 1, "used": 0}
    assert changed.json["quotas"]["monthly_budget"] == {"limit": 12.5, "used": 0.0}
    api = client(values, other.token)
    assert api.post("/servers", server(1)).status == 202
    assert quota_of(api.post("/servers", server(2)))[0]["limit"] == 1
    assert client(values, admin.token).post("/servers", server(1)).status == 202  # its own tenant: the default

    # The id as the URL spelt it need not be the id as stored: the answer and the row carry the stored one.
    policy = platform.patch(f"/tenants/{other_id.upper()}/quota", {"max_ttl_seconds": 3600, "require_ttl": True})
    assert policy.json["tenant_id"] == other_id
    assert policy.json["expiry"] == {"require_ttl": True, "max_ttl_seconds": 3600}
    assert db.query("SELECT tenant_id FROM tenant_quotas WHERE tenant_id = %s", (other_id,)) == [
        {"tenant_id": other_id}]
    restored = platform.patch(f"/tenants/{other_id}/quota", {"servers": None})
    assert restored.json["quotas"]["servers"] == {"limit": 25, "used": 1}
    assert restored.json["quotas"]["monthly_budget"]["limit"] == 12.5
    assert platform.get(f"/tenants/{other_id}/quota").json == restored.json


@pytest.mark.parametrize(("body", "errors"), [
    ({"servers": -1}, {"servers": "must be between 0 and 1000000000"}),
    ({"vcpus": 1.5}, {"vcpus": "must be a whole number"}),
    ({"monthly_budget": 1.001}, {"monthly_budget": "must be in whole cents"}),
    ({"monthly_budget": "lots"}, {"monthly_budget": "must be an amount in USD from 0 to 10000000"}),
    ({"nope": 1}, {"nope": "unknown field"}),
    ({}, {"quota": "name at least one quota to change"}),
])
def test_a_bad_override_is_422_and_changes_nothing(admin, db, body, errors):
    platform = platform_admin(admin, db)
    tenant_id = admin.get("/me").json["tenant_id"]
    assert assert_problem(platform.patch(f"/tenants/{tenant_id}/quota", body), 422)["errors"] == errors
    assert db.one("SELECT COUNT(*) AS n FROM tenant_quotas")["n"] == 0


def test_only_a_platform_admin_sets_or_reads_another_tenants_quota(admin, register, db):
    other_id = register("Other", "other@other.test").get("/me").json["tenant_id"]
    own_id, made_up = admin.get("/me").json["tenant_id"], "00000000-0000-0000-0000-000000000000"
    for method, body in (("GET", None), ("PATCH", {"servers": 100})):
        # The same 403 for its own tenant, another and none: a tenant's admin learns no tenant id here.
        answers = {assert_problem(admin.request(method, f"/tenants/{tenant_id}/quota", body), 403)["detail"]
                   for tenant_id in (own_id, other_id, made_up)}
        assert answers == {f"only a platform admin may do this (platform:{'read' if method == 'GET' else 'write'})"}
    platform = platform_admin(admin, db)
    assert_problem(platform.get("/tenants/00000000-0000-0000-0000-000000000000/quota"), 404)
    assert db.one("SELECT COUNT(*) AS n FROM tenant_quotas")["n"] == 0


# --- dry runs ---

EVERYTHING_A_CREATE_WRITES = ("SELECT (SELECT COUNT(*) FROM servers) + (SELECT COUNT(*) FROM operations) + "
                              "(SELECT COUNT(*) FROM firewalls) + (SELECT COUNT(*) FROM vpcs) + "
                              "(SELECT COUNT(*) FROM workspaces) + (SELECT COUNT(*) FROM idempotency_keys) + "
                              "(SELECT COUNT(*) FROM tenant_quotas) AS n")


def test_a_dry_run_answers_the_plan_and_touches_nothing(values, admin, db, sandbox):
    list_sizes(values)
    api = client(values, admin.token)
    rows = db.one(EVERYTHING_A_CREATE_WRITES)["n"]
    calls = cloud_calls(sandbox)

    plan = api.post("/servers", {**TWO, "check_mode": True})

    assert plan.status == 200, plan.body
    assert plan.json["check_mode"] is True
    assert plan.json["server"] == {"name": "big-1", "region": "nyc3", "size": "s-2vcpu-2gb", "image": "debian-12-x64",
                                   "description": "", "tags": [], "workspace": "default", "ssh_keys": [],
                                   "user_data_bytes": plan.json["server"]["user_data_bytes"], "expires_at": None}
    assert plan.json["server"]["user_data_bytes"] > 0  # the platform's own cloud-config, merged
    assert plan.json["network"] == {
        "firewalls": [{"id": None, "name": "default", "would_be_made": True}],
        "vpc": {"id": None, "name": "default-nyc3", "ip_range": None, "would_be_made": True}}
    cost = plan.json["cost"]
    assert (cost["currency"], cost["hourly_price"], cost["estimated_monthly"]) == ("USD", 0.02679, 18.0)
    assert 0.01 <= cost["to_month_end"] <= 18.0
    after = plan.json["quotas_after"]
    assert (after["servers"], after["vcpus"], after["memory_mb"]) == (
        {"limit": 25, "used": 1}, {"limit": 50, "used": 2}, {"limit": 102400, "used": 2048})
    assert after["monthly_budget"]["used"] == cost["to_month_end"]
    assert db.one(EVERYTHING_A_CREATE_WRITES)["n"] == rows == 0  # not even the default workspace
    assert cloud_calls(sandbox) == calls


def test_a_dry_run_by_query_names_the_network_a_create_made(values, admin, sandbox):
    api = client(values, admin.token)
    made = api.post("/servers", server(1)).json
    calls = cloud_calls(sandbox)
    plan = api.post("/servers?dry_run=true", server(2)).json
    assert plan["network"]["vpc"]["would_be_made"] is False and plan["network"]["vpc"]["id"] == made["vpc_id"]
    assert plan["network"]["firewalls"] == [{"id": made["firewall_ids"][0], "name": "default",
                                             "would_be_made": False}]
    assert cloud_calls(sandbox) == calls


def test_a_dry_run_checks_the_expiry_policy(values, admin):
    list_sizes(values)
    api = client(values, admin.token, CP_SERVER_REQUIRE_TTL="yes", CP_SERVER_MAX_TTL="86400")
    problem = assert_problem(api.post("/servers", {**ONE, "check_mode": True}), 422)
    assert set(problem["errors"]) == {"expires_at"}
    assert set(assert_problem(api.post("/servers", {**ONE, "ttl": "2d", "check_mode": True}), 422)["errors"]) == {"ttl"}
    plan = api.post("/servers", {**ONE, "ttl": "1d", "check_mode": True})
    assert plan.status == 200 and plan.json["server"]["expires_at"].endswith("Z")


def test_a_dry_run_refuses_what_a_create_refuses(values, admin, db):
    list_sizes(values)
    api = client(values, admin.token, CP_QUOTA_MAX_SERVERS="0")
    dry = api.post("/servers", {**ONE, "check_mode": True})
    real = api.post("/servers", ONE)
    assert quota_of(dry) == quota_of(real)
    bad = {**ONE, "size": "s-64vcpu-512gb", "check_mode": True}
    assert assert_problem(api.post("/servers", bad), 422)["errors"] == assert_problem(
        api.post("/servers", {**ONE, "size": "s-64vcpu-512gb"}), 422)["errors"]
    assert assert_problem(api.post("/servers", {**ONE, "check_mode": "maybe"}), 422)["errors"] == {
        "check_mode": "must be true or false"}
    assert live_rows(db) == 0


def test_a_dry_run_takes_no_idempotency_key(values, admin, db):
    """A dry run sent with a key, then the real create with it: the create runs (it is not answered with the
    plan). The other way round, the key names another request (the query differs): 422."""
    list_sizes(values)
    api = client(values, admin.token)
    key = {"Idempotency-Key": '"deploy-1"'}
    assert api.post("/servers?dry_run=true", ONE, headers=key).status == 200
    assert api.post("/servers", {**ONE, "check_mode": True}, headers=key).status == 200
    assert db.one("SELECT COUNT(*) AS n FROM idempotency_keys")["n"] == 0
    made = api.post("/servers", ONE, headers=key)
    assert made.status == 202 and "idempotent-replayed" not in made.headers
    assert assert_problem(api.post("/servers?dry_run=true", ONE, headers=key), 422)["type"].endswith(
        ":idempotency-key-reused")
    assert live_rows(db) == 1


def test_a_quota_refusal_is_not_kept_against_its_key(values, admin):
    """A delete frees a quota: the retry of a refused create with the same key runs again."""
    api = client(values, admin.token, CP_QUOTA_MAX_SERVERS="1")
    first = api.post("/servers", server(1)).json
    key = {"Idempotency-Key": '"second"'}
    quota_of(api.post("/servers", server(2), headers=key))
    assert api.delete(f"/servers/{first['id']}").status == 202
    assert api.post("/servers", server(2), headers=key).status == 202


@pytest.mark.parametrize("query", ["check_mode=true", "DRY_RUN=true", "dryrun=1", "dry_run=yes"])
def test_a_misspelt_dry_run_makes_nothing(values, admin, db, sandbox, query):
    calls = cloud_calls(sandbox)
    problem = assert_problem(client(values, admin.token).post(f"/servers?{query}", ONE), 422)
    assert list(problem["errors"]) == [query.split("=")[0]]
    assert live_rows(db) == 0 and cloud_calls(sandbox) == calls


def test_a_dry_run_before_the_sizes_are_known_says_so(values, admin, sandbox):
    calls = cloud_calls(sandbox)
    problem = assert_problem(client(values, admin.token).post("/servers", {**ONE, "check_mode": True}), 503)
    assert problem["type"].endswith(":sizes-not-ready")
    assert cloud_calls(sandbox) == calls


# --- the race ---

def test_a_create_that_counted_holds_the_others_until_it_commits(values, admin, db, monkeypatch):
    """Two creates against a quota of one, made to overlap where it matters: the first has counted (0 servers)
    inside its transaction and waits there up to 2 s for the second to count too. The second may count only
    after the first commits, so it sees 1 and is refused; counting without the tenant's quota lock, it would
    see 0 as well, and the tenant would hold two servers."""
    from cloudprovisioner import quotas
    api = client(values, admin.token, CP_QUOTA_MAX_SERVERS="1")
    real_check = quotas.check_server
    first_waits, second_counted = threading.Event(), threading.Event()

    def check(ctx, size_row):
        counted = real_check(ctx, size_row)
        if ctx.db._in_transaction:  # the count that decides, not the early one
            if threading.current_thread().name == "first":
                first_waits.set()
                second_counted.wait(2)
            else:
                second_counted.set()
        return counted
    monkeypatch.setattr(quotas, "check_server", check)
    answers = {}

    def create(name):
        answers[name] = api.post("/servers", server(name == "first" and 1 or 2))
    first = threading.Thread(target=create, args=("first",), name="first")
    first.start()
    assert first_waits.wait(60)
    second = threading.Thread(target=create, args=("second",), name="second")
    second.start()
    first.join(60)
    second.join(60)

    assert answers["first"].status == 202
    assert quota_of(answers["second"])[0] == {"name": "servers", "limit": 1, "used": 1, "requested": 1}
    assert live_rows(db) == 1


# --- the race, through Apache ---

def test_twenty_creates_at_once_against_a_quota_of_five_make_five(fresh_installed, apache, sandbox):
    """Twice: 20 at once against 5, then 20 more against 10 (the second round with the tenant's network made,
    so the creates overlap more)."""
    api = apache.url + "/api"
    assert http("POST", api + "/auth/register", {"tenant_name": "Racers", "name": "R", "email": "r@race.test",
                                                 "password": PASSWORD}).status == 201
    token = http("POST", api + "/auth/login", {"email": "r@race.test", "password": PASSWORD}).json["access_token"]
    auth = {"Authorization": f"Bearer {token}"}

    def race(quota, first):
        with installed_settings(fresh_installed, CP_QUOTA_MAX_SERVERS=str(quota)), \
                ThreadPoolExecutor(max_workers=20) as pool:
            return list(pool.map(lambda n: http("POST", api + "/servers", server(n), headers=auth, timeout=120),
                                 range(first, first + 20), timeout=300))
    for quota, first in ((5, 0), (10, 100)):
        answers = race(quota, first)
        statuses = sorted(answer.status for answer in answers)
        assert statuses == [202] * 5 + [409] * 15, [answer.body for answer in answers
                                                    if answer.status not in (202, 409)]
        assert {quota_of(answer)[0]["used"] for answer in answers if answer.status == 409} == {quota}
    assert len(http("GET", api + "/servers?limit=100", headers=auth).json) == 10
    droplets = http("GET", sandbox + "droplets?per_page=200", headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    assert len(droplets.json["droplets"]) == 10
