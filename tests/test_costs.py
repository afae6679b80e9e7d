"""What servers cost: DigitalOcean's billing rule against hand-computed figures, and the tenant's month (GET
/api/costs), every tenant's (GET /api/admin/costs), the metrics, and each server's price and cost to date.

The figures below are worked by hand from the rule (per second at monthly / 672 h, at least 60 s or $0.01,
capped at the monthly price in each calendar month): s-1vcpu-1gb is $6.00 a month, so an hour is
6 / 672 = $0.0089285714 (8,928.57 micro-dollars), a second 6,000,000 / 2,419,200 = 2.48 micro-dollars.
Servers are made through the app, then their lifetimes set in the database to known instants; where "now"
matters the database's own clock is pinned (`SET timestamp`), so nothing sleeps or depends on today's date.
"""

import io

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cloudprovisioner import auth, costs, monitor, servers
from cloudprovisioner.context import Context
from cloudprovisioner.errors import Invalid
from cloudprovisioner.server_rows import represent
from tests.support import TEST_TOKEN, Client, assert_problem, http, knob, make_config

ONE_GB = 6_000_000  # s-1vcpu-1gb, micro-dollars a month
BIG = 1_344_000_000  # a size of $1,344 a month: $2.00 an hour, so its 60 seconds ($0.0333) beat $0.01
JAN_1 = 1_767_225_600  # 2026-01-01T00:00:00Z
FEB_1 = 1_769_904_000  # 2026-02-01T00:00:00Z (January has 31 days)
MAR_1 = 1_772_323_200  # 2026-03-01T00:00:00Z (February 2026 has 28)
HOUR = 3600
DAY = 86_400


# --- the rule, in micro-dollars ------------------------------------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize(("seconds", "monthly", "billed"), [
    (5, ONE_GB, 10_000),  # 5 s: the minimum, $0.01 (60 s would be 149 micro-dollars)
    (59, ONE_GB, 10_000),
    (61, ONE_GB, 10_000),  # 61 s = 151 micro-dollars: still under $0.01
    (0, ONE_GB, 10_000),  # made and destroyed within a second: it existed
    (3 * HOUR, ONE_GB, 26_786),  # 3 h = 26,785.71
    (671 * HOUR, ONE_GB, 5_991_071),  # 671 h = 5,991,071.43: one hour short of the cap
    (672 * HOUR, ONE_GB, 6_000_000),  # 672 h: the monthly price exactly
    (5, BIG, 33_333),  # 60 s of $2.00/h = 33,333.33: above $0.01, so the minimum is 60 s
    (59, BIG, 33_333),
    (61, BIG, 33_889),  # 61 s = 33,888.89
])
def test_seconds_within_one_month(seconds, monthly, billed):
    start = JAN_1 + 3600  # 2026-01-01T01:00Z: 672 h later is still January
    assert costs.charges(start, start + seconds, monthly) == {(2026, 1): billed}
    assert costs.total(start, start + seconds, monthly) == billed


@pytest.mark.unit
def test_a_whole_31_day_month_is_capped_at_the_monthly_price():
    # 744 h would be 6,642,857 at the hourly rate; a calendar month never costs more than $6.00
    assert costs.charges(JAN_1, FEB_1, ONE_GB) == {(2026, 1): 6_000_000}


@pytest.mark.unit
def test_across_a_month_boundary_each_month_is_billed_its_share():
    # 2026-01-31T22:00Z to 2026-02-01T02:00Z: 2 h in each month, 17,857.14 each
    assert costs.charges(FEB_1 - 2 * HOUR, FEB_1 + 2 * HOUR, ONE_GB) == {(2026, 1): 17_857, (2026, 2): 17_857}
    assert costs.dollars(costs.total(FEB_1 - 2 * HOUR, FEB_1 + 2 * HOUR, ONE_GB)) == 0.04  # 35,714: rounded once


@pytest.mark.unit
def test_each_month_capped_on_its_own():
    # 2026-01-01 to 2026-03-15: January capped, February's 672 h are the price exactly, March 14 days = 336 h
    assert costs.charges(JAN_1, MAR_1 + 14 * DAY, ONE_GB) == {(2026, 1): 6_000_000, (2026, 2): 6_000_000,
                                                                (2026, 3): 3_000_000}


@pytest.mark.unit
def test_the_minimum_applies_once_per_droplet_to_its_first_month():
    # 30 s over midnight of January 31st: 15 s each side (37.20 micro-dollars); the minimum tops January up
    assert costs.charges(FEB_1 - 15, FEB_1 + 15, ONE_GB) == {(2026, 1): 9_963, (2026, 2): 37}
    assert costs.total(FEB_1 - 15, FEB_1 + 15, ONE_GB) == 10_000


@pytest.mark.unit
def test_the_calendar_and_the_rounding():
    assert costs.month_start(2026, 3) == MAR_1
    assert costs.month_start(2024, 3) - costs.month_start(2024, 2) == 29 * DAY  # a leap year
    assert costs.civil_month(FEB_1 - 1) == (2026, 1)
    assert costs.civil_month(FEB_1) == (2026, 2)
    assert costs.civil_month(951_782_400) == (2000, 2)  # 2000-02-29T00:00Z
    assert [costs.dollars(micro) for micro in (4_999, 5_000, 26_786, 6_000_000, 0)] == [0.0, 0.01, 0.03, 6.0, 0.0]
    assert costs.hourly_dollars(8_930) == 0.00893


# --- servers made through the app, their lifetimes set by hand ---------------------------------------------

SERVER = {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}
PRICES = {"s-1vcpu-1gb": (8_930, 6_000_000), "s-1vcpu-2gb": (17_860, 12_000_000)}


def cache_prices(db):
    """The size cache as the monitor would fill it, with DigitalOcean's list prices."""
    for slug, (hourly, monthly) in PRICES.items():
        db.update("INSERT INTO cloud_sizes (slug, vcpus, memory_mb, disk_gb, price_hourly_micro, price_monthly_micro, "
                  "available, fetched_at) VALUES (%s, 1, 1024, 25, %s, %s, 1, UTC_TIMESTAMP(6))",
                  (slug, hourly, monthly))


def create(client, **fields):
    answer = client.post("/servers", {**SERVER, **fields})
    assert answer.status == 202, answer.body
    return answer.json["id"]


def lived(db, server_id, created, destroyed=None, status=None, droplet=True):
    """Set a server's lifetime (UTC 'YYYY-MM-DD HH:MM:SS'); `status` too, and no droplet id if not `droplet`."""
    db.update("UPDATE servers SET created_at = %s, destroyed_at = %s, status = COALESCE(%s, status), "
              "instance_id = IF(%s, instance_id, NULL) WHERE id = %s",
              (created, destroyed, status, droplet, server_id))


@pytest.fixture
def acme(admin, db):
    cache_prices(db)
    return admin


@pytest.fixture
def january(acme, member, register, db):
    """Acme's servers around January 2026, and one of Globex's (see the module's docstring for the rate).

    A  operator, default,  s-1vcpu-1gb  2026-01-10 00:00 to 03:00     3 h: 26,786
    B  admin,    team-a,   s-1vcpu-1gb  2025-12-31 22:00 to 01-01 02:00   2 h + 2 h: 17,857 in each month
    C  admin,    team-a,   s-1vcpu-2gb  2025-12-20 00:00, still running   Dec 288 h: 5,142,857; Jan capped 12,000,000
    D  admin,    default,  failed create on 2026-01-05 (no droplet ever)  0
    G  Globex,   default,  s-1vcpu-1gb  2026-01-02 00:00 to 01-03 00:00   24 h: 214,286
    """
    operator = member("operator")
    assert acme.post("/workspaces", {"name": "team-a"}).status == 201
    ids = {"A": create(operator, name="a"), "B": create(acme, name="b", workspace="team-a"),
           "C": create(acme, name="c", workspace="team-a", size="s-1vcpu-2gb"), "D": create(acme, name="d")}
    globex = register("Globex", "admin@globex.test")
    ids["G"] = create(globex, name="g")
    lived(db, ids["A"], "2026-01-10 00:00:00", "2026-01-10 03:00:00", "deleted")
    lived(db, ids["B"], "2025-12-31 22:00:00", "2026-01-01 02:00:00", "deleted")
    lived(db, ids["C"], "2025-12-20 00:00:00", None, "ready")
    lived(db, ids["D"], "2026-01-05 00:00:00", None, "error", droplet=False)
    lived(db, ids["G"], "2026-01-02 00:00:00", "2026-01-03 00:00:00", "deleted")
    return ids, operator, globex


def costs_of(client, query):
    answer = client.get(f"/costs?{query}")
    assert answer.status == 200, answer.body
    return answer.json


def test_a_past_month_to_date_and_projected(january, acme):
    answer = costs_of(acme, "month=2026-01")
    # A 26,786 + B 17,857 + C 12,000,000 = 12,044,643; D never had a droplet; G is Globex's
    assert answer == {"month": "2026-01", "currency": "USD", "as_of": answer["as_of"], "month_complete": True,
                      "to_date": 12.04, "projected": 12.04, "servers": 3, "unpriced_servers": 0}
    december = costs_of(acme, "month=2025-12")  # B 17,857 + C 5,142,857 = 5,160,714
    assert (december["to_date"], december["projected"], december["servers"]) == (5.16, 5.16, 2)
    assert costs_of(acme, "month=2025-11")["to_date"] == 0.0


def test_a_server_destroyed_at_midnight_belongs_to_the_month_that_ended(acme, db):
    """Destroyed at 2026-02-01 00:00:00: all of its life was January's, and February does not list it."""
    server_id = create(acme, name="midnight")
    lived(db, server_id, "2026-01-31 21:00:00", "2026-02-01 00:00:00", "deleted")
    assert costs_of(acme, "month=2026-01")["servers"] == 1
    assert (costs_of(acme, "month=2026-02")["servers"], costs_of(acme, "month=2026-02")["to_date"]) == (0, 0.0)


def test_grouped_by_workspace_owner_and_server(january, acme, db):
    ids, _operator, _globex = january
    by_workspace = costs_of(acme, "month=2026-01&group_by=workspace")
    assert by_workspace["group_by"] == "workspace"
    assert by_workspace["groups"] == [  # most projected first
        {"workspace": "team-a", "to_date": 12.02, "projected": 12.02, "servers": 2},  # 12,017,857
        {"workspace": "default", "to_date": 0.03, "projected": 0.03, "servers": 1},
    ]
    admin_id = db.one("SELECT id FROM users WHERE email = 'admin@acme.test'")["id"]
    operator_id = db.one("SELECT id FROM users WHERE email = 'operator@acme.test'")["id"]
    assert costs_of(acme, "month=2026-01&group_by=owner")["groups"] == [
        {"owner": admin_id, "email": "admin@acme.test", "to_date": 12.02, "projected": 12.02, "servers": 2},
        {"owner": operator_id, "email": "operator@acme.test", "to_date": 0.03, "projected": 0.03, "servers": 1},
    ]
    assert costs_of(acme, "month=2026-01&group_by=server")["groups"] == [
        {"server": ids["C"], "name": "c", "size": "s-1vcpu-2gb", "status": "ready", "to_date": 12.0,
         "projected": 12.0, "servers": 1},
        {"server": ids["A"], "name": "a", "size": "s-1vcpu-1gb", "status": "deleted", "to_date": 0.03,
         "projected": 0.03, "servers": 1},
        {"server": ids["B"], "name": "b", "size": "s-1vcpu-1gb", "status": "deleted", "to_date": 0.02,
         "projected": 0.02, "servers": 1},
    ]


def test_a_viewer_reads_costs_and_bad_months_are_refused(january, acme, member):
    viewer = member("viewer")
    assert costs_of(viewer, "month=2026-01")["to_date"] == 12.04
    for query in ("month=2999-01", "month=2026-13", "month=26-01", "month=2026-1", "month=january",
                  "group_by=tenant", "month=2026-01&colour=red"):
        assert_problem(viewer.get(f"/costs?{query}"), 422)
    assert_problem(Client(acme.app).get("/costs"), 401)


def test_the_month_defaults_to_the_current_one(acme, db):
    current = db.one("SELECT DATE_FORMAT(UTC_TIMESTAMP(), '%Y-%m') AS month")["month"]
    answer = costs_of(acme, "")
    assert (answer["month"], answer["month_complete"], answer["to_date"], answer["projected"]) == (
        current, False, 0.0, 0.0)


def test_every_tenants_costs_for_a_platform_admin_only(january, acme, db):
    assert_problem(acme.get("/admin/costs?month=2026-01"), 403)  # a tenant's admin sees no other tenant
    db.update("UPDATE users SET platform_admin = 1 WHERE email = 'admin@acme.test'")
    answer = acme.get("/admin/costs?month=2026-01")
    assert answer.status == 200, answer.body
    tenants = {row["name"]: row["id"] for row in db.query("SELECT id, name FROM tenants")}
    assert answer.json == {"month": "2026-01", "currency": "USD", "as_of": answer.json["as_of"],
                           "month_complete": True, "to_date": 12.26, "projected": 12.26, "servers": 4,
                           "unpriced_servers": 0, "tenants": [  # 12,044,643 + 214,286 = 12,258,929
                               {"tenant": tenants["Acme"], "name": "Acme", "to_date": 12.04, "projected": 12.04,
                                "servers": 3},
                               {"tenant": tenants["Globex"], "name": "Globex", "to_date": 0.21,
                                "projected": 0.21, "servers": 1}]}
    assert_problem(acme.get("/admin/costs?month=2026-01&group_by=server"), 422)


def test_servers_show_their_hourly_price_and_cost_to_date(january, acme, db):
    ids, _operator, globex = january
    shown = {server["id"]: server for server in acme.get("/servers?include_deleted=true").json}
    assert {key: (shown[ids[key]]["hourly_price"], shown[ids[key]]["cost_to_date"]) for key in "ABD"} == {
        "A": (0.00893, 0.03), "B": (0.00893, 0.04), "D": (0.00893, 0.0)}  # B: 35,714 over two months
    assert shown[ids["C"]]["hourly_price"] == 0.01786
    assert ids["G"] not in shown
    assert_problem(acme.get(f"/servers/{ids['G']}"), 404)
    assert globex.get(f"/servers/{ids['G']}").json["cost_to_date"] == 0.21
    db.update("DELETE FROM cloud_sizes WHERE slug = 's-1vcpu-2gb'")  # a price not cached (yet)
    server = acme.get(f"/servers/{ids['C']}").json
    assert (server["hourly_price"], server["cost_to_date"]) == (None, None)
    assert costs_of(acme, "month=2026-01")["unpriced_servers"] == 1


def test_a_create_answers_its_estimated_monthly_price(acme):
    answer = acme.post("/servers", SERVER)
    assert answer.status == 202, answer.body
    # pending since just now: its droplet is being made, so it owes the minimum already
    assert (answer.json["estimated_monthly"], answer.json["hourly_price"], answer.json["cost_to_date"]) == (
        6.0, 0.00893, 0.01)
    answer = acme.post("/servers", {**SERVER, "name": "web-2", "size": "s-1vcpu-2gb"})
    assert answer.json["estimated_monthly"] == 12.0


def run_monitor(values):
    out, err = io.StringIO(), io.StringIO()
    assert monitor.run_once(make_config(values), out, err) == 0, err.getvalue()


def test_a_deleted_server_is_billed_until_its_delete_not_the_monitors_confirmation(acme, db, values, sandbox):
    knob(sandbox, "POST", "/_sandbox/config", {"activate_after": 0})
    server_id = create(acme)
    run_monitor(values)
    assert db.one("SELECT status FROM servers WHERE id = %s", (server_id,))["status"] == "ready"
    assert acme.delete(f"/servers/{server_id}").status == 202
    row = db.one("SELECT status, destroyed_at FROM servers WHERE id = %s", (server_id,))
    assert row["status"] == "deleting" and row["destroyed_at"] is not None
    db.update("UPDATE servers SET created_at = destroyed_at - INTERVAL 3 HOUR WHERE id = %s", (server_id,))
    db.update("UPDATE servers SET destroyed_at = destroyed_at - INTERVAL 1 DAY, "
              "created_at = created_at - INTERVAL 1 DAY WHERE id = %s", (server_id,))  # the confirmation is later
    run_monitor(values)
    row = db.one("SELECT status, TIMESTAMPDIFF(SECOND, created_at, destroyed_at) AS lived FROM servers "
                 "WHERE id = %s", (server_id,))
    assert row == {"status": "deleted", "lived": 3 * HOUR}
    assert acme.get(f"/servers/{server_id}").json["cost_to_date"] == 0.03


def test_a_vanished_droplet_is_billed_until_the_monitor_found_it_gone(acme, db, values, sandbox):
    knob(sandbox, "POST", "/_sandbox/config", {"activate_after": 0})
    server_id = create(acme)
    run_monitor(values)
    droplet = db.one("SELECT status, instance_id FROM servers WHERE id = %s", (server_id,))
    assert droplet["status"] == "ready"
    gone = http("DELETE", f"{sandbox}droplets/{droplet['instance_id']}",
                headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    assert gone.status == 204, gone.body
    run_monitor(values)
    row = db.one("SELECT status, destroyed_at FROM servers WHERE id = %s", (server_id,))
    assert row["status"] == "error" and row["destroyed_at"] is not None
    db.update("UPDATE servers SET created_at = destroyed_at - INTERVAL 27 HOUR, "
              "destroyed_at = destroyed_at - INTERVAL 1 DAY WHERE id = %s", (server_id,))
    assert acme.delete(f"/servers/{server_id}").status == 202  # the user clears it away a day later
    assert acme.get(f"/servers/{server_id}").json["cost_to_date"] == 0.03  # 3 h, not 27


def test_a_server_the_platform_deletes_is_billed_until_the_monitor_destroys_its_droplet(acme, db, values, sandbox):
    knob(sandbox, "POST", "/_sandbox/config", {"activate_after": 0})
    server_id = create(acme)
    run_monitor(values)
    # What an expiry does: the row marked deleting, with nothing asked of the cloud yet
    db.update("UPDATE servers SET status = 'deleting' WHERE id = %s AND status = 'ready'", (server_id,))
    run_monitor(values)  # destroys the droplet; the next run confirms it gone
    row = db.one("SELECT status, destroyed_at FROM servers WHERE id = %s", (server_id,))
    assert row["status"] == "deleting" and row["destroyed_at"] is not None
    db.update("UPDATE servers SET created_at = destroyed_at - INTERVAL 27 HOUR, "
              "destroyed_at = destroyed_at - INTERVAL 1 DAY WHERE id = %s", (server_id,))
    run_monitor(values)
    assert db.one("SELECT status FROM servers WHERE id = %s", (server_id,))["status"] == "deleted"
    assert acme.get(f"/servers/{server_id}").json["cost_to_date"] == 0.03


# --- "now" is the database's: pinned to 2026-02-10T00:00:00Z --------------------------------------------------

PINNED = FEB_1 + 9 * DAY


@pytest.fixture
def february(acme, register, db):
    """Acme's servers as of 2026-02-10 00:00 (February 2026 has 28 days: 672 h).

    R1 s-1vcpu-1gb ready since 02-09 00:00     to date 24 h: 214,286; to 03-01 480 h: 4,285,714
    R2 s-1vcpu-2gb ready since 01-15 00:00     to date 216 h: 3,857,143; February 672 h: 12,000,000
    X  s-1vcpu-1gb 02-01 00:00 to 03:00        26,786
    P  s-1vcpu-1gb pending, no droplet id yet, since 02-09 12:00 (a create in flight): 12 h 107,143; 468 h 4,178,571
    F  failed create, no droplet: 0; Globex's running server: not Acme's
    """
    ids = {name: create(acme, name=name.lower(), **extra) for name, extra in (
        ("R1", {}), ("R2", {"size": "s-1vcpu-2gb"}), ("X", {}), ("P", {}), ("F", {}))}
    ids["G"] = create(register("Globex", "admin@globex.test"), name="g")
    lived(db, ids["R1"], "2026-02-09 00:00:00", None, "ready")
    lived(db, ids["R2"], "2026-01-15 00:00:00", None, "ready")
    lived(db, ids["X"], "2026-02-01 00:00:00", "2026-02-01 03:00:00", "deleted")
    lived(db, ids["P"], "2026-02-09 12:00:00", None, "pending", droplet=False)
    lived(db, ids["F"], "2026-02-09 12:00:00", None, "error", droplet=False)
    lived(db, ids["G"], "2026-01-01 00:00:00", None, "ready")
    db.update("SET timestamp = %s", (PINNED,))
    yield ids
    db.update("SET timestamp = DEFAULT")


def acme_context(config, db):
    user = db.one("SELECT id, tenant_id FROM users WHERE email = 'admin@acme.test'")
    return Context(config, auth.Principal(user["id"], user["tenant_id"], "viewer"), db=db)


def test_the_current_month_to_date_and_projected_to_its_end(february, config, db):
    ctx = acme_context(config, db)
    answer = costs.report(ctx, {})
    # to date 214,286 + 3,857,143 + 26,786 + 107,143 = 4,205,358; projected 4,285,714 + 12,000,000 + 26,786
    # + 4,178,571 = 20,491,071
    assert answer == {"month": "2026-02", "currency": "USD", "as_of": "2026-02-10T00:00:00Z",
                      "month_complete": False, "to_date": 4.21, "projected": 20.49, "servers": 4,
                      "unpriced_servers": 0}
    assert costs.report(ctx, {"month": "2026-01"})["to_date"] == 7.29  # R2, 01-15 to 02-01: 408 h = 7,285,714
    with pytest.raises(Invalid):
        costs.report(ctx, {"month": "2026-03"})  # not begun


def test_the_quotas_projections(february, config, db):
    assert costs.month_projection_micro(db, acme_context(config, db).tenant_id) == 20_491_071
    size = {"price_hourly_micro": 8_930, "price_monthly_micro": ONE_GB}
    assert costs.new_server_projection_micro(db, size) == 4_071_429  # 02-10 to 03-01: 456 h = 4,071,428.57
    db.update("SET timestamp = %s", (MAR_1 - 30,))  # 30 s before March: the minimum
    assert costs.new_server_projection_micro(db, size) == 10_000
    db.update("SET timestamp = %s", (JAN_1,))  # made on the 1st of a 31-day month: 744 h, capped
    assert costs.new_server_projection_micro(db, {"price_monthly_micro": 12_000_000}) == 12_000_000


def test_a_running_servers_cost_to_date_spans_its_months(february, config, db):
    ctx = acme_context(config, db)
    shown = represent(servers.load(ctx, february["R2"]))  # January 408 h 7,285,714 + February 216 h 3,857,143
    assert (shown["hourly_price"], shown["cost_to_date"]) == (0.01786, 11.14)
    assert represent(servers.load(ctx, february["R1"]))["cost_to_date"] == 0.21


def test_the_metrics_give_each_tenants_spend_this_month(acme, register, db):
    first_of_month = "DATE_FORMAT(UTC_TIMESTAMP(), '%%Y-%%m-01 00:00:00')"
    mine = create(acme)
    theirs = create(register("Globex", "admin@globex.test"), name="g")
    for server_id, hours in ((mine, 3), (theirs, 1)):  # 26,786 and 8,929
        db.update(f"UPDATE servers SET status = 'deleted', created_at = {first_of_month}, "
                  f"destroyed_at = {first_of_month} + INTERVAL %s HOUR WHERE id = %s", (hours, server_id))
    db.update("UPDATE users SET platform_admin = 1 WHERE email = 'admin@acme.test'")
    answer = acme.get("/metrics")
    assert answer.status == 200, answer.body
    families = {family.name: family for family in text_string_to_metric_families(answer.body.decode())}
    tenants = {row["name"]: row["id"] for row in db.query("SELECT id, name FROM tenants")}
    spend = {sample.labels["tenant"]: sample.value for sample in families["cloudprovisioner_tenant_spend_usd"].samples}
    assert spend == {tenants["Acme"]: 0.03, tenants["Globex"]: 0.01}
