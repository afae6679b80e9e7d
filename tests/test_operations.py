"""Operations, power actions, cancel, Idempotency-Key and the monitor's rate-limit floor,
in-process against the real MariaDB and the sandbox cloud API."""

import io
import time

import pytest

from cloudprovisioner import monitor
from tests.support import TEST_INSTALL_ID, TEST_TOKEN, assert_problem, http, knob, make_config

VALID = {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}
# The fingerprint of POST /servers with VALID as the Client sends it, written out (not computed the way the
# service computes it, so a change to the service's formula shows): method, path, media type and body bytes,
# one per line, through SHA-256, i.e.
#   printf 'POST\n/servers\napplication/json\n{"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", \
#   "image": "ubuntu-24-04-x64"}' | sha256sum
VALID_FINGERPRINT = "d1c2a963218f1b5538edcdab06c09d31046eefd2deb9fa58ad5eac8394eb3a28"


def run(values):
    out, err = io.StringIO(), io.StringIO()
    status = monitor.run_once(make_config(values), out, err)
    return status, out.getvalue(), err.getvalue()


def droplets_tagged(sandbox, server_id):
    answer = http("GET", f"{sandbox}droplets?tag_name=cloudprovisioner:{TEST_INSTALL_ID}:{server_id}",
                  headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    return answer.json["droplets"]


def ready_server(admin, values):
    server = admin.post("/servers", VALID).json
    time.sleep(1.2)
    assert "1 ready" in run(values)[1]
    return server


# --- operations ---

def test_a_create_answers_with_its_operation_which_follows_the_server(admin, values):
    answer = admin.post("/servers", VALID)
    operation = answer.json["operation"]
    assert answer.headers["operation-location"] == f"/api/operations/{operation['id']}"
    assert operation["kind"] == "server.create" and operation["status"] == "running"
    assert operation["target"] == {"type": "server", "id": answer.json["id"]}
    assert operation["requested_by"]["user_id"] == admin.get("/me").json["id"]
    time.sleep(1.2)
    run(values)
    done = admin.get(f"/operations/{operation['id']}").json
    assert done["status"] == "succeeded" and done["result"]["public_ip"]


def test_operations_list_filters_and_pages(admin, values):
    ids = [admin.post("/servers", dict(VALID, name=f"web-{i}")).json["id"] for i in range(3)]
    admin.delete(f"/servers/{ids[0]}")
    everything = admin.get("/operations").json
    # Newest first; the first server also made the tenant's default firewall and VPC.
    assert [op["kind"] for op in everything] == ["server.delete"] + ["server.create"] * 3 + ["vpc.create",
                                                                                            "firewall.create"]
    assert [op["target"]["id"] for op in admin.get(f"/operations?target={ids[1]}").json] == [ids[1]]
    assert {op["kind"] for op in admin.get("/operations?kind=server.delete").json} == {"server.delete"}
    assert {op["status"] for op in admin.get("/operations?status=cancelled").json} == {"cancelled"}
    first = admin.get("/operations?limit=3")
    link = first.headers["link"]
    second = admin.get(link[link.index("</api") + len("</api"):link.index(">")])
    assert [op["id"] for op in first.json + second.json] == [op["id"] for op in everything]
    assert_problem(admin.get("/operations?status=sleeping"), 422)
    assert_problem(admin.get("/operations/01m8440000000000000000000z"), 404)


def test_cancelling_a_pending_create_leaves_no_vm(admin, values, sandbox):
    server = admin.post("/servers", VALID).json
    cancelled = admin.post(f"/operations/{server['operation']['id']}/cancel")
    assert cancelled.status == 202 and cancelled.json["status"] == "cancelled"
    assert admin.get(f"/servers/{server['id']}").json["status"] == "deleting"
    assert droplets_tagged(sandbox, server["id"]) == []  # destroyed at once: its id was known
    assert "1 deleted" in run(values)[1]
    assert admin.get(f"/servers/{server['id']}").json["status"] == "deleted"
    assert admin.get(f"/operations/{server['operation']['id']}").json["status"] == "cancelled"


def test_a_droplet_that_appears_after_its_create_was_cancelled_is_destroyed(admin, values, sandbox, db):
    server = admin.post("/servers", VALID).json
    # As if the cloud answered only after the cancel: the row knows no droplet yet.
    db.update("UPDATE servers SET instance_id = NULL WHERE id = %s", (server["id"],))
    admin.post(f"/operations/{server['operation']['id']}/cancel")
    assert len(droplets_tagged(sandbox, server["id"])) == 1
    status, out, _ = run(values)
    assert status == 0 and "destroying droplet" in out
    assert droplets_tagged(sandbox, server["id"]) == []


def test_a_finished_operation_cannot_be_cancelled(admin, values):
    server = ready_server(admin, values)
    assert_problem(admin.post(f"/operations/{server['operation']['id']}/cancel"), 409)
    deleting = admin.delete(f"/servers/{server['id']}").json
    assert_problem(admin.post(f"/operations/{deleting['operation']['id']}/cancel"), 409)


# --- power actions ---

@pytest.mark.parametrize("kind", ["reboot", "power_off", "power_on"])
def test_power_actions_run_through_an_operation(admin, values, kind):
    server = ready_server(admin, values)
    answer = admin.post(f"/servers/{server['id']}/actions", {"type": kind})
    assert answer.status == 202, answer.body
    operation = answer.json
    assert operation["kind"] == f"server.{kind}" and operation["status"] == "running"
    time.sleep(1.1)  # the sandbox completes actions after a second
    status, out, _ = run(values)
    assert status == 0 and "1 actions done" in out
    assert admin.get(f"/operations/{operation['id']}").json["status"] == "succeeded"


def test_power_actions_need_a_ready_server_and_a_known_type(admin):
    server = admin.post("/servers", VALID).json
    assert_problem(admin.post(f"/servers/{server['id']}/actions", {"type": "reboot"}), 409)
    assert "action" in assert_problem(admin.post(f"/servers/{server['id']}/actions", {"type": "explode"}),
                                      422)["errors"]["type"]


# --- Idempotency-Key ---

def keyed(admin, key, body=VALID):
    return admin.post("/servers", body, headers={"Idempotency-Key": key})


def test_a_retry_with_the_same_key_replays_the_first_answer(admin, sandbox, db):
    first = keyed(admin, '"8e03978e-40d5-43e8-bc93-6894a57f9324"')
    again = keyed(admin, '"8e03978e-40d5-43e8-bc93-6894a57f9324"')
    assert first.status == again.status == 202
    assert again.json == first.json and again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert db.one("SELECT COUNT(*) AS n FROM servers")["n"] == 1
    assert len(droplets_tagged(sandbox, first.json["id"])) == 1


def test_the_same_key_with_another_body_is_422(admin):
    keyed(admin, "k-1")
    assert_problem(keyed(admin, "k-1", dict(VALID, name="other")), 422)


def test_keys_are_per_tenant(admin, register):
    other = register(tenant="Globex", email="admin@globex.test")
    assert keyed(admin, "shared-key").json["id"] != keyed(other, "shared-key").json["id"]


def test_the_stored_fingerprint_is_method_path_media_type_and_body(admin, db):
    # The tests below plant a running claim under this value: it must be the one the service stores.
    assert keyed(admin, "fp").status == 202
    assert db.one("SELECT fingerprint FROM idempotency_keys WHERE idem_key = 'fp'")["fingerprint"] == VALID_FINGERPRINT


def test_a_retry_while_the_first_runs_is_409(admin, db):
    tenant = admin.get("/me").json["tenant_id"]
    db.update("INSERT INTO idempotency_keys (tenant_id, idem_key, fingerprint, state, created_at, expires_at) "
              "VALUES (%s, 'busy', %s, 'running', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL 1 DAY)",
              (tenant, VALID_FINGERPRINT))
    answer = keyed(admin, "busy")
    assert_problem(answer, 409)
    assert answer.headers["retry-after"]


def test_a_dead_first_request_is_answered_from_what_it_left(admin, db, values):
    """kill -9 after the row was written: the claim stays 'running'; once stale, a retry answers from the row."""
    first = keyed(admin, "died")
    db.update("UPDATE idempotency_keys SET state = 'running', status = NULL, body = NULL, "
              "created_at = UTC_TIMESTAMP(6) - INTERVAL 1 HOUR")
    retry = keyed(admin, "died")
    assert retry.status == 202 and retry.json["id"] == first.json["id"]
    assert db.one("SELECT COUNT(*) AS n FROM servers")["n"] == 1


def test_a_dead_first_request_that_wrote_nothing_is_run_again(admin, db):
    tenant = admin.get("/me").json["tenant_id"]
    db.update("INSERT INTO idempotency_keys (tenant_id, idem_key, fingerprint, state, created_at, expires_at) "
              "VALUES (%s, 'nothing', %s, 'running', UTC_TIMESTAMP(6) - INTERVAL 1 HOUR, "
              "UTC_TIMESTAMP(6) + INTERVAL 1 DAY)", (tenant, VALID_FINGERPRINT))
    assert keyed(admin, "nothing").status == 202
    assert db.one("SELECT COUNT(*) AS n FROM servers")["n"] == 1


def test_a_5xx_is_not_stored_so_a_retry_runs_again(admin, values, sandbox, db):
    from cloudprovisioner.web.app import make_app
    from tests.support import Client
    hurried = Client(make_app(make_config(dict(values, CP_CLOUD_BUDGET="1"))), admin.token)
    knob(sandbox, "POST", "/_sandbox/faults", {"status": 500, "count": 1000, "path_prefix": "/v2/droplets"})
    assert hurried.post("/servers", VALID, headers={"Idempotency-Key": "flaky"}).status == 502
    knob(sandbox, "DELETE", "/_sandbox/faults")
    assert hurried.post("/servers", VALID, headers={"Idempotency-Key": "flaky"}).status == 202


def test_expired_keys_are_forgotten(admin, db, values):
    first = keyed(admin, "old")
    db.update("UPDATE idempotency_keys SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND")
    assert keyed(admin, "old").json["id"] != first.json["id"]
    db.update("UPDATE idempotency_keys SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND")
    run(values)
    assert db.one("SELECT COUNT(*) AS n FROM idempotency_keys")["n"] == 0


@pytest.mark.parametrize("key", ["", "x" * 256, "ké"])
def test_malformed_keys_are_400(admin, key):
    assert_problem(keyed(admin, key), 400)


# --- the monitor shares the rate limit with users ---

def test_the_monitor_stops_acting_when_the_rate_limit_runs_low(admin, values, sandbox, db):
    server = ready_server(admin, values)
    admin.delete(f"/servers/{server['id']}")
    db.update("UPDATE servers SET status = 'ready' WHERE id = %s", (server["id"],))  # drift: it must notice
    knob(sandbox, "POST", "/_sandbox/config", {"ratelimit_remaining": 50})
    try:
        values["CP_RATELIMIT_FLOOR"] = "100"
        cloud = http("GET", f"{sandbox}droplets?tag_name=cloudprovisioner",
                     headers={"Authorization": f"Bearer {TEST_TOKEN}"})
        assert int(cloud.headers["ratelimit-remaining"]) < 100
        # A stray droplet would be destroyed, but not while the cloud's budget is nearly spent.
        knob(sandbox, "POST", "/_sandbox/droplets/bulk", {"count": 1, "tags": [f"cloudprovisioner:{TEST_INSTALL_ID}"]})
        values["CP_ORPHAN_GRACE"] = "-1"
        status, out, _ = run(values)
        assert status == 0 and "rate limit is low" in out and "destroying" not in out
        # Nor is the drifted row called vanished: that takes the cloud's word (a call) for its droplet.
        assert db.one("SELECT status FROM servers WHERE id = %s", (server["id"],))["status"] == "ready"
    finally:
        knob(sandbox, "POST", "/_sandbox/config", {"ratelimit_remaining": 5000})
    status, out, _ = run(values)
    assert status == 0 and "1 vanished" in out and "1 orphans destroyed" in out, out
    assert db.one("SELECT status FROM servers WHERE id = %s", (server["id"],))["status"] == "error"
