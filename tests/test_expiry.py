"""Server expiry (issue 16, item 5): `expires_at` or `ttl` on create, the tenant's policy (required, capped),
PATCH /api/servers/<id> moving it, and the monitor warning the owner once and deleting the server at its
expiry as a `server.expire` operation, once, whatever runs twice or dies half-way. In-process against the
real MariaDB, SMTP server and local cloud, and once through the installed Apache and cron jobs.

Times are the database's: a test moves a server's expiry by writing `expires_at` relative to UTC_TIMESTAMP(),
never by waiting. The platform's cap in this module is two days (CP_SERVER_MAX_TTL=172800, see `config`).
"""

import io
from datetime import UTC, datetime, timedelta

import pytest

from cloudprovisioner import expiry, mailer, monitor
from cloudprovisioner.context import Context
from cloudprovisioner.db import Database
from cloudprovisioner.errors import CloudFailed
from cloudprovisioner.ids import new_id
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
    run_cron_job,
)

SERVER = {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}
PASSWORD = "long enough password"


@pytest.fixture
def config(values):
    """This module's platform default: at most two days ahead, not required."""
    values.update(CP_SERVER_MAX_TTL="172800", CP_SERVER_REQUIRE_TTL="no")
    return make_config(values)


def run(values):
    out, err = io.StringIO(), io.StringIO()
    status = monitor.run_once(make_config(values), out, err)
    return status, out.getvalue(), err.getvalue()


def when(text):
    """An API or database time ("2026-11-30T08:00:00Z") as a datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def db_now(db):
    return when(db.one("SELECT UTC_TIMESTAMP() AS now")["now"])


def droplets(sandbox):
    answer = http("GET", f"{sandbox}droplets?per_page=200", headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    assert answer.status == 200, answer.body
    return [droplet["id"] for droplet in answer.json["droplets"]]


def stored(db, server_id):
    return db.one("SELECT expires_at, expiry_warned_at, status FROM servers WHERE id = %s", (server_id,))


def set_expiry(db, server_id, offset_seconds):
    """Move a server's expiry to the database's now plus `offset_seconds` (negative: past)."""
    db.update("UPDATE servers SET expires_at = UTC_TIMESTAMP() + INTERVAL %s SECOND WHERE id = %s",
              (offset_seconds, server_id))


def tenant_policy(db, email, max_ttl_seconds, require_ttl):
    """A platform admin's override, as tenant_quotas holds it (its API is the quotas engineer's)."""
    tenant_id = db.one("SELECT tenant_id FROM users WHERE email = %s", (email,))["tenant_id"]
    db.update("INSERT INTO tenant_quotas (tenant_id, max_ttl_seconds, require_ttl) VALUES (%s, %s, %s) "
              "ON DUPLICATE KEY UPDATE max_ttl_seconds = VALUES(max_ttl_seconds), require_ttl = VALUES(require_ttl)",
              (tenant_id, max_ttl_seconds, require_ttl))


def outbox(db, recipient):
    return db.query("SELECT subject, body FROM outbox WHERE recipient = %s ORDER BY id", (recipient,))


# -- on create -------------------------------------------------------------------------------------------------


def test_a_create_stores_a_ttl_from_the_database_clock_and_an_instant_in_utc(admin, db):
    before = db_now(db)
    answer = admin.post("/servers", dict(SERVER, ttl="90m"))
    after = db_now(db)
    assert answer.status == 202, answer.body
    server = answer.json
    expires = when(server["expires_at"])
    assert before + timedelta(minutes=90) <= expires <= after + timedelta(minutes=90)
    assert stored(db, server["id"])["expires_at"] == server["expires_at"]
    assert admin.get(f"/servers/{server['id']}").json["expires_at"] == server["expires_at"]

    before = db_now(db)
    form = admin.post("/servers", dict(SERVER, name="web-2", ttl="2d"),
                      content_type="application/x-www-form-urlencoded")
    after = db_now(db)
    assert form.status == 202, form.body
    assert before + timedelta(days=2) <= when(form.json["expires_at"]) <= after + timedelta(days=2)

    # 05:04:05.678 at +02:00 is 03:04:05 UTC, the fraction dropped; a day ahead, within the two-day cap.
    tomorrow = (db_now(db) + timedelta(days=1)).strftime("%Y-%m-%d")
    instant = admin.post("/servers", dict(SERVER, name="web-3", expires_at=f"{tomorrow}T05:04:05.678+02:00"))
    assert instant.status == 202, instant.body
    assert instant.json["expires_at"] == f"{tomorrow}T03:04:05Z"
    assert stored(db, instant.json["id"])["expires_at"] == f"{tomorrow}T03:04:05Z"

    plain = admin.post("/servers", dict(SERVER, name="web-4", ttl=None)).json
    assert plain["expires_at"] is None and stored(db, plain["id"])["expires_at"] is None
    listed = {server["name"]: server["expires_at"] for server in admin.get("/servers").json}
    assert listed["web-3"] == f"{tomorrow}T03:04:05Z" and listed["web-4"] is None


def test_a_bad_expiry_is_422_naming_the_field_and_nothing_is_made(admin, db, sandbox):
    duration_hint = 'must be a duration: a whole number and one unit, s, m, h or d ("90m", "8h", "3d")'
    instant_hint = "must be an RFC 3339 time like 2026-12-01T18:00:00Z"
    for body, errors in (
            ({"ttl": "8"}, {"ttl": duration_hint}),
            ({"ttl": "8x"}, {"ttl": duration_hint}),
            ({"ttl": "0h"}, {"ttl": duration_hint}),
            ({"ttl": "1.5h"}, {"ttl": duration_hint}),
            ({"ttl": "1h30m"}, {"ttl": duration_hint}),
            ({"ttl": " 8h"}, {"ttl": duration_hint}),
            ({"ttl": 3600}, {"ttl": duration_hint}),
            ({"ttl": "3651d"}, {"ttl": "must be at most 3650d"}),
            ({"expires_at": "tomorrow"}, {"expires_at": instant_hint}),
            ({"expires_at": "2026-12-01T18:00:00"}, {"expires_at": instant_hint}),
            ({"expires_at": "2026-12-01 18:00:00Z"}, {"expires_at": instant_hint}),
            ({"expires_at": "2026-02-30T18:00:00Z"},
             {"expires_at": instant_hint + ": '2026-02-30T18:00:00Z' is no such time"}),
            ({"expires_at": "2030-01-01T00:00:00+24:00"}, {"expires_at": instant_hint}),  # no such offset
            ({"expires_at": "2030-01-01T00:00:00+00:60"}, {"expires_at": instant_hint}),
            ({"ttl": "8h", "expires_at": "2030-01-01T00:00:00Z"},
             {"ttl": "give expires_at or ttl, not both", "expires_at": "give expires_at or ttl, not both"}),
            ({"expires_at": "2020-01-01T00:00:00Z"},
             {"expires_at": "is not in the future (2020-01-01T00:00:00Z); an expiry must be at most 2d (172800 s) "
                            "from now"}),
    ):
        problem = assert_problem(admin.post("/servers", dict(SERVER, **body)), 422)
        assert problem["errors"] == errors, body
    assert db.one("SELECT COUNT(*) AS n FROM servers")["n"] == 0
    assert droplets(sandbox) == []


def test_an_instant_is_held_to_what_a_ttl_may_say(admin, db, values):
    """No cap in the policy: an expires_at is still at most 3650 days away, as a ttl is."""
    uncapped = Client(make_app(make_config({**values, "CP_SERVER_MAX_TTL": "0"})), admin.token)
    problem = assert_problem(uncapped.post("/servers", dict(SERVER, expires_at="2099-01-01T00:00:00Z")), 422)
    assert problem["errors"]["expires_at"].startswith("must be at most 3650d from now; this one is ")
    assert uncapped.post("/servers", dict(SERVER, ttl="3650d")).status == 202


def test_the_platform_cap_and_each_tenants_own_policy(admin, register, db, values):
    over = assert_problem(admin.post("/servers", dict(SERVER, ttl="49h")), 422)
    assert over["errors"] == {"ttl": "must be at most 2d (172800 s) from now (the tenant's longest expiry); "
                                     "this one is 49h away"}
    far = (db_now(db) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    over = assert_problem(admin.post("/servers", dict(SERVER, expires_at=far)), 422)
    assert over["errors"]["expires_at"].startswith("must be at most 2d (172800 s) from now")
    assert admin.post("/servers", dict(SERVER, ttl="48h")).status == 202

    # Globex: its own cap of one hour, and an expiry required. Acme keeps the platform's.
    globex = register(tenant="Globex", email="admin@globex.test")
    tenant_policy(db, "admin@globex.test", 3600, 1)
    assert assert_problem(globex.post("/servers", dict(SERVER, ttl="61m")), 422)["errors"] == {
        "ttl": "must be at most 1h (3600 s) from now (the tenant's longest expiry); this one is 61m away"}
    assert assert_problem(globex.post("/servers", SERVER), 422)["errors"] == {
        "expires_at": "required: this tenant's servers must expire; give expires_at or ttl, at most 1h (3600 s) "
                      "from now"}
    assert globex.post("/servers", dict(SERVER, ttl="60m")).status == 202
    assert admin.post("/servers", dict(SERVER, name="web-2")).status == 202  # not required of Acme
    assert admin.post("/servers", dict(SERVER, name="web-3", ttl="2d")).status == 202

    # An override of 0 lifts the cap for that tenant alone.
    tenant_policy(db, "admin@globex.test", 0, None)
    assert globex.post("/servers", dict(SERVER, name="web-2", ttl="30d")).status == 202
    assert assert_problem(globex.post("/servers", dict(SERVER, expires_at="2020-01-01T00:00:00Z")), 422)[
        "errors"] == {"expires_at": "is not in the future (2020-01-01T00:00:00Z); an expiry must be in the future"}
    assert globex.post("/servers", dict(SERVER, name="web-3")).status == 202  # NULL: the platform's "no"

    # The platform's own "yes" and no cap, for a tenant without an override.
    acme = db.one("SELECT id AS user_id, tenant_id FROM users WHERE email = 'admin@acme.test'")
    caller = type("Caller", (), {"tenant_id": acme["tenant_id"], "user_id": acme["user_id"], "token_id": None})
    strict = make_config({**values, "CP_SERVER_REQUIRE_TTL": "yes", "CP_SERVER_MAX_TTL": "0"})
    assert expiry.policy(Context(strict, caller, db=db)) == (True, 0)
    assert expiry.policy(Context(make_config(values), caller, db=db)) == (False, 172800)


# -- PATCH /api/servers/<id> ------------------------------------------------------------------------------------


def test_an_operator_moves_and_removes_an_expiry_within_the_policy(admin, member, db):
    operator = member("operator")
    server_id = admin.post("/servers", dict(SERVER, ttl="1h")).json["id"]

    before = db_now(db)
    answer = operator.patch(f"/servers/{server_id}", {"ttl": "2d"}, headers={"X-Request-Id": "extend-web-1-0001"})
    after = db_now(db)
    assert answer.status == 200, answer.body
    assert answer.json["id"] == server_id and answer.json["name"] == "web-1"
    assert before + timedelta(days=2) <= when(answer.json["expires_at"]) <= after + timedelta(days=2)
    assert stored(db, server_id)["expires_at"] == answer.json["expires_at"]

    sooner = (db_now(db) + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert operator.patch(f"/servers/{server_id}", {"expires_at": sooner}).json["expires_at"] == sooner
    assert operator.patch(f"/servers/{server_id}", {"expires_at": None}).json["expires_at"] is None
    assert stored(db, server_id)["expires_at"] is None

    refusals = (
        ({"ttl": "3d"},
         {"ttl": "must be at most 2d (172800 s) from now (the tenant's longest expiry); this one is 3d away"}),
        ({"expires_at": "2020-01-01T00:00:00Z"},
         {"expires_at": "is not in the future (2020-01-01T00:00:00Z); an expiry must be at most 2d (172800 s) "
                        "from now"}),
        ({"ttl": "1h", "expires_at": None},
         {"ttl": "give expires_at or ttl, not both", "expires_at": "give expires_at or ttl, not both"}),
        ({}, {"expires_at": "give expires_at or ttl (null removes the expiry)"}),
        ({"name": "renamed"}, {"name": "unknown field"}),
        ({"ttl": "1h", "status": "ready"}, {"status": "unknown field"}),
    )
    for body, errors in refusals:
        assert assert_problem(operator.patch(f"/servers/{server_id}", body), 422)["errors"] == errors, body
    assert stored(db, server_id)["expires_at"] is None
    assert db.one("SELECT name FROM servers WHERE id = %s", (server_id,))["name"] == "web-1"

    # Once required, it can be moved but not removed.
    tenant_policy(db, "admin@acme.test", None, 1)
    assert operator.patch(f"/servers/{server_id}", {"ttl": "5h"}).status == 200
    assert assert_problem(operator.patch(f"/servers/{server_id}", {"ttl": None}), 422)["errors"] == {
        "ttl": "required: this tenant's servers must expire; give expires_at or ttl, at most 2d (172800 s) from now"}
    assert stored(db, server_id)["expires_at"] is not None

    operator_id = operator.get("/me").json["id"]
    rows = db.query("SELECT user_id, action, target, result, status, request_id FROM audit_log "
                    "WHERE action = 'servers.update_server' ORDER BY id")
    assert len(rows) == 3 + len(refusals) + 2
    assert rows[0] == {"user_id": operator_id, "action": "servers.update_server", "target": server_id,
                       "result": "ok", "status": 200, "request_id": "extend-web-1-0001"}
    assert [(row["result"], row["status"]) for row in rows[3:-2]] == [("failed", 422)] * len(refusals)


def test_viewers_and_developers_may_not_and_another_tenants_server_is_404(admin, member, register, db):
    server_id = admin.post("/servers", dict(SERVER, ttl="1h")).json["id"]
    expires_at = stored(db, server_id)["expires_at"]
    for role in ("viewer", "developer"):
        problem = assert_problem(member(role).patch(f"/servers/{server_id}", {"ttl": "2d"}), 403)
        assert "operator" in problem["detail"]
    globex = register(tenant="Globex", email="admin@globex.test")
    theirs = globex.patch(f"/servers/{server_id}", {"ttl": "2d"})
    made_up = globex.patch(f"/servers/{new_id()}", {"ttl": "2d"})
    assert assert_problem(theirs, 404)["detail"] == assert_problem(made_up, 404)["detail"] == "no such server"
    assert stored(db, server_id)["expires_at"] == expires_at


def test_a_deleting_or_deleted_server_keeps_its_end(admin, db):
    server_id = admin.post("/servers", dict(SERVER, ttl="1h")).json["id"]
    assert admin.delete(f"/servers/{server_id}").status == 202
    problem = assert_problem(admin.patch(f"/servers/{server_id}", {"ttl": "2d"}), 409)
    assert problem["type"].endswith(":server-deleting")
    assert problem["detail"] == "the server is deleting; its expiry cannot change"
    db.update("UPDATE servers SET status = 'deleted' WHERE id = %s", (server_id,))
    assert assert_problem(admin.patch(f"/servers/{server_id}", {"expires_at": None}), 409)["detail"] == (
        "the server is deleted; its expiry cannot change")
    assert stored(db, server_id)["expires_at"] is not None


# -- the monitor -----------------------------------------------------------------------------------------------


@pytest.fixture
def operator_server(admin, member, sandbox):
    """A server made by an operator (its owner, who is mailed), two days from its expiry; the sandbox activates
    droplets at once here, so the monitor's first run makes it ready."""
    knob(sandbox, "POST", "/_sandbox/config", {"activate_after": 0})
    operator = member("operator", email="olivia@acme.test")
    server = operator.post("/servers", dict(SERVER, ttl="2d")).json
    return operator, server


def test_the_owner_is_warned_once_and_again_only_after_the_expiry_moved_away(operator_server, values, db, smtp,
                                                                             config):
    operator, server = operator_server
    status, out, err = run(values)
    assert (status, err) == (0, "") and "1 ready" in out and "warning" not in out  # two days: not yet
    set_expiry(db, server["id"], 3600)
    expires_at = stored(db, server["id"])["expires_at"]

    status, out, err = run(values)
    assert (status, err) == (0, "") and "1 expiry warnings" in out
    assert outbox(db, "olivia@acme.test") == [{
        "subject": f"Server web-1 expires at {expires_at}",
        "body": f"Your server web-1 ({server['id']}) expires at {expires_at} (UTC).\n\n"
                "CloudProvisioner will then delete it, and its disk with everything on it.\n\n"
                "To keep it longer, an operator of your tenant can move its expiry within your tenant's policy:\n"
                f"PATCH /api/servers/{server['id']} with {{\"ttl\": \"3d\"}} or {{\"expires_at\": \"...\"}}.\n"}]
    smtp.messages.clear()
    assert mailer.deliver(config, db)[1] == 0
    [mail] = [mail for mail in smtp.messages if mail["To"] == "olivia@acme.test"]
    assert (mail["To"], mail["Subject"]) == ("olivia@acme.test", f"Server web-1 expires at {expires_at}")
    assert f"({server['id']}) expires at {expires_at} (UTC)" in mail.get_content()

    assert run(values) == (0, "", "")  # warned already: no second mail
    assert operator.patch(f"/servers/{server['id']}", {"ttl": "2h"}).status == 200  # sooner, still in the window
    assert run(values) == (0, "", "")
    assert len(outbox(db, "olivia@acme.test")) == 1

    assert operator.patch(f"/servers/{server['id']}", {"ttl": "2d"}).status == 200  # past the window: re-armed
    assert stored(db, server["id"])["expiry_warned_at"] is None
    set_expiry(db, server["id"], 1800)
    assert "1 expiry warnings" in run(values)[1]
    assert [mail["subject"] for mail in outbox(db, "olivia@acme.test")] == [
        f"Server web-1 expires at {expires_at}", f"Server web-1 expires at {stored(db, server['id'])['expires_at']}"]

    # An owner who is gone is not mailed; the warning still counts as given.
    db.update("UPDATE servers SET expiry_warned_at = NULL WHERE id = %s", (server["id"],))
    db.update("UPDATE users SET deleted_at = UTC_TIMESTAMP(6) WHERE email = 'olivia@acme.test'")
    assert run(values) == (0, "", "")
    assert len(outbox(db, "olivia@acme.test")) == 2 and stored(db, server["id"])["expiry_warned_at"] is not None


def test_a_server_past_its_expiry_is_deleted_once_by_the_next_run(operator_server, admin, values, db, sandbox):
    operator, server = operator_server
    assert "1 ready" in run(values)[1]
    assert droplets(sandbox) == [int(server["instance_id"])]
    set_expiry(db, server["id"], -3 * 86400)  # the monitor was away for three days: no warning, just the end
    expires_at = stored(db, server["id"])["expires_at"]

    status, out, err = run(values)
    assert (status, err) == (0, "")
    assert f"monitor: server {server['id']} expired at {expires_at}: deleting it" in out and "1 expired" in out
    assert "warning" not in out
    # Never warned (it expired before any run could): its owner is told as it goes.
    assert outbox(db, "olivia@acme.test") == [{
        "subject": f"Server web-1 expired at {expires_at}",
        "body": f"Your server web-1 ({server['id']}) expired at {expires_at} (UTC), before a\n"
                "warning could reach you. CloudProvisioner is deleting it now, and its disk with everything on it.\n"}]
    assert droplets(sandbox) == []
    row = db.one("SELECT status, status_reason FROM servers WHERE id = %s", (server["id"],))
    assert row == {"status": "deleting", "status_reason": f"expired at {expires_at}"}
    history = admin.get(f"/operations?target={server['id']}").json
    assert [(op["kind"], op["status"]) for op in history] == [("server.expire", "running"),
                                                              ("server.create", "succeeded")]
    assert history[0]["requested_by"] == {"user_id": None, "token_id": None}
    assert history[0]["result"] == {"reason": f"expired at {expires_at}"}
    acme = admin.get("/me").json["tenant_id"]
    audit = db.query("SELECT tenant_id, user_id, token_id, action, target, result, status, request_id "
                     "FROM audit_log WHERE action = 'monitor.expire_server'")
    assert audit == [{"tenant_id": acme, "user_id": None, "token_id": None, "action": "monitor.expire_server",
                      "target": server["id"], "result": "ok", "status": 202, "request_id": history[0]["id"]}]
    shown = admin.get("/audit?action=monitor.expire_server").json
    assert [(entry["target"], entry["user_id"], entry["status"]) for entry in shown] == [(server["id"], None, 202)]

    status, out, err = run(values)  # the droplet is gone: confirmed, as for a DELETE
    assert (status, err) == (0, "") and "1 deleted" in out and "expired" not in out
    shown = admin.get(f"/servers/{server['id']}").json
    assert (shown["status"], shown["status_reason"], shown["expires_at"]) == ("deleted", "deleted", expires_at)
    history = admin.get(f"/operations?target={server['id']}").json
    assert [(op["kind"], op["status"], op["result"]) for op in history] == [
        ("server.expire", "succeeded", {"reason": f"expired at {expires_at}"}),
        ("server.create", "succeeded", history[1]["result"])]

    assert run(values) == (0, "", "")  # nothing left to do: no second expiry, operation or audit row
    assert db.one("SELECT COUNT(*) AS n FROM operations WHERE kind = 'server.expire'")["n"] == 1
    assert db.one("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'monitor.expire_server'")["n"] == 1


def test_a_droplet_the_cloud_will_not_destroy_holds_up_nothing_else(operator_server, register, values, db, sandbox):
    """One expired server whose droplet the cloud keeps refusing to destroy: the run goes on with every other
    server (another tenant's new one becomes ready), says what failed, and the next run tries again."""
    operator, server = operator_server
    assert "1 ready" in run(values)[1]
    set_expiry(db, server["id"], -60)
    other = register(tenant="Globex", email="admin@globex.test").post("/servers", dict(SERVER, name="other")).json
    knob(sandbox, "POST", "/_sandbox/faults", {"method": "DELETE", "path_prefix": "/v2/droplets", "status": 500,
                                               "count": 1000})
    status, out, err = run({**values, "CP_MONITOR_CLOUD_BUDGET": "2"})  # it gives up on the droplet quickly
    assert (status, err) == (0, "")
    assert f"monitor: server {server['id']}: " in out and "the next run tries again" in out
    assert db.one("SELECT status FROM servers WHERE id = %s", (other["id"],))["status"] == "ready"
    assert stored(db, server["id"])["status"] == "deleting" and droplets(sandbox) != []

    knob(sandbox, "DELETE", "/_sandbox/faults")
    run(values)
    assert droplets(sandbox) == [int(other["instance_id"])]


def test_a_moved_expiry_wins_over_a_monitor_that_read_the_old_one(operator_server, values, db, sandbox):
    """Two monitors (or one and a PATCH) that read the same expired row: the conditional UPDATE lets one act."""
    operator, server = operator_server
    set_expiry(db, server["id"], -60)
    [read] = db.query("SELECT id, tenant_id, status, expires_at, expiry_warned_at FROM servers WHERE id = %s",
                      (server["id"],))
    other = Database(make_config(values))
    try:
        for attempt in other.transaction():
            with attempt:
                assert expiry.expire(other, read) is True
        for attempt in db.transaction():
            with attempt:
                assert expiry.expire(db, read) is False  # the second monitor, with its stale read
    finally:
        other.close()
    assert db.one("SELECT COUNT(*) AS n FROM operations WHERE kind = 'server.expire'")["n"] == 1
    assert db.one("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'monitor.expire_server'")["n"] == 1

    # A PATCH that moved the expiry after a monitor read the row: the monitor's claim no longer holds.
    second = operator.post("/servers", dict(SERVER, name="web-2", ttl="1h")).json
    set_expiry(db, second["id"], -60)
    [stale] = db.query("SELECT id, tenant_id, status, expires_at, expiry_warned_at FROM servers WHERE id = %s",
                       (second["id"],))
    assert operator.patch(f"/servers/{second['id']}", {"ttl": "1d"}).status == 200
    for attempt in db.transaction():
        with attempt:
            assert expiry.expire(db, stale) is False
    assert stored(db, second["id"])["status"] == "pending"

    # Two warnings of one server: the first claims it, the second finds it claimed.
    set_expiry(db, second["id"], 600)
    for expected in (True, False):
        for attempt in db.transaction():
            with attempt:
                assert expiry.warn(db, second["id"], 86400) is expected
    # The first server's owner was told as it went (it was never warned); the second's warned once.
    assert [mail["subject"].split(" at ")[0] for mail in outbox(db, "olivia@acme.test")] == [
        "Server web-1 expired", "Server web-2 expires"]


def test_a_run_that_dies_half_way_leaves_nothing_half_done(operator_server, values, db, sandbox, monkeypatch):
    operator, server = operator_server
    assert "1 ready" in run(values)[1]
    set_expiry(db, server["id"], 600)

    def refuse(*args):
        raise RuntimeError("the outbox write failed")
    monkeypatch.setattr(mailer, "enqueue", refuse)
    with pytest.raises(RuntimeError):
        run(values)
    monkeypatch.undo()
    assert stored(db, server["id"])["expiry_warned_at"] is None  # rolled back with the mail: not lost
    assert "1 expiry warnings" in run(values)[1] and len(outbox(db, "olivia@acme.test")) == 1

    # Marked deleting, then the run fails before destroying the droplet: the next run destroys it.
    set_expiry(db, server["id"], -1)

    def cloud_gone(self):
        raise CloudFailed("the cloud did not answer", status=503)
    monkeypatch.setattr(monitor.Run, "_droplets_by_row", cloud_gone)
    status, out, err = run(values)
    monkeypatch.undo()
    assert status == 1 and "the cloud did not answer" in err and "deleting it" in out
    assert stored(db, server["id"])["status"] == "deleting"
    assert droplets(sandbox) == [int(server["instance_id"])]
    status, out, err = run(values)
    assert (status, err) == (0, "") and "expired" not in out and f"destroying droplet {server['instance_id']}" in out
    assert droplets(sandbox) == []
    assert "1 deleted" in run(values)[1]
    assert db.one("SELECT status FROM operations WHERE kind = 'server.expire'")["status"] == "succeeded"


# -- through Apache and cron -----------------------------------------------------------------------------------


def test_through_apache_and_cron_the_owner_is_warned_and_the_server_expires(fresh_installed, apache, sandbox, smtp):
    installed, api = fresh_installed, apache.url + "/api"
    registered = http("POST", api + "/auth/register", {"tenant_name": "Expiring", "name": "Eve",
                                                       "email": "eve@expiry.test", "password": PASSWORD})
    assert registered.status == 201, registered.body
    knob(sandbox, "POST", "/_sandbox/config", {"activate_after": 0})  # ready at the first run
    tokens = http("POST", api + "/auth/login", {"email": "eve@expiry.test", "password": PASSWORD}).json
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    db = Database(installed_config(installed))
    try:
        with installed_settings(installed, CP_SERVER_MAX_TTL="86400", CP_EXPIRY_WARNING="7200"):
            refused = http("POST", api + "/servers", dict(SERVER, ttl="25h"), headers=auth)
            assert assert_problem(refused, 422)["errors"] == {
                "ttl": "must be at most 1d (86400 s) from now (the tenant's longest expiry); this one is 25h away"}
            created = http("POST", api + "/servers", dict(SERVER, ttl="90m"), headers=auth)
            assert created.status == 202, (created.body, apache.error_log())
            server = created.json
            assert server["expires_at"] == stored(db, server["id"])["expires_at"]

            job = run_cron_job(installed, "monitor_new_node")
            assert job.returncode == 0 and "1 ready" in job.stdout and "1 expiry warnings" in job.stdout, (
                job.stdout, job.stderr)
            smtp.messages.clear()
            job = run_cron_job(installed, "send_mail")
            assert job.returncode == 0 and "sent" in job.stdout, (job.stdout, job.stderr)
            warnings = [mail for mail in smtp.messages if mail["Subject"].startswith("Server web-1 expires at")]
            assert [(mail["To"], mail["Subject"]) for mail in warnings] == [
                ("eve@expiry.test", f"Server web-1 expires at {server['expires_at']}")]

            moved = http("PATCH", f"{api}/servers/{server['id']}", {"ttl": "30m"}, headers=auth)
            assert moved.status == 200 and moved.json["expires_at"] != server["expires_at"], moved.body
            set_expiry(db, server["id"], -1)
            job = run_cron_job(installed, "monitor_new_node")
            assert job.returncode == 0 and "1 expired" in job.stdout, (job.stdout, job.stderr)
            assert droplets(sandbox) == []
            job = run_cron_job(installed, "monitor_new_node")
            assert job.returncode == 0 and "1 deleted" in job.stdout, (job.stdout, job.stderr)
            assert run_cron_job(installed, "monitor_new_node").stdout == ""
    finally:
        db.close()
    history = http("GET", f"{api}/operations?target={server['id']}", headers=auth).json
    assert [(op["kind"], op["status"]) for op in history] == [("server.expire", "succeeded"),
                                                              ("server.create", "succeeded")]
    audit = http("GET", api + "/audit?action=monitor.expire_server", headers=auth).json
    assert [(entry["target"], entry["user_id"], entry["result"]) for entry in audit] == [(server["id"], None, "ok")]
    shown = http("GET", f"{api}/servers/{server['id']}", headers=auth).json
    assert (shown["status"], shown["status_reason"]) == ("deleted", "deleted")
