"""Two installations on one cloud account, hand-made cloud objects, and a database restored from a dump.

Installation A is conftest's `installed` behind its `apache`; installation B is a second `make install`
into another prefix, with its own database and its own Apache, sharing A's MariaDB server, sandbox cloud
account and SMTP server. Every step goes through the real Apache, the real cron lines and the real
`cloudprovisioner-admin`, as an operator would.

The tests run in file order: the restore test comes last because it holds a droplet until its own end, and
the two-installation test checks that nothing of either installation is held.
"""

import contextlib
import ipaddress
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cloudprovisioner import config as configuration
from cloudprovisioner.config import parse_env_file
from cloudprovisioner.db import Database
from devtools.devstack import Apache
from tests.support import (
    TEST_TOKEN,
    assert_problem,
    configure_install,
    http,
    installed_settings,
    knob,
    make_install,
    run_cron_job,
)

ROOT = Path(__file__).resolve().parents[1]
CLOUD = {"Authorization": f"Bearer {TEST_TOKEN}"}
REGION = "nyc3"
PASSWORD = "installations 123"
# What earlier modules may have left in A's database that would otherwise be drift or orphans here (the cloud is
# emptied with them). Children before parents, for the foreign keys.
A_TABLES = ("orphans", "account_vpcs", "operations", "idempotency_keys", "servers", "firewalls", "vpcs",
            "workspaces", "ssh_keys")
FIREWALL = {"name": "web", "inbound_rules": [{"protocol": "tcp", "ports": "22",
                                              "sources": {"addresses": ["0.0.0.0/0", "::/0"]}}]}
LIVE = "status IN ('pending', 'ready', 'deleting')"


def server_body(name):
    return {"name": name, "region": REGION, "size": "s-1vcpu-1gb", "image": "debian-12-x64"}


def env_values(prefix):
    return parse_env_file((prefix / "etc" / "cloudprovisioner.env").read_text())


@contextlib.contextmanager
def database(prefix):
    """The installation's own database, as its env file names it."""
    db = Database(configuration.load(environ={}, path=str(prefix / "etc" / "cloudprovisioner.env")))
    try:
        yield db
    finally:
        db.close()


def admin_cli(prefix, *args):
    """`cloudprovisioner-admin` as the README has the operator run it: as the web server's user."""
    argv = [str(prefix / "bin" / "cloudprovisioner-admin"), "--config", str(prefix / "etc" / "cloudprovisioner.env"),
            *args]
    if os.geteuid() == 0:
        argv = ["/usr/sbin/runuser", "-u", "www-data", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=120)


def cloud_droplet_ids(sandbox, tag):
    """The ids (as strings, as the API shows them) of the droplets carrying `tag`, every page of them."""
    found, url = set(), f"{sandbox}droplets?tag_name={tag}&per_page=200"
    for _ in range(20):  # 4,000 droplets: far more than these tests ever make
        page = http("GET", url, headers=CLOUD)
        assert page.status == 200, page.body
        found |= {str(droplet["id"]) for droplet in page.json["droplets"]}
        url = page.json.get("links", {}).get("pages", {}).get("next")
        if not url:
            return found
    raise AssertionError(f"more than 20 pages of droplets tagged {tag}")


def cloud_listing(sandbox, kind):
    """The account's VPCs or firewalls by name."""
    page = http("GET", f"{sandbox}{kind}?per_page=200", headers=CLOUD)
    assert page.status == 200 and page.json["meta"]["total"] <= 200, page.body
    return {item["name"]: item for item in page.json[kind]}


def droplet_exists(sandbox, droplet_id):
    return http("GET", f"{sandbox}droplets/{droplet_id}", headers=CLOUD).status == 200


def make_droplet(sandbox, name, tags):
    made = http("POST", sandbox + "droplets", dict(server_body(name), tags=tags), headers=CLOUD)
    assert made.status == 202, made.body
    return made.json["droplet"]["id"]


class Site:
    """One installation as a tenant admin and its operator see it."""

    def __init__(self, name, prefix, apache, email):
        self.name, self.prefix, self.apache = name, prefix, apache
        self.url = apache.url
        self.api = self.url + "/api"
        self.install_id = env_values(prefix)["CP_INSTALL_ID"]
        self.install_tag = f"cloudprovisioner:{self.install_id}"
        registered = http("POST", self.api + "/auth/register", {"tenant_name": f"Tenant {name}", "name": name,
                                                                "email": email, "password": PASSWORD})
        assert registered.status == 201, registered.body
        self.auth = login(self.api, email)
        self.jobs = []  # every monitor run: (exit status, stdout + stderr)

    def call(self, method, path, body=None, auth=None):
        return http(method, self.api + path, body, headers=auth or self.auth, timeout=60)

    def logged(self, answer):
        """Apache's error log from the first line about the request that gave `answer` (its problem's
        instance): a traceback's lines follow it without the id."""
        request_id = answer.body.decode(errors="replace").rpartition("urn:request:")[2][:32]
        lines = self.apache.error_log().splitlines()
        first = next((n for n, line in enumerate(lines) if request_id and request_id in line), len(lines))
        return lines[first:first + 80]

    def monitor(self):
        job = run_cron_job(self.prefix, "monitor_new_node")
        self.jobs.append((job.returncode, job.stdout + job.stderr))
        return job

    def rows(self, sql, args=None):
        with database(self.prefix) as db:
            return db.query(sql, args)


def login(api, email):
    tokens = http("POST", api + "/auth/login", {"email": email, "password": PASSWORD})
    assert tokens.status == 200, tokens.body
    return {"Authorization": f"Bearer {tokens.json['access_token']}"}


# -- the two installations ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def installed_b(stack_dir, mariadb, sandbox, smtp):
    """A second `make install`, as conftest's `installed` does it: its own prefix, database `cp_e2e_b` and
    installation id, the same cloud account and SMTP server."""
    prefix = stack_dir / "install-b"
    make_install(ROOT, prefix)
    configure_install(prefix, mariadb, sandbox, smtp, "cp_e2e_b")
    migrate = admin_cli(prefix, "migrate")
    assert migrate.returncode == 0 and "applied 001_servers.sql" in migrate.stdout, migrate.stderr
    yield prefix
    mariadb.root_sql("DROP DATABASE IF EXISTS cp_e2e_b;")


@pytest.fixture(scope="module")
def apache_b(stack_dir, installed_b):
    server = Apache(stack_dir / "apache-b", 0, [installed_b / "apache" / "cloudprovisioner.conf"])
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def clean_cloud(installed, sandbox):
    """An empty cloud, and none of earlier modules' servers or networks in A's database (the reset would
    make them drift). Left the same way for later modules."""
    def clean():
        knob(sandbox, "POST", "/_sandbox/reset")
        knob(sandbox, "DELETE", "/_sandbox/faults")
        knob(sandbox, "POST", "/_sandbox/config", {"activate_after": 1})
        with database(installed) as db:
            for table in A_TABLES:
                db.update(f"DELETE FROM {table}")
            db.update("DELETE FROM service_state WHERE name = 'monitor.breaker'")
    clean()
    yield
    clean()


@pytest.fixture(autouse=True)
def nothing_left_for_the_next_test(request, sandbox):
    """Each test leaves an empty cloud and no servers or networks in either installation's database (the
    tenants and their sessions stay): in random order, no test meets another's droplets or monitor runs."""
    yield
    knob(sandbox, "POST", "/_sandbox/reset")
    knob(sandbox, "DELETE", "/_sandbox/faults")
    knob(sandbox, "POST", "/_sandbox/config", {"activate_after": 1})
    for name in ("installed", "installed_b"):
        if name in request.fixturenames:
            with database(request.getfixturevalue(name)) as db:
                for table in A_TABLES:
                    db.update(f"DELETE FROM {table}")
                db.update("DELETE FROM service_state WHERE name = 'monitor.breaker'")
    for name in ("site_a", "site_b"):
        if name in request.fixturenames:
            request.getfixturevalue(name).jobs.clear()


@pytest.fixture(scope="module")
def site_a(installed, apache, clean_cloud):
    return Site("A", installed, apache, "ada@install-a.test")


@pytest.fixture(scope="module")
def site_b(installed_b, apache_b, clean_cloud):
    return Site("B", installed_b, apache_b, "bob@install-b.test")


def test_each_installation_has_an_id_of_its_own(installed, installed_b, apache_b):
    a, b = env_values(installed)["CP_INSTALL_ID"], env_values(installed_b)["CP_INSTALL_ID"]
    assert re.fullmatch(r"[a-z0-9]{8,32}", a) and re.fullmatch(r"[a-z0-9]{8,32}", b)
    assert a != b
    assert http("GET", apache_b.url + "/health").json["checks"]["database"]["status"] == "ok"


# -- two installations, one account ---------------------------------------------------------------------------

def own_ids(site):
    """Everything in the cloud this installation ever made or named, as its database remembers it:
    droplet ids, VPC and firewall cloud ids, and its row ids."""
    servers = site.rows("SELECT id, instance_id FROM servers")
    networks = site.rows("SELECT id, cloud_id FROM vpcs UNION ALL SELECT id, cloud_id FROM firewalls")
    return {"droplets": {str(row["instance_id"]) for row in servers if row["instance_id"]},
            "cloud": {row["cloud_id"] for row in networks if row["cloud_id"]},
            "rows": {row["id"] for row in servers + networks}}


def mentions_of(ids, output):
    """What of `ids` a monitor's output names."""
    named = set(re.findall(r"\bdroplet (\d+)", output)) & ids["droplets"]
    named |= {cloud_id for cloud_id in ids["cloud"] | ids["rows"] if cloud_id in output}
    return named


def test_two_installations_on_one_account_never_touch_each_others_objects(site_a, site_b, sandbox):
    sites = (site_a, site_b)
    made = {(site.name, path): [] for site in sites for path in ("/servers", "/firewalls", "/vpcs")}

    def create(site, path, body):
        answer = site.call("POST", path, body)
        assert answer.status == 202, (site.name, path, answer.body, site.logged(answer))
        made[site.name, path].append(answer.json)

    def delete(site, path, row):
        answer = site.call("DELETE", f"{path}/{row['id']}")
        assert answer.status == 202, (site.name, path, answer.body, site.logged(answer))

    def finish(futures):
        for future in futures:
            future.result(timeout=180)  # re-raises a failed assertion of the thread

    # No grace for droplets naming no row: a monitor that took the other installation's droplets for its own
    # would destroy them at once, and the checks below would see them gone.
    with installed_settings(site_a.prefix, CP_ORPHAN_GRACE="-1"), \
            installed_settings(site_b.prefix, CP_ORPHAN_GRACE="-1"):
        with ThreadPoolExecutor(max_workers=6) as pool:
            # Both tenants' first servers in nyc3 race for a default VPC range from the same pool, while both
            # monitors run; each installation also makes a firewall and a VPC of its own.
            work = [pool.submit(create, site, "/servers", server_body(f"{site.name.lower()}-{n}"))
                    for n in range(4) for site in sites]
            work += [pool.submit(create, site, "/firewalls", FIREWALL) for site in sites]
            work += [pool.submit(create, site, "/vpcs", {"name": f"net-{site.name.lower()}", "region": REGION,
                                                         "ip_range": f"10.{200 + n}.0.0/20"})
                     for n, site in enumerate(sites)]
            monitors = [pool.submit(site.monitor) for _ in range(2) for site in sites]
            finish(work)
            # Half the servers, the firewall and the VPC go again, while the monitors run on.
            deleted = {site.name: made[site.name, "/servers"][:2] for site in sites}
            work = [pool.submit(delete, site, "/servers", server) for site in sites for server in deleted[site.name]]
            work += [pool.submit(delete, site, path, made[site.name, path][0]) for site in sites
                     for path in ("/firewalls", "/vpcs")]
            monitors += [pool.submit(site.monitor) for _ in range(2) for site in sites]
            finish(work + monitors)

        time.sleep(1.2)  # the sandbox activates droplets after a second
        for _ in range(2):  # one round settles, the next must find nothing left to do
            for site in sites:
                site.monitor()

    for site in sites:
        assert [(status, output) for status, output in site.jobs if status != 0] == [], site.name
        assert site.jobs[-1] == (0, ""), site.name
        gone = {server["id"] for server in deleted[site.name]}
        live = [server for server in made[site.name, "/servers"] if server["id"] not in gone]
        for server in made[site.name, "/servers"]:
            now = site.call("GET", f"/servers/{server['id']}").json
            assert now["status"] == ("deleted" if server["id"] in gone else "ready"), (site.name, now)
        for server in live:
            assert droplet_exists(sandbox, server["instance_id"]), (site.name, server)
        assert "no orphans" in admin_cli(site.prefix, "orphans").stdout, site.name
        # The cloud holds exactly the installation's live servers, VPCs and firewalls under its id.
        tagged = cloud_droplet_ids(sandbox, site.install_tag)
        assert tagged == {server["instance_id"] for server in live}
        assert tagged == {str(row["instance_id"]) for row in site.rows(f"SELECT instance_id FROM servers WHERE {LIVE}")}
        for kind in ("vpcs", "firewalls"):
            prefix = f"cloudprovisioner-{site.install_id}-{kind[:-1]}-"
            named = {item["id"] for name, item in cloud_listing(sandbox, kind).items() if name.startswith(prefix)}
            rows = site.rows(f"SELECT cloud_id FROM {kind} WHERE {LIVE}")
            assert named == {row["cloud_id"] for row in rows}, (site.name, kind)
            assert len(named) == 1  # the default one: the tenant's own was deleted

    # Both default VPCs are in nyc3, from the same pool, and do not overlap.
    defaults = [next(vpc for vpc in site.call("GET", f"/vpcs?region={REGION}").json if vpc["default"])
                for site in sites]
    assert all(vpc["status"] == "ready" for vpc in defaults), defaults
    ranges = [ipaddress.ip_network(vpc["ip_range"]) for vpc in defaults]
    assert all(net.subnet_of(ipaddress.ip_network("172.16.0.0/12")) for net in ranges)
    assert not ranges[0].overlaps(ranges[1])

    # Neither monitor ever named the other's objects.
    for site, other in (sites, sites[::-1]):
        theirs = own_ids(other)
        output = "".join(text for _, text in site.jobs)
        assert other.install_id not in output
        assert mentions_of(theirs, output) == set(), (site.name, output)


# -- objects no installation made ----------------------------------------------------------------------------

def test_a_hand_made_droplet_tagged_only_cloudprovisioner_and_a_hand_made_vpc_survive(site_a, site_b, sandbox):
    bare = make_droplet(sandbox, "by-hand-1", ["cloudprovisioner"])
    old_style = make_droplet(sandbox, "by-hand-2", ["cloudprovisioner", "cloudprovisioner:01aaaaaaaaaaaaaaaaaaaaaaaa"])
    vpc = http("POST", sandbox + "vpcs", {"name": "hand-made", "region": REGION, "ip_range": "10.66.0.0/20"},
               headers=CLOUD)
    assert vpc.status == 201, vpc.body
    try:
        # No grace at all: a droplet of an installation that names no row would go at once.
        with installed_settings(site_a.prefix, CP_ORPHAN_GRACE="-1"), \
                installed_settings(site_b.prefix, CP_ORPHAN_GRACE="-1"):
            for _ in range(3):
                for site in (site_a, site_b):
                    job = site.monitor()
                    assert job.returncode == 0, (site.name, job.stdout, job.stderr)
                    assert "destroying" not in job.stdout and "held" not in job.stdout, (site.name, job.stdout)
        assert droplet_exists(sandbox, bare) and droplet_exists(sandbox, old_style)
        assert "hand-made" in cloud_listing(sandbox, "vpcs")
        for site in (site_a, site_b):
            assert "no orphans" in admin_cli(site.prefix, "orphans").stdout, site.name
    finally:
        for droplet_id in (bare, old_style):
            http("DELETE", f"{sandbox}droplets/{droplet_id}", headers=CLOUD)
        http("DELETE", f"{sandbox}vpcs/{vpc.json['vpc']['id']}", headers=CLOUD)


# -- a database restored from an earlier dump -----------------------------------------------------------------

def mysql_client(*names):
    """The first of these client programs that is installed (MariaDB's names, then MySQL's)."""
    found = next((shutil.which(name) for name in names if shutil.which(name)), None)
    assert found, f"none of {names} is installed"
    return found


def db_command(prefix, program):
    """A client command line on the installation's socket, as its own database user; its environment."""
    values = env_values(prefix)
    argv = [program, "--no-defaults", "--protocol=socket", f"--socket={values['CP_DB_SOCKET']}",
            f"--user={values['CP_DB_USER']}"]
    return argv, values["CP_DB_NAME"], {"PATH": "/usr/bin:/bin", "MYSQL_PWD": values["CP_DB_PASSWORD"]}


def dump(prefix):
    argv, name, env = db_command(prefix, mysql_client("mariadb-dump", "mysqldump"))
    made = subprocess.run([*argv, "--single-transaction", "--no-tablespaces", name], env=env,
                          capture_output=True, timeout=120)
    assert made.returncode == 0, made.stderr
    return made.stdout


def restore(prefix, sql):
    argv, name, env = db_command(prefix, mysql_client("mariadb", "mysql"))
    loaded = subprocess.run([*argv, name], input=sql, env=env, capture_output=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr


def create_ready(site, *names):
    """Servers made over HTTP and made ready by the monitor; their bodies as first answered."""
    servers = []
    for name in names:
        answer = site.call("POST", "/servers", server_body(name))
        assert answer.status == 202, answer.body
        servers.append(answer.json)
    time.sleep(1.2)
    job = site.monitor()
    assert job.returncode == 0 and f"{len(names)} ready" in job.stdout, (job.stdout, job.stderr)
    return servers


def test_a_database_restored_from_an_earlier_dump_destroys_nothing_it_cannot_prove_dead(site_a, sandbox):
    site = site_a
    [first] = create_ready(site, "before-dump")
    backup = dump(site.prefix)
    second, third = create_ready(site, "after-dump-1", "after-dump-2")
    restore(site.prefix, backup)
    assert site.rows("SELECT id FROM servers WHERE id = %s", (first["id"],))
    assert not site.rows("SELECT id FROM servers WHERE id IN (%s, %s)", (second["id"], third["id"]))

    # The monitor finds two droplets of this installation naming rows it has never seen: it holds them.
    job = site.monitor()
    assert job.returncode == 0, (job.stdout, job.stderr)
    assert "destroying" not in job.stdout + job.stderr
    for server in (second, third):
        assert f"held droplet {server['instance_id']}" in job.stdout, job.stdout
        assert droplet_exists(sandbox, server["instance_id"])
    listed = admin_cli(site.prefix, "orphans").stdout
    for server in (second, third):
        assert re.search(rf"^droplet {server['instance_id']} \S+ row={server['id']} held ", listed, re.M), listed

    health = http("GET", site.url + "/health").json
    assert health["status"] == "degraded", health
    assert health["checks"]["monitor"]["status"] == "ok"  # degraded for the orphans alone
    assert health["checks"]["ownership"]["status"] == "attention"
    assert health["checks"]["ownership"]["orphans_held"] == 2

    # Only platform admins see the list over HTTP.
    assert_problem(site.call("GET", "/admin/orphans"), 403)
    ops = http("POST", site.api + "/auth/register", {"tenant_name": "Operators", "name": "Otto",
                                                     "email": "otto@install-a.test", "password": PASSWORD})
    assert ops.status == 201, ops.body
    with database(site.prefix) as db:
        assert db.update("UPDATE users SET platform_admin = 1 WHERE email = %s", ("otto@install-a.test",)) == 1
    orphans = site.call("GET", "/admin/orphans", auth=login(site.api, "otto@install-a.test"))
    assert orphans.status == 200, orphans.body
    assert sorted((o["kind"], o["cloud_id"], o["row_id"], o["verdict"]) for o in orphans.json) == sorted(
        ("droplet", str(server["instance_id"]), server["id"], "held") for server in (second, third))

    # Adopted: the server is back under its own id, in its tenant, ready.
    adopted = admin_cli(site.prefix, "adopt", str(second["instance_id"]))
    assert adopted.returncode == 0, adopted.stderr
    assert f"is server {second['id']} again" in adopted.stdout
    back = next((s for s in site.call("GET", "/servers").json if s["id"] == second["id"]), None)
    assert back is not None and back["status"] == "ready" and back["instance_id"] == second["instance_id"], back

    # The other stays held, and alive, run after run.
    for _ in range(2):
        job = site.monitor()
        assert job.returncode == 0 and "destroying" not in job.stdout + job.stderr, (job.stdout, job.stderr)
    assert droplet_exists(sandbox, second["instance_id"]) and droplet_exists(sandbox, third["instance_id"])
    listed = admin_cli(site.prefix, "orphans").stdout
    assert f"droplet {third['instance_id']} " in listed and f"droplet {second['instance_id']} " not in listed
    assert http("GET", site.url + "/health").json["checks"]["ownership"]["orphans_held"] == 1
    assert site.call("GET", f"/servers/{second['id']}").json["status"] == "ready"

    # A person may destroy it by hand; then nothing is held.
    destroyed = admin_cli(site.prefix, "destroy", "droplet", str(third["instance_id"]), "--yes")
    assert destroyed.returncode == 0, destroyed.stderr
    assert not droplet_exists(sandbox, third["instance_id"])
    assert "no orphans" in admin_cli(site.prefix, "orphans").stdout
    assert http("GET", site.url + "/health").json["status"] == "healthy"


# -- the circuit breaker, as cron and the operator meet it ----------------------------------------------------

def test_a_run_that_would_destroy_many_is_held_until_the_operator_confirms(site_a, sandbox):
    site = site_a
    servers = create_ready(site, *(f"many-{n}" for n in range(7)))
    with database(site.prefix) as db:  # seven rows dead at once: more likely a bad restore than real
        db.update("UPDATE servers SET status = 'error' WHERE id IN (%s, %s, %s, %s, %s, %s, %s)",
                  [server["id"] for server in servers])
    for _ in range(2):  # cron mails the one line, every run, until someone looks
        job = site.monitor()
        assert job.returncode == 1 and job.stderr.count("\n") == 1 and "circuit breaker" in job.stderr, job
        assert all(droplet_exists(sandbox, server["instance_id"]) for server in servers)
    health = http("GET", site.url + "/health").json
    assert health["status"] == "degraded" and health["checks"]["ownership"]["awaiting_confirmation"] == 7
    unasked = admin_cli(site.prefix, "confirm-destroy")  # no terminal: nothing is approved by accident
    assert unasked.returncode == 1 and unasked.stdout.count("  droplet ") == 7 and "--yes" in unasked.stdout
    assert site.monitor().returncode == 1
    confirmed = admin_cli(site.prefix, "confirm-destroy", "--yes")
    assert confirmed.returncode == 0 and "approved 7" in confirmed.stdout, confirmed
    job = site.monitor()
    assert job.returncode == 0 and "7 destroyed" in job.stdout, (job.stdout, job.stderr)
    assert not any(droplet_exists(sandbox, server["instance_id"]) for server in servers)
    assert http("GET", site.url + "/health").json["checks"]["ownership"]["status"] == "ok"
