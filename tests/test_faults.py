"""Fault injection against the installed service: real kill -9 of the CGI process at each step of a
create, a cloud that fails, rate-limits or stalls, MariaDB stopped mid-run, overlapping monitors and
a storm of idempotent retries, all through the real Apache, MariaDB, sandbox cloud and cron lines.

Every test ends by checking the one invariant that matters: nothing lost, nothing duplicated.
Each live server (pending or ready) has its droplet id stored and exactly one droplet carrying its
row tag; a dead one (error) has none and its create operation failed; and no droplet exists that
no live row explains.
"""

import os
import secrets
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cloudprovisioner import config as configuration
from cloudprovisioner.db import Database
from cloudprovisioner.ids import looks_like_id
from tests.support import TEST_TOKEN, Background, assert_problem, http, installed_settings, knob, run_cron_job, wait_for

EMAIL, PASSWORD = "faults@faults.test", "fault injection 123"
# The installed service's own droplet tag, `cloudprovisioner:<its CP_INSTALL_ID>` (set by `ours`).
INSTALLATION = {}
CLOUD_AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
# Emptied with the cloud: rows of VPCs or firewalls the sandbox reset has wiped would only be drift.
NETWORK_TABLES = ("operations", "idempotency_keys", "servers", "firewalls", "vpcs", "workspaces", "ssh_keys")
CREATE_PATH = "/v2/droplets"  # the sandbox's fault rules match by path prefix (and method)


def body(name="fault-1"):
    return {"name": name, "region": "ams3", "size": "s-1vcpu-1gb", "image": "debian-12-x64"}


def lease_runs_out(database):
    """What MONITOR_LEASE (30 s) after a killed or cut-off monitor brings: its lease is free again."""
    database.update("UPDATE leases SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND")


# -- fixtures -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def auth(apache):
    """This module's own tenant, registered over HTTP; its admin's Authorization header."""
    registered = http("POST", apache.url + "/api/auth/register",
                      {"tenant_name": "Faults", "name": "Fay", "email": EMAIL, "password": PASSWORD})
    assert registered.status in (201, 409), (registered.body, apache.error_log())
    tokens = http("POST", apache.url + "/api/auth/login", {"email": EMAIL, "password": PASSWORD})
    assert tokens.status == 200, tokens.body
    return {"Authorization": f"Bearer {tokens.json['access_token']}"}


@pytest.fixture(scope="module", autouse=True)
def ours(installed):
    # Spelled out, not asked of ownership.py: the platform's tag and the id `make install` wrote to the env file.
    install_id = configuration.parse_env_file((installed / "etc" / "cloudprovisioner.env").read_text())["CP_INSTALL_ID"]
    INSTALLATION["tag"] = f"cloudprovisioner:{install_id}"


def install_tag():
    return INSTALLATION["tag"]


def installed_config(installed):
    return configuration.load(path=str(installed / "etc" / "cloudprovisioner.env"))


@pytest.fixture
def edb(installed, sandbox, apache, auth):
    """The installed service's database (cp_e2e), on empty servers/operations/keys/networks and an empty cloud."""
    database = Database(installed_config(installed))
    for table in NETWORK_TABLES:
        database.update(f"DELETE FROM {table}")
    lease_runs_out(database)  # a monitor an earlier test killed or cut off holds its lease until it runs out
    knob(sandbox, "POST", "/_sandbox/reset")
    knob(sandbox, "DELETE", "/_sandbox/faults")
    knob(sandbox, "POST", "/_sandbox/config", {"activate_after": 1})
    make_the_tenants_network(apache, auth, database, sandbox)
    yield database
    # Leave the shared database and cloud as clean as we found them.
    knob(sandbox, "POST", "/_sandbox/reset")
    database.close()
    database = Database(installed_config(installed))
    for table in NETWORK_TABLES:
        database.update(f"DELETE FROM {table}")
    database.close()


def make_the_tenants_network(apache, auth, database, sandbox):
    """The tenant's default firewall and ams3 VPC, as its first server makes them; then that server is
    forgotten (row, operation, droplet, call counts), so each test faces only its droplet's faults."""
    answer = http("POST", apache.url + "/api/servers", body("network-maker"), headers=auth)
    assert answer.status == 202, answer.body
    assert http("DELETE", f"{apache.url}/api/servers/{answer.json['id']}", headers=auth).status == 202
    for table in ("operations", "servers"):
        database.update(f"DELETE FROM {table} WHERE {'target_id' if table == 'operations' else 'id'} = %s",
                        (answer.json["id"],))
    database.update("DELETE FROM operations WHERE target_type <> 'server'")
    knob(sandbox, "DELETE", "/_sandbox/stats")


# -- helpers --------------------------------------------------------------------------------------------------


def post_quietly(url, payload, headers):
    """A create whose CGI is about to be killed: whatever comes back (a 500, a reset) is not the point."""
    try:
        return http("POST", url, payload, headers=headers, timeout=60)
    except OSError as exc:
        return exc


class HangingCloud:
    """A loopback TCP listener that accepts connections and never answers them."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v2/"
        self.accepted = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(connection)

    def close(self):
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()
        for connection in self.accepted:
            connection.close()


def cgi_pids(installed):
    """Processes running the installed API script (the interpreter from its shebang, then the script)."""
    script = str(installed / "cgi-bin" / "api").encode()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    argv = handle.read().split(b"\0")
            except OSError:
                continue
            if script in argv:
                pids.append(int(entry))
    return pids


def kill_the_cgi(installed):
    """SIGKILL the one CGI process serving the hanging request, and wait until it is gone."""
    pids = wait_for(lambda: cgi_pids(installed), "the CGI process")
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)
    wait_for(lambda: pids[0] not in cgi_pids(installed), "the CGI process to die")


def droplets_tagged(sandbox, tag):
    answer = http("GET", f"{sandbox}droplets?tag_name={tag}&per_page=200", headers=CLOUD_AUTH)
    assert answer.status == 200, answer.body
    return answer.json["droplets"]


def cloud_calls(sandbox, route):
    return knob(sandbox, "GET", "/_sandbox/stats").json["requests"].get(route, 0)


def add_fault(sandbox, **rule):
    assert knob(sandbox, "POST", "/_sandbox/faults", rule).status == 201


def the_pending_row(edb):
    """The id of the one pending row, once its insert transaction has committed."""
    rows = wait_for(lambda: edb.query("SELECT id FROM servers WHERE status = 'pending'"), "the pending row")
    assert len(rows) == 1, rows
    return rows[0]["id"]


def server(edb, server_id):
    return edb.one("SELECT id, status, status_reason, instance_id, public_ip, ready_at, updated_at "
                   "FROM servers WHERE id = %s", (server_id,))


def create_operations(edb, server_id):
    return [row["status"] for row in edb.query(
        "SELECT status FROM operations WHERE target_id = %s AND kind = 'server.create'", (server_id,))]


def wait_until_older_than_a_second(edb, server_id):
    # The monitor compares whole seconds (TIMESTAMPDIFF against UTC_TIMESTAMP()).
    wait_for(lambda: edb.one("SELECT TIMESTAMPDIFF(SECOND, created_at, UTC_TIMESTAMP()) > 0 AS old "
                             "FROM servers WHERE id = %s", (server_id,))["old"], "the row to age", timeout=5)


def monitor(installed, **settings):
    """One monitor run exactly as its cron line says, with env lines overridden for its duration."""
    if settings:
        with installed_settings(installed, **settings):
            return run_cron_job(installed, "monitor_new_node")
    return run_cron_job(installed, "monitor_new_node")


def monitor_ok(installed, **settings):
    job = monitor(installed, **settings)
    assert (job.returncode, job.stderr) == (0, ""), (job.returncode, job.stdout, job.stderr)
    return job.stdout


def wait_all_active(sandbox, count):
    def active():
        found = droplets_tagged(sandbox, install_tag())
        return len(found) == count and all(d["status"] == "active" for d in found)
    wait_for(active, f"{count} active droplets")


def assert_nothing_lost_or_duplicated(edb, sandbox):
    """Live rows: droplet id stored, exactly that one droplet with the row tag; dead rows: none, and
    their create failed; ready <=> create succeeded; and no droplet that no live row explains."""
    rows = {row["id"]: row for row in edb.query("SELECT id, status, instance_id FROM servers")}
    operations = {}
    for op in edb.query("SELECT target_id, status FROM operations WHERE kind = 'server.create'"):
        operations.setdefault(op["target_id"], []).append(op["status"])
    by_row = {}
    prefix = install_tag() + ":"
    for droplet in droplets_tagged(sandbox, install_tag()):
        row_ids = [tag[len(prefix):] for tag in droplet["tags"]
                   if tag.startswith(prefix) and looks_like_id(tag[len(prefix):])]
        assert len(row_ids) == 1, droplet["tags"]
        by_row.setdefault(row_ids[0], []).append(droplet["id"])
    untracked = {row_id: ids for row_id, ids in by_row.items()
                 if rows.get(row_id, {}).get("status") not in ("pending", "ready")}
    assert untracked == {}, f"droplets nobody tracks: {untracked}"
    for row_id, row in rows.items():
        assert len(operations.get(row_id, [])) == 1, (row_id, operations.get(row_id))
        operation = operations[row_id][0]
        if row["status"] in ("pending", "ready"):
            assert row["instance_id"] is not None, row
            assert by_row.get(row_id) == [row["instance_id"]], (row, by_row.get(row_id))
            assert operation == ("succeeded" if row["status"] == "ready" else "running"), (row, operation)
        else:
            assert row["status"] == "error", row
            assert row_id not in by_row, (row, by_row[row_id])
            assert operation == "failed", (row, operation)
    return rows


# -- 1. kill -9 of the CGI at each step of a create -----------------------------------------------------------

def test_killed_after_the_row_before_the_cloud_got_anything(apache, installed, sandbox, auth, edb):
    cloud = HangingCloud()
    try:
        with installed_settings(installed, CP_DO_API_URL=cloud.url):
            client = Background(post_quietly, apache.url + "/api/servers", body(), auth)
            server_id = the_pending_row(edb)
            wait_for(lambda: cloud.accepted, "the CGI to call the (hanging) cloud")
            kill_the_cgi(installed)
            client.finish()
    finally:
        cloud.close()
    assert cloud_calls(sandbox, "POST /v2/droplets") == 0
    assert server(edb, server_id)["instance_id"] is None
    assert create_operations(edb, server_id) == ["pending"]

    assert monitor_ok(installed) == ""  # within CP_CREATE_GRACE: the request might still be on its way
    assert server(edb, server_id)["status"] == "pending"
    wait_until_older_than_a_second(edb, server_id)
    assert "1 never created" in monitor_ok(installed, CP_CREATE_GRACE="0")

    row = server(edb, server_id)
    assert (row["status"], row["status_reason"]) == ("error", "the create never reached the cloud")
    assert create_operations(edb, server_id) == ["failed"]
    assert droplets_tagged(sandbox, f"{install_tag()}:{server_id}") == []
    assert_nothing_lost_or_duplicated(edb, sandbox)


def test_killed_while_the_cloud_creates(apache, installed, sandbox, auth, edb):
    add_fault(sandbox, delay=3, count=1, method="POST", path_prefix=CREATE_PATH)
    client = Background(post_quietly, apache.url + "/api/servers", body(), auth)
    server_id = the_pending_row(edb)
    wait_for(lambda: cloud_calls(sandbox, "POST /v2/droplets"), "the create to reach the cloud")
    kill_the_cgi(installed)
    client.finish()
    assert server(edb, server_id)["instance_id"] is None

    # The cloud finishes the create after all: a droplet nobody stored.
    [droplet] = wait_for(lambda: droplets_tagged(sandbox, f"{install_tag()}:{server_id}"), "the droplet")
    assert cloud_calls(sandbox, "POST /v2/droplets") == 1
    stdout = monitor_ok(installed, CP_CREATE_GRACE="0")
    assert "1 adopted" in stdout or "1 ready" in stdout, stdout
    row = server(edb, server_id)
    assert row["instance_id"] == droplet["id"] and row["status"] in ("pending", "ready")
    assert_nothing_lost_or_duplicated(edb, sandbox)

    wait_all_active(sandbox, 1)
    monitor_ok(installed)
    assert server(edb, server_id)["status"] == "ready"
    assert create_operations(edb, server_id) == ["succeeded"]
    assert_nothing_lost_or_duplicated(edb, sandbox)


def test_killed_after_the_cloud_answered_before_the_id_was_stored(apache, installed, sandbox, auth, edb):
    # A short stall in the cloud leaves time to lock the committed row before the CGI stores the id.
    add_fault(sandbox, delay=1.5, count=1, method="POST", path_prefix=CREATE_PATH)
    client = Background(post_quietly, apache.url + "/api/servers", body(), auth)
    server_id = the_pending_row(edb)
    locker = Database(installed_config(installed))
    try:
        locker.execute("START TRANSACTION")
        assert locker.one("SELECT id FROM servers WHERE id = %s FOR UPDATE", (server_id,))
        [droplet] = wait_for(lambda: droplets_tagged(sandbox, f"{install_tag()}:{server_id}"), "the droplet")
        waiting = wait_for(lambda: edb.query("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE %s",
                                             ("UPDATE servers SET instance_id%",)),
                           "the CGI to wait on the row lock")
        kill_the_cgi(installed)
        client.finish()
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    # Released, the dead client's statement ends and its transaction rolls back: nothing stored.
    wait_for(lambda: not edb.query("SELECT ID FROM information_schema.PROCESSLIST WHERE ID = %s",
                                   (waiting[0]["ID"],)), "the dead CGI's connection to end")
    row = server(edb, server_id)
    assert (row["status"], row["instance_id"]) == ("pending", None)
    assert create_operations(edb, server_id) == ["pending"]

    stdout = monitor_ok(installed, CP_CREATE_GRACE="0")
    assert "1 adopted" in stdout or "1 ready" in stdout, stdout
    assert server(edb, server_id)["instance_id"] == droplet["id"]
    assert cloud_calls(sandbox, "POST /v2/droplets") == 1
    assert_nothing_lost_or_duplicated(edb, sandbox)


# -- 2. the cloud failing, rate-limiting or slow, through Apache -----------------------------------------------

def test_a_passing_cloud_500_is_retried_into_one_droplet(apache, sandbox, auth, edb):
    add_fault(sandbox, status=500, count=2, method="POST", path_prefix=CREATE_PATH)
    created = http("POST", apache.url + "/api/servers", body(), headers=auth)
    assert created.status == 202, (created.body, apache.error_log())
    assert created.json["status"] == "pending" and created.json["instance_id"]
    assert created.json["operation"]["status"] == "running"
    assert cloud_calls(sandbox, "POST /v2/droplets") == 3
    [droplet] = droplets_tagged(sandbox, f"{install_tag()}:{created.json['id']}")
    assert str(droplet["id"]) == created.json["instance_id"]
    assert_nothing_lost_or_duplicated(edb, sandbox)


def test_a_persistent_cloud_500_is_a_502_and_leaves_nothing(apache, installed, sandbox, auth, edb):
    add_fault(sandbox, status=500, count=1000, method="POST", path_prefix=CREATE_PATH)
    with installed_settings(installed, CP_CLOUD_BUDGET="2"):
        started = time.monotonic()
        answer = http("POST", apache.url + "/api/servers", body(), headers=auth)
        took = time.monotonic() - started
    problem = assert_problem(answer, 502)
    assert problem["type"].endswith(":cloud-error") and "500" in problem["detail"]
    assert answer.headers["retry-after"] == "30"
    assert took < 6, took  # within the budget (plus CGI start), not CP_DO_TIMEOUT times the retries
    assert cloud_calls(sandbox, "POST /v2/droplets") >= 2  # retried, then gave up
    server_id = the_failed_row(edb)
    assert server(edb, server_id)["status_reason"] == problem["detail"]
    assert create_operations(edb, server_id) == ["failed"]

    knob(sandbox, "DELETE", "/_sandbox/faults")
    assert monitor_ok(installed) == ""
    assert droplets_tagged(sandbox, install_tag()) == []
    assert_nothing_lost_or_duplicated(edb, sandbox)


def the_failed_row(edb):
    rows = edb.query("SELECT id FROM servers")
    assert len(rows) == 1, rows
    assert server(edb, rows[0]["id"])["status"] == "error"
    return rows[0]["id"]


def test_a_cloud_429_is_a_503_with_its_retry_after(apache, installed, sandbox, auth, edb):
    add_fault(sandbox, status=429, retry_after=300, count=1, method="POST", path_prefix=CREATE_PATH)
    answer = http("POST", apache.url + "/api/servers", body(), headers=auth)
    assert assert_problem(answer, 503)["type"].endswith(":cloud-rate-limited")
    assert answer.headers["retry-after"] == "300"
    assert cloud_calls(sandbox, "POST /v2/droplets") == 1  # 300 s is past the budget: no waiting, no retry
    server_id = the_failed_row(edb)
    assert create_operations(edb, server_id) == ["failed"]
    assert monitor_ok(installed) == ""
    assert droplets_tagged(sandbox, install_tag()) == []
    assert_nothing_lost_or_duplicated(edb, sandbox)


def test_a_cloud_slower_than_the_timeout_still_ends_with_one_droplet(apache, installed, sandbox, auth, edb):
    # The first create times out but the cloud makes the droplet anyway (a lost answer); the retry,
    # finding none yet, makes another. The monitor keeps the stored one and destroys the other.
    add_fault(sandbox, delay=3, count=1, method="POST", path_prefix=CREATE_PATH)
    with installed_settings(installed, CP_DO_TIMEOUT="1"):
        created = http("POST", apache.url + "/api/servers", body(), headers=auth)
    assert created.status == 202, (created.body, apache.error_log())
    server_id, instance_id = created.json["id"], int(created.json["instance_id"])
    assert cloud_calls(sandbox, "POST /v2/droplets") == 2
    wait_for(lambda: len(droplets_tagged(sandbox, f"{install_tag()}:{server_id}")) == 2, "the late droplet")
    assert "1 duplicates destroyed" in monitor_ok(installed)
    [droplet] = droplets_tagged(sandbox, f"{install_tag()}:{server_id}")
    assert droplet["id"] == instance_id == server(edb, server_id)["instance_id"]
    assert_nothing_lost_or_duplicated(edb, sandbox)


# -- 3. MariaDB stopped and started mid-run --------------------------------------------------------------------

def create_servers(apache, auth, count, workers=4):
    def create(n):
        answer = http("POST", apache.url + "/api/servers", body(f"fault-{n}"), headers=auth)
        assert answer.status == 202, answer.body
        return answer.json["id"]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(create, range(count)))


def assert_ready_iff_succeeded(edb):
    for row in edb.query("SELECT s.id, s.status, o.status AS operation FROM servers s "
                         "JOIN operations o ON o.target_id = s.id AND o.kind = 'server.create'"):
        assert (row["status"] == "ready") == (row["operation"] == "succeeded"), row
        assert row["status"] in ("pending", "ready"), row


def assert_one_line_failure(job):
    assert job.returncode == 1, (job.stdout, job.stderr)
    assert job.stderr.startswith("monitor: failed: ") and job.stderr.count("\n") == 1, job.stderr


def test_database_stopped_while_the_monitor_waits_for_the_cloud(apache, installed, mariadb, sandbox, auth, edb):
    ids = create_servers(apache, auth, 3)
    wait_all_active(sandbox, 3)
    add_fault(sandbox, delay=3, count=1, method="GET", path_prefix=CREATE_PATH)
    knob(sandbox, "DELETE", "/_sandbox/stats")
    run = Background(monitor, installed)
    try:
        wait_for(lambda: cloud_calls(sandbox, "GET /v2/droplets"), "the monitor to list droplets")
        mariadb.stop()
        # Meanwhile, through Apache: 503 with Retry-After, and no droplet made for a create.
        problem = http("GET", apache.url + "/api/servers", headers=auth)
        assert_problem(problem, 503)
        assert problem.headers["retry-after"]
        assert_problem(http("POST", apache.url + "/api/servers", body("while-down"), headers=auth), 503)
        job = run.finish()
    finally:
        mariadb.start()
    assert_one_line_failure(job)
    assert knob(sandbox, "GET", "/_sandbox/faults").json["faults"] == []  # that run took the stall
    assert http("GET", apache.url + "/api/servers", headers=auth).status == 200
    edb.close()  # its connection died with the server; the next query opens a new one

    assert_ready_iff_succeeded(edb)
    assert cloud_calls(sandbox, "POST /v2/droplets") == 0  # the create refused while the database was down
    assert monitor_ok(installed) == ""  # the cut-off run's lease has not run out yet: this one steps aside
    lease_runs_out(edb)
    assert "3 ready" in monitor_ok(installed)
    rows = assert_nothing_lost_or_duplicated(edb, sandbox)
    assert sorted(rows) == sorted(ids) and {row["status"] for row in rows.values()} == {"ready"}


def test_database_stopped_half_way_through_a_run(apache, installed, mariadb, sandbox, auth, edb):
    # A duplicate droplet for one server (a retried create the cloud made twice) makes the monitor
    # call the cloud in the middle of its loop over the rows: the database goes away right there.
    ids = create_servers(apache, auth, 4)
    victim = ids[1]
    extra = knob(sandbox, "POST", "/_sandbox/droplets/bulk",
                 {"count": 1, "name_prefix": "dup", "tags": [install_tag()], "tag_each": [f"{install_tag()}:{victim}"]})
    assert extra.status == 201, extra.body
    wait_all_active(sandbox, 5)
    add_fault(sandbox, delay=3, count=1, method="DELETE", path_prefix=CREATE_PATH)
    run = Background(monitor, installed)
    try:
        wait_for(lambda: cloud_calls(sandbox, "DELETE /v2/droplets/{id}"), "the monitor to destroy the duplicate")
        mariadb.stop()
        job = run.finish()
    finally:
        mariadb.start()
    assert_one_line_failure(job)
    edb.close()

    # What the run did before the database went away is whole: the victim is ready and its create
    # succeeded, in one transaction; nothing is ready without its operation, or the reverse.
    assert server(edb, victim)["status"] == "ready"
    assert_ready_iff_succeeded(edb)
    [kept] = droplets_tagged(sandbox, f"{install_tag()}:{victim}")  # the duplicate's destroy went through
    assert kept["id"] == server(edb, victim)["instance_id"] != extra.json["ids"][0]

    stdout = monitor_ok(installed)
    ready = sum(1 for row in edb.query("SELECT status FROM servers") if row["status"] == "ready")
    assert ready == 4, stdout
    rows = assert_nothing_lost_or_duplicated(edb, sandbox)
    assert sorted(rows) == sorted(ids)
    assert monitor_ok(installed) == ""


# -- 4. three monitors at once ---------------------------------------------------------------------------------

def test_three_monitors_at_once_change_each_server_once(apache, installed, sandbox, auth, edb):
    ids = create_servers(apache, auth, 50, workers=6)
    wait_all_active(sandbox, 50)
    barrier = threading.Barrier(3)

    def one_run():
        barrier.wait()
        return monitor(installed)
    with ThreadPoolExecutor(3) as pool:
        jobs = list(pool.map(lambda _: one_run(), range(3)))
    assert [(job.returncode, job.stderr) for job in jobs] == [(0, "")] * 3, [job.stderr for job in jobs]
    outputs = sorted(job.stdout for job in jobs)
    assert outputs[:2] == ["", ""], outputs
    assert outputs[2].startswith("monitor: 50 ready; 50 droplets listed in 1 page"), outputs

    rows = assert_nothing_lost_or_duplicated(edb, sandbox)
    assert sorted(rows) == sorted(ids) and {row["status"] for row in rows.values()} == {"ready"}
    before = {row["id"]: row for row in edb.query("SELECT id, status, ready_at, updated_at FROM servers")}
    operations_before = edb.query("SELECT id, status, updated_at FROM operations ORDER BY id")
    assert len(operations_before) == 50
    assert monitor_ok(installed) == ""
    assert {row["id"]: row for row in edb.query("SELECT id, status, ready_at, updated_at FROM servers")} == before
    assert edb.query("SELECT id, status, updated_at FROM operations ORDER BY id") == operations_before


# -- 5. an idempotent retry storm ------------------------------------------------------------------------------

def test_an_idempotent_retry_storm_makes_one_server(apache, sandbox, auth, edb):
    headers = {**auth, "Idempotency-Key": f"storm-{secrets.token_hex(8)}"}
    url = apache.url + "/api/servers"
    barrier = threading.Barrier(20)

    def send(_):
        barrier.wait()
        return http("POST", url, body("storm"), headers=headers, timeout=60)
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(send, range(20)))

    statuses = sorted(answer.status for answer in answers)
    assert set(statuses) <= {202, 409}, (statuses, [a.body for a in answers if a.status not in (202, 409)])
    accepted = [answer for answer in answers if answer.status == 202]
    first = [answer for answer in accepted if "idempotent-replayed" not in answer.headers]
    assert len(first) == 1, statuses
    assert all(answer.headers["idempotent-replayed"] == "true" for answer in accepted if answer is not first[0])
    server_id = first[0].json["id"]
    assert {answer.json["id"] for answer in accepted} == {server_id}
    for answer in answers:
        if answer.status == 409:
            assert_problem(answer, 409)
            assert answer.headers["retry-after"]

    assert [row["id"] for row in edb.query("SELECT id FROM servers")] == [server_id]
    assert len(droplets_tagged(sandbox, f"{install_tag()}:{server_id}")) == 1
    assert cloud_calls(sandbox, "POST /v2/droplets") == 1

    again = http("POST", url, body("storm"), headers=headers)
    assert again.status == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json["id"] == server_id
    assert again.headers["location"] == first[0].headers["location"]
    assert_problem(http("POST", url, body("storm-2"), headers=headers), 422)
    assert [row["id"] for row in edb.query("SELECT id FROM servers")] == [server_id]
    assert_nothing_lost_or_duplicated(edb, sandbox)


# -- a DELETE that lands while a create is still failing --------------------------------------------------------

def test_a_delete_during_a_failing_create_is_not_overwritten(apache, installed, sandbox, auth, edb):
    add_fault(sandbox, status=500, delay=1, count=1000, method="POST", path_prefix=CREATE_PATH)
    with installed_settings(installed, CP_CLOUD_BUDGET="2"):
        create = Background(http, "POST", apache.url + "/api/servers", body(), headers=auth)
        server_id = the_pending_row(edb)
        deleting = http("DELETE", f"{apache.url}/api/servers/{server_id}", headers=auth)
        assert deleting.status == 202 and deleting.json["operation"]["status"] == "running"
        assert_problem(create.finish(), 502)
    knob(sandbox, "DELETE", "/_sandbox/faults")
    monitor_ok(installed)
    kinds = {op["kind"]: op["status"] for op in edb.query(
        "SELECT kind, status FROM operations WHERE target_id = %s", (server_id,))}
    assert kinds == {"server.create": "cancelled", "server.delete": "succeeded"}
    assert server(edb, server_id)["status"] == "deleted"
    assert droplets_tagged(sandbox, install_tag()) == []
