"""A create whose database goes away while the cloud makes its droplet, through the real Apache, MariaDB
(restarted or stopped for real) and the local cloud, slowed by its faults knob.

Once the row is committed (and bound to the request's Idempotency-Key) and the cloud has made the droplet,
the create has happened: whatever the database does afterwards, the answer is a 202 naming that server,
never a "try again" that would make a second one. A retry with the same key gets the same server, the
key stays bound to it, and the monitor sees the droplet through to ready (adopting it by its row tag
when its id could not be written).
"""

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import pytest

from cloudprovisioner import config as configuration
from cloudprovisioner.db import Database
from tests.support import TEST_TOKEN, Background, http, installed_config, knob, run_cron_job, wait_for

EMAIL, PASSWORD = "restart@restart.test", "database restarts 123"
BODY = {"name": "survivor", "region": "ams3", "size": "s-1vcpu-1gb", "image": "debian-12-x64"}
CLOUD_AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
TABLES = ("operations", "idempotency_keys", "servers", "firewalls", "vpcs", "workspaces")
STEP = 60  # seconds any one step may take (a request, a restart, a monitor run)


# -- fixtures -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def auth(apache):
    registered = http("POST", apache.url + "/api/auth/register",
                      {"tenant_name": "Restarts", "name": "Rae", "email": EMAIL, "password": PASSWORD})
    assert registered.status in (201, 409), registered.body
    tokens = http("POST", apache.url + "/api/auth/login", {"email": EMAIL, "password": PASSWORD})
    assert tokens.status == 200, (tokens.body, apache.error_log()[-3000:])
    return {"Authorization": f"Bearer {tokens.json['access_token']}"}


@pytest.fixture(scope="module")
def row_tag_prefix(installed):
    # Spelled out, not asked of ownership.py: the platform tag, the id `make install` wrote, then the row id.
    env = configuration.parse_env_file((installed / "etc" / "cloudprovisioner.env").read_text())
    return f"cloudprovisioner:{env['CP_INSTALL_ID']}:"


@pytest.fixture
def store(installed, sandbox, apache, auth):
    """Looks into the installed service's database, starting from no servers, an empty cloud and the
    tenant's network made (so that the only slow cloud call is the droplet's create)."""
    looker = Looker(installed)
    looker.wipe()
    knob(sandbox, "POST", "/_sandbox/reset")
    knob(sandbox, "DELETE", "/_sandbox/faults")
    knob(sandbox, "POST", "/_sandbox/config", {"activate_after": 1})
    maker = http("POST", apache.url + "/api/servers", dict(BODY, name="network-maker"), headers=auth, timeout=STEP)
    assert maker.status == 202, maker.body
    assert http("DELETE", f"{apache.url}/api/servers/{maker.json['id']}", headers=auth, timeout=STEP).status == 202
    looker.forget_server(maker.json["id"])
    knob(sandbox, "DELETE", "/_sandbox/stats")
    yield looker
    knob(sandbox, "DELETE", "/_sandbox/faults")
    knob(sandbox, "POST", "/_sandbox/reset")
    looker.wipe()


class Looker:
    """The installed service's database, a fresh connection per look (the restarts kill old ones)."""

    def __init__(self, installed):
        self.config = installed_config(installed)

    def query(self, sql, args=None):
        database = Database(self.config)
        try:
            return database.query(sql, args)
        finally:
            database.close()

    def wipe(self):
        for table in TABLES:
            self.query(f"DELETE FROM {table}")

    def forget_server(self, server_id):
        self.query("DELETE FROM operations WHERE target_id = %s OR target_type <> 'server'", (server_id,))
        self.query("DELETE FROM servers WHERE id = %s", (server_id,))

    def servers(self):
        return self.query("SELECT id, status, instance_id FROM servers ORDER BY id")

    def key(self, key):
        return self.query("SELECT state, status, resource_id FROM idempotency_keys WHERE idem_key = %s", (key,))

    def create_operations(self, server_id):
        return [row["status"] for row in self.query(
            "SELECT status FROM operations WHERE target_id = %s AND kind = 'server.create'", (server_id,))]


# -- helpers --------------------------------------------------------------------------------------------------


def slow_cloud_create(sandbox, seconds):
    rule = {"delay": seconds, "count": 1, "method": "POST", "path_prefix": "/v2/droplets"}
    assert knob(sandbox, "POST", "/_sandbox/faults", rule).status == 201


def droplet_creates(sandbox):
    return knob(sandbox, "GET", "/_sandbox/stats").json["requests"].get("POST /v2/droplets", 0)


def droplets_of(sandbox, tag):
    answer = http("GET", f"{sandbox}droplets?tag_name={tag}&per_page=200", headers=CLOUD_AUTH)
    assert answer.status == 200, answer.body
    return answer.json["droplets"]


def create_in_flight(apache, auth, sandbox, store, key=None):
    """A create sent while the cloud is slow; answers the request's thread and its committed row's id,
    once the cloud has the create (and the row and its key binding are committed: they come first)."""
    headers = {**auth, **({"Idempotency-Key": key} if key else {})}
    client = Background(http, "POST", apache.url + "/api/servers", BODY, headers=headers, timeout=STEP)
    wait_for(lambda: droplet_creates(sandbox), "the create to reach the cloud", timeout=STEP)
    [row] = wait_for(store.servers, "the committed row", timeout=STEP)
    assert (row["status"], row["instance_id"]) == ("pending", None)
    return client, row["id"]


def monitor_until_ready(installed, sandbox, store, server_id, tag):
    """Monitor runs as cron runs them, until the server is ready (its droplet turns active after 1 s)."""
    def ready():
        job = run_cron_job(installed, "monitor_new_node", timeout=STEP)
        assert (job.returncode, job.stderr) == (0, ""), (job.stdout, job.stderr)
        [row] = store.servers()
        return row["status"] == "ready" and row
    row = wait_for(ready, "the monitor to make the server ready", timeout=STEP)
    [droplet] = droplets_of(sandbox, tag)
    assert (row["id"], row["instance_id"]) == (server_id, droplet["id"])
    assert store.create_operations(server_id) == ["succeeded"]


def retry_together(apache, auth, key, count):
    """`count` retries with the same key at once, each bounded; all their answers."""
    barrier = threading.Barrier(count, timeout=STEP)
    headers = {**auth, "Idempotency-Key": key}

    def retry(_):
        barrier.wait()
        return http("POST", apache.url + "/api/servers", BODY, headers=headers, timeout=STEP)
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(retry, n) for n in range(count)]
        _, late = wait(futures, timeout=2 * STEP)  # all of them together, not each in turn
        assert not late, f"{len(late)} retries still running after {2 * STEP} s"
        return [future.result() for future in futures]


# -- the chaos run's case: a keyed create, MariaDB restarted while the cloud makes the droplet ------------------

def test_a_keyed_create_across_a_database_restart_is_one_server(apache, installed, mariadb, sandbox, auth, store,
                                                                row_tag_prefix):
    key = f"restart-{secrets.token_hex(8)}"
    slow_cloud_create(sandbox, 3)
    client, server_id = create_in_flight(apache, auth, sandbox, store, key)
    assert store.key(key) == [{"state": "running", "status": None, "resource_id": server_id}]
    mariadb.restart()
    first = client.finish(STEP)
    retries = retry_together(apache, auth, key, 4)

    # The whole picture at once, so that a failure shows what became of the key and the cloud.
    assert {
        "first": (first.status, first.json.get("id"), first.json.get("status")),
        "retries": [(answer.status, answer.json.get("id"), answer.headers.get("idempotent-replayed"))
                    for answer in retries],
        "servers": [row["id"] for row in store.servers()],
        "key": store.key(key),
        "droplet creates": droplet_creates(sandbox),
    } == {
        "first": (202, server_id, "pending"),
        "retries": [(202, server_id, "true")] * 4,
        "servers": [server_id],
        "key": [{"state": "done", "status": 202, "resource_id": server_id}],
        "droplet creates": 1,
    }, (first.body, [answer.body for answer in retries])
    assert first.headers["location"].endswith(f"/api/servers/{server_id}")
    tag = row_tag_prefix + server_id
    assert len(droplets_of(sandbox, tag)) == 1
    monitor_until_ready(installed, sandbox, store, server_id, tag)
    assert len(droplets_of(sandbox, row_tag_prefix.rstrip(":"))) == 1  # nothing else of ours in the cloud


# -- the same without a key: no "try again" for a create that happened -----------------------------------------

def test_a_plain_create_across_a_database_restart_answers_its_server(apache, installed, mariadb, sandbox, auth,
                                                                     store, row_tag_prefix):
    slow_cloud_create(sandbox, 3)
    client, server_id = create_in_flight(apache, auth, sandbox, store)
    mariadb.restart()
    answer = client.finish(STEP)

    assert answer.status == 202, (answer.status, answer.body)
    assert answer.json["id"] == server_id and answer.json["status"] == "pending"
    assert answer.json["operation"]["target"] == {"type": "server", "id": server_id}
    tag = row_tag_prefix + server_id
    [droplet] = droplets_of(sandbox, tag)
    assert answer.json["instance_id"] == str(droplet["id"])  # written once the database was back
    assert [row["id"] for row in store.servers()] == [server_id]
    monitor_until_ready(installed, sandbox, store, server_id, tag)


# -- the database still away when the droplet is made: the row as committed, adopted later ---------------------

def test_a_create_whose_database_stays_away_answers_its_row_and_keeps_its_key(apache, installed, mariadb, sandbox,
                                                                              auth, store, row_tag_prefix):
    key = f"away-{secrets.token_hex(8)}"
    slow_cloud_create(sandbox, 3)
    client, server_id = create_in_flight(apache, auth, sandbox, store, key)
    mariadb.stop()
    try:
        answer = client.finish(STEP)
    finally:
        mariadb.start()

    assert answer.status == 202, (answer.status, answer.body)
    assert (answer.json["id"], answer.json["status"], answer.json["instance_id"]) == (server_id, "pending", None)
    assert answer.json["operation"]["status"] == "pending"
    assert answer.headers["operation-location"].endswith(f"/api/operations/{answer.json['operation']['id']}")
    # Its answer could not be stored, but the key is still bound to the server: never run afresh.
    assert store.key(key) == [{"state": "running", "status": None, "resource_id": server_id}]
    assert [row["id"] for row in store.servers()] == [server_id]

    # Once the claim is older than any request can live (as if that long had passed), a retry is
    # answered from the server it is bound to.
    store.query("UPDATE idempotency_keys SET created_at = created_at - INTERVAL 1 HOUR WHERE idem_key = %s", (key,))
    retry = http("POST", apache.url + "/api/servers", BODY, headers={**auth, "Idempotency-Key": key}, timeout=STEP)
    assert (retry.status, retry.json.get("id")) == (202, server_id), retry.body
    assert store.key(key) == [{"state": "done", "status": 202, "resource_id": server_id}]
    assert droplet_creates(sandbox) == 1
    tag = row_tag_prefix + server_id
    assert len(droplets_of(sandbox, tag)) == 1
    monitor_until_ready(installed, sandbox, store, server_id, tag)
