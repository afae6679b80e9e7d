"""Upgrading a real installation made before installation ids: its servers, VPC and firewall are kept.

The release before installation ids (the parent of the commit that added sql/007_ownership.sql) is
installed with its own `make install` into a scratch prefix, served by a real Apache, given servers
and a firewall over HTTP and settled by its own cron monitor. Then this tree is installed over it,
`make migrate` runs, and this monitor runs as cron runs it: every server stays ready, its droplet
gets this installation's tags, and the VPC and firewall are renamed, not destroyed.
"""

import subprocess
import time

import pytest

from cloudprovisioner.config import parse_env_file
from devtools.devstack import Apache
from tests.support import TEST_TOKEN, configure_install, http, knob, make_install, run_cron_job

SERVER = {"name": "old-1", "region": "fra1", "size": "s-1vcpu-1gb", "image": "debian-12-x64"}
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def release_before_installation_ids(into):
    """The tree of the last commit without sql/007_ownership.sql, exported into `into`."""
    added = git("log", "--diff-filter=A", "--format=%H", "--", "sql/007_ownership.sql").splitlines()
    assert added, "sql/007_ownership.sql has no history: the test needs the repository's git history"
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", f"{added[-1]}^"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def admin_command(prefix, *argv):
    done = subprocess.run([str(prefix / "bin" / "cloudprovisioner-admin"), "--config",
                           str(prefix / "etc" / "cloudprovisioner.env"), *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def cloud(sandbox, path):
    return http("GET", sandbox + path, headers={"Authorization": f"Bearer {TEST_TOKEN}"}).json


def monitor(prefix):
    job = run_cron_job(prefix, "monitor_new_node")
    assert job.returncode == 0, job.stdout + job.stderr
    return job.stdout


@pytest.fixture
def old_installation(stack_dir, mariadb, sandbox, smtp):
    """The old release installed and configured, its database migrated by its own admin command."""
    prefix = stack_dir / "upgrade"
    make_install(release_before_installation_ids(stack_dir / "old-release"), prefix)
    env_file = configure_install(prefix, mariadb, sandbox, smtp, "cp_upgrade")
    assert "CP_INSTALL_ID" not in parse_env_file(env_file.read_text())  # the old release knows none
    admin_command(prefix, "migrate")
    return prefix


def serve(stack_dir, prefix, name):
    server = Apache(stack_dir / name, 0, [prefix / "apache" / "cloudprovisioner.conf"])
    server.start()
    return server


def test_an_upgraded_installation_keeps_its_servers_and_takes_them_over(old_installation, stack_dir, sandbox):
    knob(sandbox, "POST", "/_sandbox/reset")
    prefix = old_installation
    apache = serve(stack_dir, prefix, "apache-old")
    try:
        api = apache.url + "/api"
        assert http("POST", api + "/auth/register", {"tenant_name": "Old", "name": "Olga", "email": "o@old.test",
                                                     "password": "old password 123"}).status == 201
        token = http("POST", api + "/auth/login", {"email": "o@old.test", "password": "old password 123"}).json
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        servers = [http("POST", api + "/servers", dict(SERVER, name=f"old-{n}"), headers=auth).json for n in range(2)]
        assert all(server["status"] == "pending" for server in servers), servers
        time.sleep(1.2)
        assert "2 ready" in monitor(prefix)
    finally:
        apache.stop()
    before = {droplet["id"]: droplet for droplet in cloud(sandbox, "droplets?per_page=200")["droplets"]}
    assert all("cloudprovisioner" in droplet["tags"] for droplet in before.values())  # the old tags

    # The upgrade, as the README says: install over it, migrate, and cron goes on.
    make_install(ROOT, prefix)
    assert "applied 007_ownership.sql" in admin_command(prefix, "migrate")
    install_id = parse_env_file((prefix / "etc" / "cloudprovisioner.env").read_text())["CP_INSTALL_ID"]
    ours = f"cloudprovisioner:{install_id}"
    out = monitor(prefix)
    assert "2 taken over" in out and "1 vpcs updated" in out and "1 firewalls updated" in out, out
    assert "destroy" not in out, out
    assert monitor(prefix) == ""  # settled: the next run has nothing to do

    after = {droplet["id"]: droplet for droplet in cloud(sandbox, "droplets?per_page=200")["droplets"]}
    assert set(after) == set(before)
    for server in servers:
        tags = after[int(server["instance_id"])]["tags"]
        assert ours in tags and f"{ours}:{server['id']}" in tags, tags
    [vpc] = cloud(sandbox, "vpcs?per_page=200")["vpcs"][-1:]
    assert vpc["name"].startswith(f"cloudprovisioner-{install_id}-vpc-")
    [firewall] = cloud(sandbox, "firewalls?per_page=200")["firewalls"]
    assert firewall["name"].startswith(f"cloudprovisioner-{install_id}-firewall-")
    for droplet_id in after:  # both servers still behind their firewall
        assert knob(sandbox, "GET", f"/_sandbox/droplets/{droplet_id}").json["firewall_ids"] == [firewall["id"]]

    apache = serve(stack_dir, prefix, "apache-new")
    try:
        api = apache.url + "/api"
        token = http("POST", api + "/auth/login", {"email": "o@old.test", "password": "old password 123"}).json
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        listed = http("GET", api + "/servers", headers=auth).json
        assert sorted((s["id"], s["status"]) for s in listed) == sorted((s["id"], "ready") for s in servers)
        # Old servers are deleted as ever; new ones are made in the same (renamed) VPC.
        assert http("DELETE", api + f"/servers/{servers[0]['id']}", headers=auth).status == 202
        made = http("POST", api + "/servers", dict(SERVER, name="new-1"), headers=auth)
        assert made.status == 202 and made.json["vpc_id"] == listed[0]["vpc_id"], made.body
        assert "1 deleted" in monitor(prefix)
        assert int(servers[0]["instance_id"]) not in {d["id"] for d in cloud(sandbox, "droplets?per_page=200")[
            "droplets"]}
    finally:
        apache.stop()
