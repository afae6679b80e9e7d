"""The monitor against the real MariaDB and the sandbox: ready, timeouts, deletions, orphans, the lock."""

import io
import time

from cloudprovisioner import leases, monitor
from cloudprovisioner.db import Database
from tests.support import TEST_INSTALL_ID, TEST_TOKEN, http, knob, make_config

VALID = {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}


def run(values):
    out, err = io.StringIO(), io.StringIO()
    status = monitor.run_once(make_config(values), out, err)
    return status, out.getvalue(), err.getvalue()


def cloud(sandbox, method, path, body=None):
    return http(method, sandbox + path, body, headers={"Authorization": f"Bearer {TEST_TOKEN}"})


def wait_active():
    time.sleep(1.2)  # the sandbox activates droplets after one second


def test_pending_becomes_ready_with_ips_then_runs_are_quiet(admin, values, db):
    server = admin.request("POST", "/servers", VALID).json
    status, out, _ = run(values)
    assert (status, out) == (0, "")  # not active yet: nothing changed, nothing said
    wait_active()
    status, out, err = run(values)
    assert status == 0 and err == ""
    assert out.startswith("monitor: 1 ready; 1 droplets listed in 1 page")
    ready = admin.request("GET", f"/servers/{server['id']}").json
    assert ready["status"] == "ready" and ready["ready_at"]
    assert ready["public_ip"].startswith(("192.0.2.", "198.51.100.", "203.0.113."))
    assert ready["private_ip"].startswith("172.16.")  # in the tenant's default VPC, from CP_VPC_POOL
    assert run(values) == (0, "", "")


def test_an_active_droplet_without_a_public_ipv4_stays_pending_until_it_has_one(admin, values, sandbox, db):
    """DigitalOcean can list a droplet active before its public address is attached: a server marked
    ready then would have no address to reach it by, so it waits for the address."""
    server = admin.request("POST", "/servers", VALID).json
    droplet_id = server["instance_id"]
    assert knob(sandbox, "DELETE", f"/_sandbox/droplets/{droplet_id}/public_ipv4").status == 204
    knob(sandbox, "POST", "/_sandbox/config", {"activate_after": 0})
    shown = cloud(sandbox, "GET", f"droplets/{droplet_id}").json["droplet"]
    assert shown["status"] == "active" and [net["type"] for net in shown["networks"]["v4"]] == ["private"]

    assert run(values) == (0, "", "")  # active, but nothing to reach it by: nothing changed
    row = db.one("SELECT status, public_ip, private_ip, ready_at FROM servers WHERE id = %s", (server["id"],))
    assert row == {"status": "pending", "public_ip": None, "private_ip": None, "ready_at": None}
    assert admin.request("GET", f"/servers/{server['id']}").json["status"] == "pending"

    assert knob(sandbox, "POST", f"/_sandbox/droplets/{droplet_id}/public_ipv4").status == 204
    address = cloud(sandbox, "GET", f"droplets/{droplet_id}").json["droplet"]["networks"]["v4"][0]
    assert address["type"] == "public"
    status, out, err = run(values)
    assert status == 0 and err == "" and out.startswith("monitor: 1 ready;")
    ready = admin.request("GET", f"/servers/{server['id']}").json
    assert ready["status"] == "ready" and ready["ready_at"]
    assert ready["public_ip"] == address["ip_address"]


def test_a_delete_between_the_monitors_read_and_its_write_is_not_undone(admin, values, sandbox, db, monkeypatch):
    """The monitor reads a pending row, finds its droplet active, and writes ready: a user's DELETE
    landing in between must win (the guarded UPDATE, `AND status = <what it saw>`). The hook runs the
    DELETE at exactly that point, in the monitor's own run, before the monitor acts on the row it read."""
    server = admin.request("POST", "/servers", VALID).json
    knob(sandbox, "POST", "/_sandbox/config", {"activate_after": 0})  # active now: the monitor would say ready
    settle_pending = monitor.Run._settle_pending
    deletes = []

    def delete_then_settle(run_, row, droplet):
        assert (row["id"], row["status"]) == (server["id"], "pending")  # what the monitor read
        answer = admin.request("DELETE", f"/servers/{server['id']}")
        deletes.append(answer.status)
        assert db.one("SELECT status FROM servers WHERE id = %s", (server["id"],))["status"] == "deleting"
        return settle_pending(run_, row, droplet)

    monkeypatch.setattr(monitor.Run, "_settle_pending", delete_then_settle)
    status, out, err = run(values)
    monkeypatch.undo()
    assert deletes == [202]
    row = db.one("SELECT status, status_reason, public_ip, ready_at FROM servers WHERE id = %s", (server["id"],))
    assert row == {"status": "deleting", "status_reason": "deletion requested", "public_ip": None, "ready_at": None}
    assert (status, err) == (0, "") and "ready" not in out
    operations = db.query("SELECT kind, status FROM operations WHERE target_id = %s ORDER BY kind", (server["id"],))
    assert operations == [{"kind": "server.create", "status": "cancelled"},
                          {"kind": "server.delete", "status": "running"}]
    # The user's delete goes on: the droplet is gone (the DELETE destroyed it), so the next run confirms it.
    assert "1 deleted" in run(values)[1]
    assert db.one("SELECT status FROM servers WHERE id = %s", (server["id"],))["status"] == "deleted"


def test_deletion_is_confirmed_once_the_cloud_no_longer_lists_it(admin, values):
    server = admin.request("POST", "/servers", VALID).json
    admin.request("DELETE", f"/servers/{server['id']}")
    status, out, _ = run(values)
    assert status == 0 and "1 deleted" in out
    deleted = admin.request("GET", f"/servers/{server['id']}").json
    assert deleted["status"] == "deleted" and deleted["deleted_at"]


def test_stuck_pending_times_out_and_its_droplet_is_destroyed(admin, values, sandbox):
    server = admin.request("POST", "/servers", VALID).json
    knob(sandbox, "POST", "/_sandbox/config", {"activate_after": 3600})
    values["CP_PENDING_TIMEOUT"] = "-1"
    status, out, _ = run(values)
    assert status == 0 and "1 timed out" in out and "destroying droplet" in out
    row = admin.request("GET", f"/servers/{server['id']}").json
    assert row["status"] == "error" and "not ready after" in row["status_reason"]
    assert cloud(sandbox, "GET", f"droplets/{server['instance_id']}").status == 404


def test_adopts_a_droplet_whose_id_was_never_stored(admin, values, db):
    server = admin.request("POST", "/servers", VALID).json
    db.update("UPDATE servers SET instance_id = NULL WHERE id = %s", (server["id"],))
    status, out, _ = run(values)
    assert "1 adopted" in out
    row = db.one("SELECT instance_id FROM servers WHERE id = %s", (server["id"],))
    assert str(row["instance_id"]) == server["instance_id"]


def test_orphans_are_destroyed_after_the_grace_period(values, sandbox):
    # Carries this installation's tag but names no row (ownership tests cover the rest).
    ours = f"cloudprovisioner:{TEST_INSTALL_ID}"
    made = cloud(sandbox, "POST", "droplets", {**VALID, "name": "stray", "tags": [ours]})
    assert made.status == 202
    assert run(values)[1] == ""  # young: left alone
    values["CP_ORPHAN_GRACE"] = "-1"
    status, out, _ = run(values)
    assert "1 orphans destroyed" in out
    assert cloud(sandbox, "GET", f"droplets/{made.json['droplet']['id']}").status == 404


def test_a_vanished_droplet_marks_its_ready_row_error(admin, values, sandbox):
    server = admin.request("POST", "/servers", VALID).json
    wait_active()
    run(values)
    cloud(sandbox, "DELETE", f"droplets/{server['instance_id']}")
    status, out, _ = run(values)
    assert "1 vanished" in out
    row = admin.request("GET", f"/servers/{server['id']}").json
    assert row["status"] == "error" and "gone" in row["status_reason"]


def test_a_held_lock_makes_the_run_step_aside(admin, values, config):
    admin.request("POST", "/servers", VALID)
    wait_active()
    other = Database(config)
    held = leases.take(other, monitor.lock_name(config), 60)
    assert held is not None
    try:
        assert run(values) == (0, "", "")
    finally:
        held.release()
        other.close()
    assert "1 ready" in run(values)[1]


def test_another_installations_lock_on_the_same_server_does_not_stop_this_one(admin, values, config):
    """The lease's name carries the installation's id (as the MySQL named lock it replaced had to)."""
    admin.request("POST", "/servers", VALID)
    wait_active()
    other = Database(config)
    held = leases.take(other, monitor.lock_name(make_config(dict(values, CP_INSTALL_ID="otherinst01"))), 60)
    try:
        assert "1 ready" in run(values)[1]
    finally:
        held.release()
        other.close()


def test_a_cloud_failure_is_retried_within_the_run(admin, values, sandbox, db):
    admin.request("POST", "/servers", VALID)
    wait_active()
    knob(sandbox, "POST", "/_sandbox/faults", {"status": 500, "count": 2, "path_prefix": "/v2/droplets"})
    status, out, _ = run(values)
    assert status == 0 and "1 ready" in out


def test_a_cloud_failure_beyond_the_budget_fails_the_run_and_changes_nothing(admin, values, sandbox, db):
    admin.request("POST", "/servers", VALID)
    wait_active()
    knob(sandbox, "POST", "/_sandbox/faults", {"status": 500, "count": 1000, "path_prefix": "/v2/droplets"})
    values["CP_MONITOR_CLOUD_BUDGET"] = "2"
    status, out, err = run(values)
    assert status == 1 and out == "" and "monitor: failed" in err
    assert db.one("SELECT status FROM servers")["status"] == "pending"


def test_a_database_failure_fails_the_run(values):
    values["CP_DB_SOCKET"] = "/nonexistent.sock"
    status, _, err = run(values)
    assert status == 1 and "database is unavailable" in err


def test_one_call_per_200_droplets(values, sandbox):
    knob(sandbox, "POST", "/_sandbox/droplets/bulk", {"count": 450, "tags": [f"cloudprovisioner:{TEST_INSTALL_ID}"]})
    knob(sandbox, "DELETE", "/_sandbox/stats")
    run(values)
    stats = knob(sandbox, "GET", "/_sandbox/stats").json
    assert stats["requests"].get("GET /v2/droplets") == 3
