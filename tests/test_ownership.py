"""Destroy only what is provably ours, in-process against the real MariaDB and the sandbox cloud.

Another installation's objects and hand-made ones are invisible to the monitor; a droplet naming a row
this database never saw (a restored backup) is held and reported, never destroyed, until a person adopts
or destroys it; a run that would destroy many holds them all until an admin confirms; default VPCs step
around ranges the account already holds; objects made before installation ids are taken over only when
a row explains them. Through Apache, with two real installations: tests/test_installations.py.
"""

import contextlib
import io
import time

import pytest

from cloudprovisioner import admin as admin_commands
from cloudprovisioner import monitor, orphans, ownership, provider
from cloudprovisioner.context import Context
from cloudprovisioner.ids import new_id
from tests.support import TEST_INSTALL_ID, TEST_TOKEN, Client, assert_problem, http, knob, make_config

SERVER = {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}
OURS = f"cloudprovisioner:{TEST_INSTALL_ID}"
WORLD = ["0.0.0.0/0", "::/0"]
SSH = {"protocol": "tcp", "ports": "22", "sources": {"addresses": WORLD}}


def cloud(sandbox, method, path, body=None):
    return http(method, sandbox + path, body, headers={"Authorization": f"Bearer {TEST_TOKEN}"})


def droplet_ids(sandbox, tag=None):
    query = f"droplets?per_page=200{f'&tag_name={tag}' if tag else ''}"
    return sorted(droplet["id"] for droplet in cloud(sandbox, "GET", query).json["droplets"])


def make_cloud_vpc(sandbox, name, ip_range, region="nyc3"):
    """A VPC made in the account by hand, or by another installation."""
    return cloud(sandbox, "POST", "vpcs", {"name": name, "region": region, "ip_range": ip_range})


def names(sandbox, kind):
    return {item["name"] for item in cloud(sandbox, "GET", f"{kind}?per_page=200").json[kind]}


def run(values, **settings):
    """One monitor run in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    status = monitor.run_once(make_config(dict(values, **settings)), out, err)
    return status, out.getvalue(), err.getvalue()


def admin_cli(values, tmp_path, *argv, answer=None):
    """`cloudprovisioner-admin` in-process on an env file holding `values`: (exit status, what it printed)."""
    env = tmp_path / "cp.env"
    env.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        if answer is not None:
            import builtins
            original, builtins.input = builtins.input, lambda prompt: (out.write(prompt), answer)[1]
        try:
            status = admin_commands.main(["--config", str(env), *argv])
        finally:
            if answer is not None:
                builtins.input = original
    return status, out.getvalue()


def ready_servers(client, values, count):
    made = []
    for number in range(count):
        answer = client.post("/servers", dict(SERVER, name=f"web-{number}"))
        assert answer.status == 202, answer.body
        made.append(answer.json)
    time.sleep(1.2)  # the sandbox activates droplets after a second
    status, out, err = run(values)
    assert status == 0 and f"{count} ready" in out, (out, err)
    return made


def health(app):
    from tests.support import call
    return call(app, "GET", "/health", script_name="").json


def forget(db, server_id):
    """As if the database were restored from a dump taken before this server was made."""
    db.update("DELETE FROM operations WHERE target_id = %s", (server_id,))
    db.update("DELETE FROM servers WHERE id = %s", (server_id,))


# -- what is not ours is invisible --------------------------------------------------------------------------

def test_hand_made_and_other_installations_objects_survive_every_run(admin, values, sandbox, db):
    ready_servers(admin, values, 1)  # so this installation has VPCs and firewalls of its own
    other = "cloudprovisioner:otherinst01"
    strays = [cloud(sandbox, "POST", "droplets", dict(SERVER, name=name, tags=tags)).json["droplet"]["id"]
              for name, tags in (("bare", ["cloudprovisioner"]),
                                 ("old-style", ["cloudprovisioner", f"cloudprovisioner:{new_id()}"]),
                                 ("theirs", [other, f"{other}:{new_id()}"]),
                                 ("by-hand", ["web"]))]
    hand_vpcs = {"hand-made": "10.210.0.0/20", f"cloudprovisioner-vpc-{new_id()}": "10.211.0.0/20",
                 f"cloudprovisioner-otherinst01-vpc-{new_id()}": "10.212.0.0/20"}
    for name, ip_range in hand_vpcs.items():
        assert make_cloud_vpc(sandbox, name, ip_range).status == 201
    for name in ("hand-made", f"cloudprovisioner-firewall-{new_id()}",
                 f"cloudprovisioner-otherinst01-firewall-{new_id()}"):
        assert cloud(sandbox, "POST", "firewalls", {"name": name, "inbound_rules": [SSH]}).status == 202
    for _ in range(3):
        assert run(values, CP_ORPHAN_GRACE="-1") == (0, "", "")
    assert set(strays) <= set(droplet_ids(sandbox))
    assert set(hand_vpcs) <= names(sandbox, "vpcs")
    assert len(names(sandbox, "firewalls")) == 4  # the tenant's default one and the three above
    assert db.query("SELECT * FROM orphans") == []
    assert health(admin.app)["checks"]["ownership"]["status"] == "ok"


def test_a_database_with_another_installation_id_refuses_to_act(admin, values, sandbox, db):
    [server] = ready_servers(admin, values, 1)
    admin.delete(f"/servers/{server['id']}")
    status, out, err = run(values, CP_INSTALL_ID="someoneelse1")
    assert status == 1 and out == "" and f"belongs to installation {OURS}" in err
    assert db.one("SELECT status FROM servers")["status"] == "deleting"  # nothing done
    status, out, err = run(values, CP_PLATFORM_TAG="cp")  # the platform tag is half of what names ours
    assert status == 1 and out == "" and "cp:testinstall01" in err
    assert run(values)[0] == 0


def test_a_missing_or_malformed_installation_id_is_a_configuration_error(values):
    for bad in ("", "UPPER-case!", "short"):
        status, _out, err = run(values, CP_INSTALL_ID=bad)
        assert status == 1 and "CP_INSTALL_ID" in err


# -- orphans: held when unprovable, reported, adopted -------------------------------------------------------

def test_a_droplet_whose_row_this_database_never_saw_is_held_reported_and_adopted(admin, values, sandbox, db,
                                                                                   tmp_path):
    kept, restored_away = ready_servers(admin, values, 2)
    forget(db, restored_away["id"])
    status, out, err = run(values, CP_ORPHAN_GRACE="-1")
    assert status == 0 and err == "", err
    assert f"held droplet {restored_away['instance_id']}" in out and "never seen" in out
    assert droplet_ids(sandbox, OURS) == sorted(int(s["instance_id"]) for s in (kept, restored_away))
    assert run(values, CP_ORPHAN_GRACE="-1") == (0, "", "")  # reported once, held quietly after
    # Everyone who looks is told: /health, the admin command, the platform admin's API.
    ownership = health(admin.app)
    assert ownership["status"] == "degraded"
    assert ownership["checks"]["ownership"] == {"status": "attention", "orphans_held": 1, "awaiting_confirmation": 0,
                                                "breaker": None}
    code, printed = admin_cli(values, tmp_path, "orphans")
    assert code == 0 and f"droplet {restored_away['instance_id']} web-1 row={restored_away['id']} held" in printed
    assert_problem(admin.get("/admin/orphans"), 403)  # a tenant admin: not the platform's
    db.update("UPDATE users SET platform_admin = 1")
    [listed] = admin.get("/admin/orphans").json
    assert (listed["kind"], listed["cloud_id"], listed["verdict"]) == ("droplet", restored_away["instance_id"], "held")
    # Adopted: the row it names is back, ready, in its tenant, with what the cloud says of it.
    code, printed = admin_cli(values, tmp_path, "adopt", restored_away["instance_id"])
    assert code == 0, printed
    back = admin.get(f"/servers/{restored_away['id']}").json
    assert (back["status"], back["instance_id"], back["name"], back["region"]) == (
        "ready", restored_away["instance_id"], "web-1", "nyc3")
    assert back["public_ip"] == restored_away["public_ip"] or back["public_ip"]
    assert db.query("SELECT * FROM orphans") == []
    assert run(values, CP_ORPHAN_GRACE="-1") == (0, "", "")
    assert health(admin.app)["checks"]["ownership"]["status"] == "ok"
    # Only what the monitor listed can be adopted or destroyed by hand.
    code, printed = admin_cli(values, tmp_path, "adopt", kept["instance_id"])
    assert code == 1 and "not on the monitor's list" in printed


def test_a_held_droplet_is_destroyed_only_by_hand(admin, values, sandbox, db, tmp_path):
    [server] = ready_servers(admin, values, 1)
    forget(db, server["id"])
    run(values)
    code, printed = admin_cli(values, tmp_path, "destroy", "droplet", server["instance_id"], answer="no")
    assert code == 1 and "nothing destroyed" in printed
    assert droplet_ids(sandbox, OURS) == [int(server["instance_id"])]
    code, printed = admin_cli(values, tmp_path, "destroy", "droplet", server["instance_id"], "--yes")
    assert code == 0, printed
    assert droplet_ids(sandbox, OURS) == []
    assert db.query("SELECT * FROM orphans") == []


def test_a_held_droplet_is_powered_off_only_when_configured(admin, values, sandbox, db):
    first, second = ready_servers(admin, values, 2)
    forget(db, first["id"])
    run(values)
    assert cloud(sandbox, "GET", f"droplets/{first['instance_id']}").json["droplet"]["status"] == "active"
    forget(db, second["id"])
    status, out, _ = run(values, CP_ORPHAN_POWER_OFF="yes")
    assert status == 0 and f"powered off held droplet {second['instance_id']}" in out
    assert f"powered off held droplet {first['instance_id']}" not in out  # held before: left as it was
    time.sleep(1.2)
    assert cloud(sandbox, "GET", f"droplets/{second['instance_id']}").json["droplet"]["status"] == "off"
    assert droplet_ids(sandbox, OURS) == sorted(int(s["instance_id"]) for s in (first, second))


def test_a_dead_rows_droplet_and_an_old_nameless_one_are_destroyed(admin, values, sandbox, db):
    [server] = ready_servers(admin, values, 1)
    db.update("UPDATE servers SET status = 'error' WHERE id = %s", (server["id"],))  # dead: provably ours
    nameless = cloud(sandbox, "POST", "droplets", dict(SERVER, name="nameless", tags=[OURS])).json["droplet"]["id"]
    status, out, _ = run(values)
    assert status == 0 and "1 destroyed" in out and "orphans destroyed" not in out  # the nameless one is young
    assert droplet_ids(sandbox, OURS) == [nameless]
    status, out, _ = run(values, CP_ORPHAN_GRACE="-1")
    assert status == 0 and "1 orphans destroyed" in out
    assert droplet_ids(sandbox, OURS) == []


# -- the circuit breaker ------------------------------------------------------------------------------------

def test_a_run_that_would_destroy_many_destroys_none_until_an_admin_confirms(admin, values, sandbox, db, tmp_path):
    servers = ready_servers(admin, values, 7)
    db.update("UPDATE servers SET status = 'error'")  # seven dead rows at once: more likely a bad restore than real
    for _ in range(2):  # and it keeps refusing
        status, out, err = run(values)
        assert status == 1 and err.count("\n") == 1 and "circuit breaker" in err and "destroy 7 objects" in err, err
        assert "destroying" not in out
        assert len(droplet_ids(sandbox, OURS)) == 7
    state = health(admin.app)
    assert state["status"] == "degraded" and state["checks"]["ownership"]["awaiting_confirmation"] == 7
    assert "circuit breaker" in state["checks"]["ownership"]["breaker"]
    # The admin is shown the list first; saying no approves nothing.
    code, printed = admin_cli(values, tmp_path, "confirm-destroy", answer="no")
    assert code == 1 and printed.count("droplet ") == 7 and "nothing approved" in printed
    assert run(values)[0] == 1
    code, printed = admin_cli(values, tmp_path, "confirm-destroy", answer="yes")
    assert code == 0 and "approved 7" in printed
    status, out, err = run(values)
    assert status == 0 and "7 destroyed" in out and err == "", (out, err)
    assert droplet_ids(sandbox, OURS) == []
    assert db.query("SELECT * FROM orphans") == []
    assert health(admin.app)["checks"]["ownership"] == {"status": "ok", "orphans_held": 0,
                                                        "awaiting_confirmation": 0, "breaker": None}
    assert len(servers) == 7


@pytest.mark.parametrize(("total", "dead", "percent", "trips"), [
    (10, 1, "10", False),   # one destroy is never held by the share
    (10, 2, "10", True),    # two of ten is 20%
    (10, 2, "20", False),   # ...unless 20% is allowed
])
def test_the_breaker_counts_a_share_of_the_installations_objects(admin, values, sandbox, db, total, dead, percent,
                                                                 trips):
    servers = ready_servers(admin, values, total)
    for server in servers[:dead]:
        db.update("UPDATE servers SET status = 'error' WHERE id = %s", (server["id"],))
    status, _out, err = run(values, CP_MONITOR_MAX_DESTROY_PERCENT=percent)
    assert (status == 1 and "circuit breaker" in err) == trips, err
    assert len(droplet_ids(sandbox, OURS)) == (total if trips else total - dead)


def test_deleting_what_users_asked_to_delete_is_never_held(admin, values, sandbox, db):
    servers = ready_servers(admin, values, 7)
    db.update("UPDATE servers SET instance_id = NULL")  # so the DELETEs leave the destroying to the monitor
    for server in servers:
        assert admin.delete(f"/servers/{server['id']}").status == 202
    status, out, err = run(values)
    assert status == 0 and err == "", (out, err)
    assert droplet_ids(sandbox, OURS) == []
    assert "7 deleted" in run(values)[1]


# -- networks that share an account -------------------------------------------------------------------------

def test_a_default_vpc_steps_around_ranges_the_account_already_holds(admin, values, sandbox, db):
    # Made by hand (or another installation) before this installation's monitor ever looked.
    assert make_cloud_vpc(sandbox, "theirs", "172.16.0.0/20").status == 201
    created = admin.post("/servers", SERVER)
    assert created.status == 202, created.body
    [vpc] = admin.get("/vpcs").json
    assert vpc["ip_range"] == "172.16.16.0/20" and vpc["status"] == "ready"
    # The refused attempt holds no range or name, and nobody sees it in the list.
    assert db.one("SELECT COUNT(*) AS n FROM vpcs WHERE status = 'deleted' AND live IS NULL")["n"] == 1
    # Once the monitor has listed the account, the next tenant's block skips both without asking the cloud.
    run(values)
    knob(sandbox, "DELETE", "/_sandbox/stats")
    other = Client(admin.app).post("/auth/register", {"tenant_name": "Globex", "name": "G", "email": "g@globex.test",
                                                      "password": "correct horse battery"})
    assert other.status == 201
    globex = Client(admin.app).login("g@globex.test", "correct horse battery")
    assert globex.post("/servers", SERVER).status == 202
    assert [v["ip_range"] for v in globex.get("/vpcs").json] == ["172.16.32.0/20"]
    assert knob(sandbox, "GET", "/_sandbox/stats").json["requests"].get("GET /v2/vpcs") is None


def test_a_range_another_installation_holds_is_refused_up_front(admin, values, sandbox):
    assert make_cloud_vpc(sandbox, "theirs", "10.50.0.0/16", "ams3").status == 201
    run(values)
    answer = admin.post("/vpcs", {"name": "mine", "region": "nyc3", "ip_range": "10.50.16.0/20"})
    problem = assert_problem(answer, 409)
    assert problem["type"].endswith(":vpc-range-taken") and "outside this platform" in problem["detail"]


def test_an_account_key_is_removed_only_if_this_installation_added_it(admin, values, sandbox, db):
    from tests.support import new_public_key
    theirs, ours = new_public_key(), new_public_key()
    # A key someone added to the account by hand (or another installation did).
    assert cloud(sandbox, "POST", "account/keys", {"name": "ops laptop", "public_key": theirs}).status == 201
    keys = [admin.post("/ssh-keys", {"name": name, "public_key": key}).json for name, key in
            (("theirs", theirs), ("ours", ours))]
    assert admin.post("/servers", dict(SERVER, ssh_keys=[key["id"] for key in keys])).status == 202
    for key in keys:
        assert admin.delete(f"/ssh-keys/{key['id']}").status == 204
    left = [key["name"] for key in cloud(sandbox, "GET", "account/keys?per_page=200").json["ssh_keys"]]
    assert left == ["ops laptop"]


# -- upgrading from before installation ids -----------------------------------------------------------------

def test_objects_made_before_installation_ids_are_taken_over_only_when_a_row_explains_them(admin, values, sandbox,
                                                                                           db):
    """What an upgraded installation holds: rows from before (marked legacy by migration 007), droplets
    and a firewall with the old tags and name. Its servers are kept and get today's tags; another old
    installation's droplet with the same old tags is left alone."""
    [server] = ready_servers(admin, values, 1)
    tenant = admin.get("/me").json["tenant_id"]
    firewall = db.one("SELECT id, cloud_id FROM firewalls")
    old_tags = ["cloudprovisioner", f"cloudprovisioner:{server['id']}", f"cloudprovisioner:fw:{firewall['id']}"]
    # Put the server's droplet and firewall back as the old code left them.
    for tag in cloud(sandbox, "GET", f"droplets/{server['instance_id']}").json["droplet"]["tags"]:
        cloud(sandbox, "DELETE", f"tags/{tag}/resources",
              {"resources": [{"resource_id": server["instance_id"], "resource_type": "droplet"}]})
    for tag in old_tags:
        cloud(sandbox, "POST", "tags", {"name": tag})
        cloud(sandbox, "POST", f"tags/{tag}/resources",
              {"resources": [{"resource_id": server["instance_id"], "resource_type": "droplet"}]})
    spec = cloud(sandbox, "GET", f"firewalls/{firewall['cloud_id']}").json["firewall"]
    cloud(sandbox, "PUT", f"firewalls/{firewall['cloud_id']}", {
        "name": f"cloudprovisioner-firewall-{firewall['id']}", "inbound_rules": spec["inbound_rules"],
        "outbound_rules": spec["outbound_rules"], "tags": [f"cloudprovisioner:fw:{firewall['id']}"]})
    vpc = db.one("SELECT id, cloud_id FROM vpcs")
    cloud(sandbox, "PATCH", f"vpcs/{vpc['cloud_id']}", {"name": f"cloudprovisioner-vpc-{vpc['id']}"})
    db.update("UPDATE servers SET legacy_tags = 1")
    db.update("UPDATE firewalls SET legacy_tags = 1")
    theirs = cloud(sandbox, "POST", "droplets", dict(SERVER, name="old-other", tags=[
        "cloudprovisioner", f"cloudprovisioner:{new_id()}"])).json["droplet"]["id"]

    status, out, err = run(values, CP_ORPHAN_GRACE="-1")
    assert status == 0 and "1 taken over" in out and "1 firewalls updated" in out and "1 vpcs updated" in out, (
        out, err)
    assert cloud(sandbox, "GET", f"vpcs/{vpc['cloud_id']}").json["vpc"]["name"] == (
        f"cloudprovisioner-{TEST_INSTALL_ID}-vpc-{vpc['id']}")
    tags = set(cloud(sandbox, "GET", f"droplets/{server['instance_id']}").json["droplet"]["tags"])
    assert {OURS, f"{OURS}:{server['id']}", f"{OURS}:tenant:{tenant}", f"{OURS}:fw:{firewall['id']}"} <= tags
    assert admin.get(f"/servers/{server['id']}").json["status"] == "ready"
    # The firewall: today's name, and it covers servers by both tags until nothing carries the old one.
    wall = cloud(sandbox, "GET", f"firewalls/{firewall['cloud_id']}").json["firewall"]
    assert wall["name"] == f"cloudprovisioner-{TEST_INSTALL_ID}-firewall-{firewall['id']}"
    assert sorted(wall["tags"]) == sorted([f"{OURS}:fw:{firewall['id']}", f"cloudprovisioner:fw:{firewall['id']}"])
    assert theirs in droplet_ids(sandbox)
    assert run(values, CP_ORPHAN_GRACE="-1") == (0, "", "")
    assert db.one("SELECT legacy_tags FROM servers")["legacy_tags"] == 0


# -- what a listing, a race or a half-finished run must not make the monitor destroy ------------------------

def test_a_droplet_missing_from_a_short_listing_is_not_taken_for_vanished(admin, values, sandbox, db, monkeypatch):
    """Pages shift when a droplet is deleted between two of them: one listed late is missed. Its row must
    not become error (the next run would destroy the droplet as a dead row's)."""
    servers_made = sorted(ready_servers(admin, values, 3), key=lambda server: int(server["instance_id"]))
    monkeypatch.setattr(provider, "PAGE_SIZE", 2)  # stands for 200, with more than 200 droplets
    real_api = provider.Cloud._api

    def api(self, method, path, body=None, before_retry=None):
        answer = real_api(self, method, path, body, before_retry)
        if (method, path, (body or {}).get("page")) == ("GET", "droplets/", 1) and not api.done:
            api.done = True  # a user deletes a server on page 1 while the monitor is between pages
            assert admin.delete(f"/servers/{servers_made[0]['id']}").status == 202
        return answer
    api.done = False
    monkeypatch.setattr(provider.Cloud, "_api", api)
    status, out, _ = run(values)
    assert status == 0 and "vanished" not in out and "was missing from the listing but is there" in out, out
    monkeypatch.setattr(provider.Cloud, "_api", real_api)
    run(values)
    assert [s["status"] for s in admin.get("/servers").json] == ["ready", "ready"]
    assert droplet_ids(sandbox, OURS) == sorted(int(s["instance_id"]) for s in servers_made[1:])


def test_an_admins_adopt_during_a_run_keeps_the_droplet(admin, values, sandbox, db, monkeypatch):
    kept, lost = ready_servers(admin, values, 2)
    forget(db, lost["id"])
    run(values)
    statuses = monitor.Run._statuses

    def adopt_meanwhile(self, row_ids):
        orphans.adopt(Context(make_config(values), db=db), lost["instance_id"])  # the admin, in another process
        return statuses(self, row_ids)
    monkeypatch.setattr(monitor.Run, "_statuses", adopt_meanwhile)
    status, out, _ = run(values)
    assert status == 0 and "destroying" not in out, out
    assert droplet_ids(sandbox, OURS) == sorted(int(s["instance_id"]) for s in (kept, lost))
    monkeypatch.setattr(monitor.Run, "_statuses", statuses)
    assert run(values) == (0, "", "")
    assert admin.get(f"/servers/{lost['id']}").json["status"] == "ready"


def test_a_legacy_take_over_stopped_half_way_is_finished_by_the_next_run(admin, values, sandbox, db):
    [server] = ready_servers(admin, values, 1)
    make_legacy(sandbox, db, server)
    knob(sandbox, "POST", "/_sandbox/config", {"ratelimit_remaining": 103})  # the floor is 100
    status, out, err = run(values, CP_ORPHAN_GRACE="-1")
    assert status == 0 and "rate limit is low" in out and err == "", (out, err)
    knob(sandbox, "POST", "/_sandbox/config", {"ratelimit_remaining": 5000})
    status, out, err = run(values, CP_ORPHAN_GRACE="-1")
    assert status == 0 and "1 taken over" in out and "destroy" not in out and "vanished" not in out, (out, err)
    assert admin.get(f"/servers/{server['id']}").json["status"] == "ready"
    assert f"{OURS}:{server['id']}" in cloud(sandbox, "GET", f"droplets/{server['instance_id']}").json[
        "droplet"]["tags"]


def test_a_user_tag_with_the_default_platform_tag_is_refused_whatever_this_installations_is(values):
    """Else a tenant of an installation with another CP_PLATFORM_TAG could tag a server
    `cloudprovisioner:<our id>`, and our monitor would take it for ours."""
    check = ownership.user_tag(make_config(dict(values, CP_PLATFORM_TAG="cp")))
    for tag in (OURS, "cloudprovisioner", "CloudProvisioner:x", "cp:anything"):
        with pytest.raises(ValueError, match="reserved"):
            check(tag)
    assert check("cloudprovisioners") == "cloudprovisioners"


def test_a_restore_that_holds_many_droplets_powers_none_of_them_off(admin, values, sandbox, db):
    made = ready_servers(admin, values, 7)
    for server in made:
        forget(db, server["id"])
    status, out, _ = run(values, CP_ORPHAN_POWER_OFF="yes")
    assert status == 0 and "7 held droplets left running" in out and "powered off" not in out, out
    time.sleep(1.2)
    assert {d["status"] for d in cloud(sandbox, "GET", "droplets?per_page=200").json["droplets"]} == {"active"}


def test_confirming_with_no_terminal_approves_nothing(admin, values, db, tmp_path, monkeypatch):
    servers_made = ready_servers(admin, values, 7)
    db.update("UPDATE servers SET status = 'error'")
    assert run(values)[0] == 1
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, printed = admin_cli(values, tmp_path, "confirm-destroy")
    assert code == 1 and "give --yes" in printed
    assert db.one("SELECT COUNT(*) AS n FROM orphans WHERE approved_at IS NOT NULL")["n"] == 0
    assert len(servers_made) == 7


def make_legacy(sandbox, db, server):
    """Put a server's droplet back as the code before installation ids left it: only the old tags."""
    firewall = db.one("SELECT id FROM firewalls")
    for tag in cloud(sandbox, "GET", f"droplets/{server['instance_id']}").json["droplet"]["tags"]:
        cloud(sandbox, "DELETE", f"tags/{tag}/resources",
              {"resources": [{"resource_id": server["instance_id"], "resource_type": "droplet"}]})
    for tag in ("cloudprovisioner", f"cloudprovisioner:{server['id']}", f"cloudprovisioner:fw:{firewall['id']}"):
        cloud(sandbox, "POST", "tags", {"name": tag})
        cloud(sandbox, "POST", f"tags/{tag}/resources",
              {"resources": [{"resource_id": server["instance_id"], "resource_type": "droplet"}]})
    db.update("UPDATE servers SET legacy_tags = 1")


def test_what_requests_do_to_networks_while_the_monitor_lists_them_is_left_for_the_next_run(admin, values, sandbox,
                                                                                           db, monkeypatch):
    """A VPC made, and a VPC and a firewall deleted, between the monitor's listing and its reading of the rows:
    none is taken for lost (made again, or marked error) or for an orphan (counted by the breaker)."""
    doomed_vpc = admin.post("/vpcs", {"name": "gone", "region": "nyc3", "ip_range": "10.211.0.0/20"}).json
    doomed_wall = admin.post("/firewalls", {"name": "web", "inbound_rules": [SSH]}).json
    assert run(values)[0] == 0
    listers = {"list_vpcs": provider.Cloud.list_vpcs, "list_firewalls": provider.Cloud.list_firewalls}
    late = {}

    def meanwhile(name, change):
        def lister(self):
            listed = listers[name](self)
            change()
            return listed
        monkeypatch.setattr(provider.Cloud, name, lister)

    def vpcs_change():
        late["vpc"] = admin.post("/vpcs", {"name": "late", "region": "nyc3", "ip_range": "10.212.0.0/20"}).json
        assert admin.delete(f"/vpcs/{doomed_vpc['id']}").status == 202
    meanwhile("list_vpcs", vpcs_change)
    meanwhile("list_firewalls", lambda: admin.delete(f"/firewalls/{doomed_wall['id']}"))
    status, out, err = run(values)
    assert status == 0 and err == "" and "created" not in out and "orphaned" not in out, (out, err)
    monkeypatch.undo()
    assert run(values)[0] == 0
    assert admin.get(f"/vpcs/{late['vpc']['id']}").json["status"] == "ready"
    assert [v["name"] for v in admin.get("/vpcs").json] == ["late"]
    assert [f["name"] for f in admin.get("/firewalls").json] == []
    assert names(sandbox, "firewalls") == set()
