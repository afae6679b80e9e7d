"""What one tenant may take of what all tenants share: the cloud account's calls (a token bucket per tenant)
and room for VPCs and firewalls (a cap per tenant), so that one tenant's script cannot empty either for the
others.

The bucket's arithmetic in-process, against the real MariaDB (time is the database's); requests in parallel
through the real Apache for the bucket and for a cap, since that is where they race.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from cloudprovisioner import limits
from cloudprovisioner.context import Context
from cloudprovisioner.db import Database
from cloudprovisioner.errors import Throttled
from cloudprovisioner.web.app import make_app
from tests.support import (
    TEST_TOKEN,
    Client,
    assert_problem,
    http,
    installed_config,
    installed_settings,
    knob,
    make_config,
    new_public_key,
)

WORLD = ["0.0.0.0/0", "::/0"]
HTTPS = {"protocol": "tcp", "ports": "443", "sources": {"addresses": WORLD}}
SERVER = {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}
PASSWORD = "correct horse battery"
REQUEST_TIMEOUT = 60  # seconds, each request in parallel
ALL_DONE_WITHIN = 120  # seconds, all of them


def cloud_calls(sandbox, route):
    return knob(sandbox, "GET", "/_sandbox/stats").json["requests"].get(route, 0)


def app_with(values, **settings):
    """The app under these settings, registration open (tenants are made here as a test needs them)."""
    return make_app(make_config(dict(values, CP_REGISTRATION="open", **settings)))


def tenant(app, name):
    """A new tenant's admin, as a Client of `app`."""
    email = f"admin@{name}.test"
    answer = Client(app).post("/auth/register", {"tenant_name": name, "name": "Ada", "email": email,
                                                 "password": PASSWORD})
    assert answer.status == 201, answer.body
    return Client(app).login(email, PASSWORD)


# ---------------------------------------------------------------- the bucket's arithmetic


@pytest.mark.parametrize(("ahead", "interval", "burst", "seconds"), [
    (30_000_000, 10_000_000, 3, 10),  # empty: a whole interval to wait
    (25_000_000, 10_000_000, 3, 5),  # half a token in it
    (20_000_001, 10_000_000, 3, 1),  # a microsecond short of a token: a whole second, never 0
    (20_000_000, 10_000_000, 3, 1),  # a token in it (as the bucket would not have refused): at least 1
    (-5_000_000, 10_000_000, 3, 1),  # full long ago
    (3_600_000_000, 6_000_000, 30, 3426),  # an hour ahead at 10 a minute, 30 at once
    (60_000_000, 60_000_000, 1, 60),  # one a minute, no burst
])
def test_seconds_until_a_token(ahead, interval, burst, seconds):
    assert limits.seconds_until_token(ahead, interval, burst) == seconds


def bucket_ctx(values, db, tenant_id="tenant-a", **settings):
    config = make_config(dict(values, **settings))
    return Context(config, SimpleNamespace(tenant_id=tenant_id), db=db)


def set_full_in(db, seconds, tenant_id="tenant-a"):
    """As if the tenant's bucket were full `seconds` from now (negative: full since then)."""
    db.update("UPDATE tenant_buckets SET full_at = UTC_TIMESTAMP(6) + INTERVAL %s MICROSECOND "
              "WHERE tenant_id = %s AND kind = 'cloud'", (int(seconds * 1_000_000), tenant_id))


def full_in(db, tenant_id="tenant-a"):
    return db.one("SELECT TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), full_at) AS ahead FROM tenant_buckets "
                  "WHERE tenant_id = %s AND kind = 'cloud'", (tenant_id,))["ahead"] / 1_000_000


def refused_after(ctx):
    with pytest.raises(Throttled) as refused:
        limits.spend(ctx, "cloud")
    assert refused.value.slug == "tenant-rate-limited"
    return refused.value.retry_after


def test_a_bucket_gives_its_burst_then_a_token_per_interval_refilled_continuously(values, db):
    ctx = bucket_ctx(values, db, CP_TENANT_CLOUD_RATE="6", CP_TENANT_CLOUD_BURST="3")  # a token every 10 s
    for _ in range(3):
        limits.spend(ctx, "cloud")
    assert 29 < full_in(db) <= 30
    set_full_in(db, 25)  # half a token: not enough, and refusing takes nothing
    assert refused_after(ctx) == 5
    assert 24 < full_in(db) <= 25
    set_full_in(db, 19.5)  # a token and a twentieth: refilled continuously, not by the minute
    limits.spend(ctx, "cloud")
    assert 29 < full_in(db) <= 29.5
    assert refused_after(ctx) == 10
    set_full_in(db, -3600)  # idle for an hour: the burst, no more
    for _ in range(3):
        limits.spend(ctx, "cloud")
    assert refused_after(ctx) == 10


def test_buckets_are_each_tenants_own_and_a_rate_of_0_is_no_limit(values, db):
    acme = bucket_ctx(values, db, "tenant-a", CP_TENANT_CLOUD_RATE="1", CP_TENANT_CLOUD_BURST="1")
    globex = bucket_ctx(values, db, "tenant-b", CP_TENANT_CLOUD_RATE="1", CP_TENANT_CLOUD_BURST="1")
    limits.spend(acme, "cloud")
    assert refused_after(acme) == 60
    limits.spend(globex, "cloud")
    unlimited = bucket_ctx(values, db, "tenant-c", CP_TENANT_CLOUD_RATE="0", CP_TENANT_CLOUD_BURST="1")
    for _ in range(50):
        limits.spend(unlimited, "cloud")
    assert db.one("SELECT COUNT(*) AS n FROM tenant_buckets WHERE tenant_id = 'tenant-c'")["n"] == 0


# ---------------------------------------------------------------- every endpoint that calls the cloud


def empty_bucket(db, client):
    """The caller's tenant's bucket as after an hour of requests (full an hour from now)."""
    tenant_id = client.get("/me").json["tenant_id"]
    db.update("INSERT INTO tenant_buckets (tenant_id, kind, full_at) VALUES "
              "(%s, 'cloud', UTC_TIMESTAMP(6) + INTERVAL 1 HOUR) "
              "ON DUPLICATE KEY UPDATE full_at = VALUES(full_at)", (tenant_id,))


ENDPOINTS = {
    "firewall-create": lambda made: ("POST", "/firewalls", {"name": "another", "inbound_rules": [HTTPS]}),
    "firewall-update": lambda made: ("PATCH", f"/firewalls/{made['firewall']}", {"inbound_rules": []}),
    "firewall-delete": lambda made: ("DELETE", f"/firewalls/{made['firewall']}", None),
    "vpc-create": lambda made: ("POST", "/vpcs", {"name": "another", "region": "nyc3", "ip_range": "10.30.0.0/16"}),
    "vpc-delete": lambda made: ("DELETE", f"/vpcs/{made['vpc']}", None),
    "ssh-key-delete": lambda made: ("DELETE", f"/ssh-keys/{made['key']}", None),
    "server-create": lambda made: ("POST", "/servers", dict(SERVER, name="web-2")),
    "server-delete": lambda made: ("DELETE", f"/servers/{made['server']}", None),
    "server-action": lambda made: ("POST", f"/servers/{made['server']}/actions", {"type": "reboot"}),
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_endpoint_that_calls_the_cloud_takes_a_token(values, db, sandbox, endpoint):
    """With the bucket empty: 429 with Retry-After, and nothing asked of the cloud or changed."""
    admin = tenant(app_with(values, CP_TENANT_CLOUD_RATE="10", CP_TENANT_CLOUD_BURST="30"), "acme")
    key = admin.post("/ssh-keys", {"name": "laptop", "public_key": new_public_key()}).json
    server = admin.post("/servers", dict(SERVER, ssh_keys=[key["id"]])).json  # the platform adds the key
    db.update("UPDATE servers SET status = 'ready' WHERE id = %s", (server["id"],))
    made = {"firewall": admin.post("/firewalls", {"name": "web", "inbound_rules": [HTTPS]}).json["id"],
            "vpc": admin.post("/vpcs", {"name": "backend", "region": "ams3", "ip_range": "10.20.0.0/16"}).json["id"],
            "key": key["id"], "server": server["id"]}
    empty_bucket(db, admin)
    before = knob(sandbox, "GET", "/_sandbox/stats").json["requests"]
    rows = {table: db.query(f"SELECT * FROM {table} ORDER BY id") for table in ("servers", "firewalls", "vpcs",
                                                                                "ssh_keys", "operations")}
    method, path, body = ENDPOINTS[endpoint](made)
    problem = assert_problem(admin.request(method, path, body), 429)
    assert problem["type"].endswith(":tenant-rate-limited")
    assert admin.request(method, path, body).headers["retry-after"] == "3426"  # 1 h less 29 tokens of 6 s
    assert knob(sandbox, "GET", "/_sandbox/stats").json["requests"] == before
    assert {table: db.query(f"SELECT * FROM {table} ORDER BY id") for table in rows} == rows


def test_a_throttled_create_is_not_kept_as_its_idempotency_keys_answer(values, db):
    """429 says "try again later", like a 5xx: the retry after Retry-After makes the server."""
    admin = tenant(app_with(values, CP_TENANT_CLOUD_RATE="10", CP_TENANT_CLOUD_BURST="30"), "acme")
    empty_bucket(db, admin)
    keyed = {"Idempotency-Key": "create-web-1"}
    assert_problem(admin.post("/servers", SERVER, headers=keyed), 429)
    db.update("UPDATE tenant_buckets SET full_at = UTC_TIMESTAMP(6)")
    answer = admin.post("/servers", SERVER, headers=keyed)
    assert answer.status == 202, answer.body
    assert "idempotent-replayed" not in answer.headers
    assert admin.post("/servers", SERVER, headers=keyed).headers["idempotent-replayed"] == "true"


# ---------------------------------------------------------------- caps, and the VPC pool


def test_one_tenant_cannot_take_the_vpc_pool_from_another(values, db, sandbox):
    """A pool of four blocks: without limits, one VPC as wide as the pool takes all of it and another
    tenant's plain server create finds no block for its default VPC."""
    app = app_with(values, CP_VPC_POOL="172.16.0.0/18", CP_TENANT_MAX_VPCS="2")
    acme, globex = tenant(app, "acme"), tenant(app, "globex")
    whole = assert_problem(acme.post("/vpcs", {"name": "all", "region": "nyc3", "ip_range": "172.16.0.0/18"}), 422)
    assert whole["errors"] == {"ip_range": "inside 172.16.0.0/18, where default VPCs are made, a VPC may be at "
                                           "most a /20; choose a smaller range, or one outside it"}
    for name, ip_range in (("one", "172.16.0.0/20"), ("two", "10.1.0.0/16")):
        answer = acme.post("/vpcs", {"name": name, "region": "nyc3", "ip_range": ip_range})
        assert answer.status == 202, answer.body
    capped = assert_problem(acme.post("/vpcs", {"name": "three", "region": "nyc3", "ip_range": "10.2.0.0/16"}), 409)
    assert capped["type"].endswith(":vpc-limit-reached")
    assert capped["detail"] == ("this tenant has 2 VPCs, the most one tenant may make (the defaults the platform "
                                "makes aside); delete one it no longer needs")
    # The platform's default VPCs are not counted: the capped tenant's servers still get theirs.
    assert acme.post("/servers", SERVER).status == 202
    answer = globex.post("/servers", SERVER)
    assert answer.status == 202, answer.body
    assert [vpc["ip_range"] for vpc in acme.get("/vpcs?region=nyc3").json if vpc["default"]] == ["172.16.16.0/20"]
    assert [vpc["ip_range"] for vpc in globex.get("/vpcs").json] == ["172.16.32.0/20"]
    # A deleted VPC gives its place back.
    one = next(vpc for vpc in acme.get("/vpcs").json if vpc["name"] == "one")
    assert acme.delete(f"/vpcs/{one['id']}").json["status"] == "deleted"
    assert acme.post("/vpcs", {"name": "three", "region": "nyc3", "ip_range": "10.2.0.0/16"}).status == 202


def test_the_default_firewall_is_not_counted_and_a_deleted_one_gives_its_place_back(values, db):
    admin = tenant(app_with(values, CP_TENANT_MAX_FIREWALLS="1"), "acme")
    assert admin.post("/servers", SERVER).status == 202  # makes the default firewall
    first = admin.post("/firewalls", {"name": "web", "inbound_rules": [HTTPS]})
    assert first.status == 202, first.body
    problem = assert_problem(admin.post("/firewalls", {"name": "db", "inbound_rules": [HTTPS]}), 409)
    assert problem["type"].endswith(":firewall-limit-reached")
    assert problem["detail"].startswith("this tenant has 1 firewalls, the most one tenant may make")
    assert admin.delete(f"/firewalls/{first.json['id']}").json["status"] == "deleted"
    assert admin.post("/firewalls", {"name": "db", "inbound_rules": [HTTPS]}).status == 202
    assert [(row["is_default"], row["cap_slot"]) for row in db.query(
        "SELECT is_default, cap_slot FROM firewalls WHERE live = 1 ORDER BY is_default")] == [(0, 1), (1, None)]


# ---------------------------------------------------------------- in parallel, through Apache


def http_tenant(apache, name):
    """A new tenant registered over HTTP; its admin's Authorization header."""
    email = f"admin@{name}.test"
    registered = http("POST", apache.url + "/api/auth/register",
                      {"tenant_name": name, "name": "Ada", "email": email, "password": PASSWORD})
    assert registered.status == 201, (registered.body, apache.error_log())
    tokens = http("POST", apache.url + "/api/auth/login", {"email": email, "password": PASSWORD})
    assert tokens.status == 200, tokens.body
    return {"Authorization": f"Bearer {tokens.json['access_token']}"}


def tenant_id_of(apache, auth):
    return http("GET", apache.url + "/api/me", headers=auth).json["tenant_id"]


def lined_up(installed, lock, waiting_on, count, send):
    """`send(n)` for n in range(count), from `count` threads, lined up behind a lock: the test's own
    transaction takes the lock (`lock`: SQL and its arguments) and holds it until all `count` requests wait
    at a statement starting with `waiting_on`, then lets them go together. No sleep decides the race: every
    request reads what it reads before the lock, and all write at once. Their answers, bounded in time."""
    db = Database(installed_config(installed))
    try:
        with ThreadPoolExecutor(count) as pool:
            db.execute("START TRANSACTION")
            try:
                db.query(*lock)
                futures = [pool.submit(send, number) for number in range(count)]
                waiting = waiting_at(db, waiting_on, count, futures)
            finally:
                db.execute("ROLLBACK")
            answers = [future.result(timeout=ALL_DONE_WITHIN) for future in futures]
    finally:
        db.close()
    assert waiting == count, f"only {waiting} of {count} requests waited at the lock"
    return answers


def waiting_at(db, statement, count, futures):
    """How many requests wait at `statement`, polled until `count` do, one of them ends, or time is up."""
    deadline = time.monotonic() + ALL_DONE_WITHIN
    while True:
        waiting = db.one("SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE INFO LIKE %s",
                         (statement + "%",))["n"]
        if waiting >= count or any(future.done() for future in futures) or time.monotonic() > deadline:
            return waiting
        time.sleep(0.05)  # polling for the line to form: the order of what follows is the lock's


def create_firewall(apache, auth):
    def send(number):
        return http("POST", apache.url + "/api/firewalls", {"name": f"fw-{number}", "inbound_rules": [HTTPS]},
                    headers=auth, timeout=REQUEST_TIMEOUT)
    return send


def test_requests_in_parallel_through_apache_get_exactly_the_burst(apache, fresh_installed, sandbox):
    """Ten firewall creates at once against a burst of 3 at one a minute (no token comes back within the
    test), each having read the bucket full: three made in the cloud, seven 429 with Retry-After; another
    tenant is not held back."""
    with installed_settings(fresh_installed, CP_REGISTRATION="open", CP_TENANT_CLOUD_RATE="1",
                            CP_TENANT_CLOUD_BURST="3", CP_DB_QUERY_TIMEOUT=str(REQUEST_TIMEOUT)):
        acme, globex = http_tenant(apache, "acme"), http_tenant(apache, "globex")
        database = Database(installed_config(fresh_installed))
        try:
            database.update("INSERT INTO tenant_buckets (tenant_id, kind, full_at) VALUES "
                            "(%s, 'cloud', UTC_TIMESTAMP(6) - INTERVAL 1 HOUR)", (tenant_id_of(apache, acme),))
        finally:
            database.close()
        lock = ("SELECT full_at FROM tenant_buckets WHERE tenant_id = %s FOR UPDATE", (tenant_id_of(apache, acme),))
        answers = lined_up(fresh_installed, lock, "UPDATE tenant_buckets", 10, create_firewall(apache, acme))
        assert sorted(answer.status for answer in answers) == [202] * 3 + [429] * 7, apache.error_log()
        for answer in answers:
            if answer.status == 429:
                assert answer.json["type"].endswith(":tenant-rate-limited")
                assert 1 <= int(answer.headers["retry-after"]) <= 60
        assert cloud_calls(sandbox, "POST /v2/firewalls") == 3
        theirs = http("POST", apache.url + "/api/firewalls", {"name": "web", "inbound_rules": [HTTPS]},
                      headers=globex)
        assert theirs.status == 202, theirs.body


def test_creates_in_parallel_through_apache_stop_exactly_at_the_cap(apache, fresh_installed, sandbox):
    """Eight firewall creates at once against a cap of 3, each having counted none before it: three made, five
    409; a deleted one gives its place back."""
    with installed_settings(fresh_installed, CP_REGISTRATION="open", CP_TENANT_MAX_FIREWALLS="3",
                            CP_TENANT_CLOUD_RATE="0", CP_DB_QUERY_TIMEOUT=str(REQUEST_TIMEOUT)):
        acme = http_tenant(apache, "acme")
        lock = ("SELECT id FROM firewalls WHERE tenant_id = %s FOR UPDATE", (tenant_id_of(apache, acme),))
        answers = lined_up(fresh_installed, lock, "INSERT INTO firewalls", 8, create_firewall(apache, acme))
        assert sorted(answer.status for answer in answers) == [202] * 3 + [409] * 5, apache.error_log()
        assert {answer.json["type"].rsplit(":", 1)[1] for answer in answers if answer.status == 409} == {
            "firewall-limit-reached"}
        listed = http("GET", apache.url + "/api/firewalls", headers=acme).json
        assert len(listed) == 3
        cloud = http("GET", sandbox + "firewalls?per_page=200", headers={"Authorization": f"Bearer {TEST_TOKEN}"})
        assert len(cloud.json["firewalls"]) == 3
        deleted = http("DELETE", f"{apache.url}/api/firewalls/{listed[0]['id']}", headers=acme)
        assert deleted.json["status"] == "deleted", deleted.body
        again = http("POST", apache.url + "/api/firewalls", {"name": "again", "inbound_rules": [HTTPS]}, headers=acme)
        assert again.status == 202, again.body
