"""Networks and access in-process against the real MariaDB and the sandbox cloud: SSH keys, what a
server is created with (key, workspace, default VPC and firewall, merged user data), VPCs, firewalls,
the cloud failing under them (repaired by the monitor), and tenant isolation on every new list.

Every check reads both sides: what the API answers and stores, and what the sandbox cloud holds.
"""

import email
import io
import ipaddress
import os
import subprocess
import tempfile
import time

import pytest

from cloudprovisioner import monitor
from cloudprovisioner.ids import new_id
from cloudprovisioner.web.app import make_app
from tests.support import TEST_INSTALL_ID, TEST_TOKEN, Client, assert_problem, http, knob, make_config, new_public_key

SERVER = {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}
WORLD = ["0.0.0.0/0", "::/0"]
HTTPS = {"protocol": "tcp", "ports": "443", "sources": {"addresses": WORLD}}
CLOUD_AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
PREFIX = {"firewalls": f"cloudprovisioner-{TEST_INSTALL_ID}-firewall-",
          "vpcs": f"cloudprovisioner-{TEST_INSTALL_ID}-vpc-"}
OURS = f"cloudprovisioner:{TEST_INSTALL_ID}"  # what every tag this installation makes starts with


# -- helpers --------------------------------------------------------------------------------------------------

def cloud(sandbox, method, path, body=None):
    """The sandbox's DigitalOcean API itself, as the platform's account."""
    return http(method, sandbox + path, body, headers=CLOUD_AUTH)


def cloud_list(sandbox, kind, path=None):
    answer = cloud(sandbox, "GET", f"{path or kind}?per_page=200")
    assert answer.status == 200, answer.body
    return answer.json[kind]


def account_keys(sandbox):
    return cloud_list(sandbox, "ssh_keys", "account/keys")


def ours_in_cloud(sandbox, table):
    """The cloud's VPCs or firewalls named like the platform's, by name."""
    return {item["name"]: item for item in cloud_list(sandbox, table) if item["name"].startswith(PREFIX[table])}


def facts(sandbox, droplet_id):
    """What the droplet was created with (user data, keys, VPC) and the firewalls covering it now."""
    answer = knob(sandbox, "GET", f"/_sandbox/droplets/{droplet_id}")
    assert answer.status == 200, answer.body
    return answer.json


def cloud_calls(sandbox, route):
    return knob(sandbox, "GET", "/_sandbox/stats").json["requests"].get(route, 0)


def fault(sandbox, **rule):
    assert knob(sandbox, "POST", "/_sandbox/faults", rule).status == 201


def run(values):
    """One monitor run in-process: (exit status, what it printed)."""
    out, err = io.StringIO(), io.StringIO()
    status = monitor.run_once(make_config(values), out, err)
    return status, out.getvalue() + err.getvalue()


def impatient(client, values, **settings):
    """The same caller, through an app whose cloud budget is short (so persistent faults end quickly)."""
    return Client(make_app(make_config(dict(values, CP_CLOUD_BUDGET="1", **settings))), client.token)


def cloud_id(db, table, row_id):
    return db.one(f"SELECT cloud_id FROM {table} WHERE id = %s", (row_id,))["cloud_id"]


def row(db, table, row_id):
    return db.one(f"SELECT status, status_reason, cloud_id, live FROM {table} WHERE id = %s", (row_id,))


def operations_of(client, target):
    """(kind, status) of a target's operations, newest first."""
    return [(op["kind"], op["status"]) for op in client.get(f"/operations?target={target}").json]


def age(db, table, row_id, seconds=300):
    """As if the row was last written long ago: the monitor leaves fresh pending rows to their request."""
    db.update(f"UPDATE {table} SET updated_at = UTC_TIMESTAMP(6) - INTERVAL %s SECOND WHERE id = %s",
              (seconds, row_id))


def tenant_of(client):
    return client.get("/me").json["tenant_id"]


def key_pair(kind="rsa", bits=None, comment="test@cp"):
    """A fresh key pair made by the real ssh-keygen: (public line, private key text)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "key")
        subprocess.run(["ssh-keygen", "-q", "-t", kind, *(["-b", str(bits)] if bits else []), "-N", "",
                        "-C", comment, "-f", path], check=True)
        with open(path + ".pub") as public, open(path) as private:
            return public.read().strip(), private.read()


def keygen(public_key, *args):
    """What the real ssh-keygen prints for `args` on a public key line (in a file, as it wants)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "key.pub")
        with open(path, "w") as handle:
            handle.write(public_key + "\n")
        return subprocess.run(["ssh-keygen", *args, "-f", path], check=True, capture_output=True, text=True).stdout


def keygen_fingerprint(public_key, digest):
    """`ssh-keygen -l -E <digest>`: "MD5:aa:bb..." or "SHA256:..."."""
    return keygen(public_key, "-l", "-E", digest).split()[1]


def ready(client, values, body=SERVER):
    """A server created and (after the sandbox's one-second activation) marked ready by the monitor."""
    created = client.post("/servers", body)
    assert created.status == 202, created.body
    time.sleep(1.2)
    status, out = run(values)
    assert status == 0 and "ready" in out, out
    server = client.get(f"/servers/{created.json['id']}").json
    assert server["status"] == "ready"
    return server


def add_key(client, public_key, name="laptop"):
    answer = client.post("/ssh-keys", {"name": name, "public_key": public_key})
    assert answer.status == 201, answer.body
    return answer.json


def make_vpc(client, name="backend", region="nyc3", ip_range="10.10.0.0/16"):
    answer = client.post("/vpcs", {"name": name, "region": region, "ip_range": ip_range})
    assert answer.status == 202, answer.body
    return answer.json


def make_firewall(client, name="web", rules=(HTTPS,), **extra):
    answer = client.post("/firewalls", {"name": name, "inbound_rules": list(rules), **extra})
    assert answer.status == 202, answer.body
    return answer.json


def count(db, table):
    return db.one(f"SELECT COUNT(*) AS n FROM {table}")["n"]


# -- SSH keys -------------------------------------------------------------------------------------------------

def test_ed25519_and_rsa_4096_keys_are_added_with_the_fingerprints_ssh_keygen_shows(admin, db):
    ed25519 = new_public_key("ed25519", comment="ada@laptop")
    rsa, _ = key_pair("rsa", 4096, comment="ada@desktop")
    for public_key, name, kind, bits in ((ed25519, "laptop", "ssh-ed25519", 256), (rsa, "desktop", "ssh-rsa", 4096)):
        answer = admin.post("/ssh-keys", {"name": name, "public_key": public_key})
        assert answer.status == 201, answer.body
        key = answer.json
        assert answer.headers["location"] == f"/api/ssh-keys/{key['id']}"
        assert key["name"] == name and key["public_key"] == public_key
        assert key["type"] == kind and key["bits"] == bits
        assert key["user_id"] == admin.get("/me").json["id"]
        assert "MD5:" + key["fingerprint"] == keygen_fingerprint(public_key, "md5")
        assert key["sha256"] == keygen_fingerprint(public_key, "sha256")
        assert admin.get(f"/ssh-keys/{key['id']}").json == key
    stored = db.query("SELECT name, algorithm, bits, cloud_key_id FROM ssh_keys ORDER BY name")
    assert stored == [{"name": "desktop", "algorithm": "ssh-rsa", "bits": 4096, "cloud_key_id": None},
                      {"name": "laptop", "algorithm": "ssh-ed25519", "bits": 256, "cloud_key_id": None}]


def test_keys_are_listed_for_the_tenant_and_filtered_to_the_caller(admin, member):
    developer = member("developer")
    mine = add_key(admin, new_public_key(), "mine")
    theirs = add_key(developer, new_public_key(), "theirs")
    assert [k["id"] for k in admin.get("/ssh-keys").json] == [mine["id"], theirs["id"]]
    assert [k["id"] for k in admin.get("/ssh-keys?owner=me").json] == [mine["id"]]
    assert [k["id"] for k in developer.get("/ssh-keys?owner=me").json] == [theirs["id"]]
    assert developer.get(f"/ssh-keys/{mine['id']}").json == mine  # colleagues may read (and use) it
    assert "owner" in assert_problem(admin.get("/ssh-keys?owner=everyone"), 422)["errors"]
    assert_problem(admin.get(f"/ssh-keys/{new_id()}"), 404)


BAD_KEYS = {
    "empty": (lambda: "   ", "No public key was given"),
    "dsa": (lambda: "ssh-dss AAAAB3NzaC1kc3MAAACBAP test", "DSA keys (ssh-dss) are not accepted"),
    "two keys": (lambda: new_public_key() + "\n" + new_public_key(), "one key per request"),
    "two on a line": (lambda: new_public_key() + " " + new_public_key(), "one key per request"),
    "options": (lambda: 'from="10.0.0.1" ' + new_public_key(), "authorized_keys options"),
    "ssh2 format": (lambda: keygen(new_public_key(), "-e"), "SSH2 (RFC 4716)"),
    "pem format": (lambda: keygen(new_public_key("rsa"), "-e", "-m", "PKCS8"), "This is a PEM public key"),
    "not a key": (lambda: "hello world", "This is not an OpenSSH public key"),
    "truncated": (lambda: new_public_key()[:60], "This is not a valid ssh-ed25519 public key"),
    "certificate": (lambda: "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaA== x", "SSH certificates"),
    "security key": (lambda: "sk-ssh-ed25519@openssh.com AAAAGnNr x", "Security-key (FIDO)"),
    "not text": (lambda: ["ssh-ed25519"], "must be a string"),
}


@pytest.mark.parametrize("case", sorted(BAD_KEYS))
def test_a_bad_key_is_422_saying_what_is_wrong(admin, db, case):
    make, words = BAD_KEYS[case]
    problem = assert_problem(admin.post("/ssh-keys", {"name": "bad", "public_key": make()}), 422)
    assert problem["type"].endswith(":invalid-fields")
    assert words in problem["errors"]["public_key"], problem
    assert count(db, "ssh_keys") == 0


def test_a_pasted_private_key_is_named_and_never_repeated_or_stored(admin, db):
    _, private_key = key_pair("ed25519")
    secret_lines = [line for line in private_key.splitlines() if line and not line.startswith("-----")]
    assert secret_lines
    answer = admin.post("/ssh-keys", {"name": "oops", "public_key": private_key})
    problem = assert_problem(answer, 422)
    assert "This is a private key" in problem["errors"]["public_key"]
    audit = repr(db.query("SELECT * FROM audit_log"))
    assert "sshkeys.create_key" in audit  # the attempt is recorded...
    for line in secret_lines:  # ... but no part of the secret, there or in the answer
        assert line not in answer.body.decode() and line not in audit
    assert count(db, "ssh_keys") == 0


def test_a_1024_bit_rsa_key_is_refused(admin, db):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    public_key = weak.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    problem = assert_problem(admin.post("/ssh-keys", {"name": "old", "public_key": public_key + " old"}), 422)
    assert "This RSA key has 1024 bits, fewer than the 2048 required" in problem["errors"]["public_key"]
    assert count(db, "ssh_keys") == 0


def test_one_user_has_a_key_once_but_colleagues_may_each_add_it(admin, member, db):
    public_key = new_public_key()
    first = add_key(admin, public_key, "laptop")
    again = assert_problem(admin.post("/ssh-keys", {"name": "other name", "public_key": public_key}), 409)
    assert again["type"].endswith(":ssh-key-exists") and "'laptop'" in again["detail"]
    taken = assert_problem(admin.post("/ssh-keys", {"name": "laptop", "public_key": new_public_key()}), 409)
    assert taken["type"].endswith(":ssh-key-name-taken")
    colleague = add_key(member("developer"), public_key, "laptop")
    assert colleague["fingerprint"] == first["fingerprint"] and colleague["id"] != first["id"]
    assert count(db, "ssh_keys") == 2


def test_a_developer_deletes_only_their_own_keys_an_admin_anyones(admin, member, db):
    developer = member("developer")
    admins = add_key(admin, new_public_key(), "admins")
    developers = add_key(developer, new_public_key(), "developers")
    problem = assert_problem(developer.delete(f"/ssh-keys/{admins['id']}"), 403)
    assert "another user" in problem["detail"]
    assert admin.get(f"/ssh-keys/{admins['id']}").status == 200
    assert admin.delete(f"/ssh-keys/{developers['id']}").status == 204
    assert_problem(developer.get(f"/ssh-keys/{developers['id']}"), 404)
    own = add_key(developer, new_public_key(), "again")
    assert developer.delete(f"/ssh-keys/{own['id']}").status == 204
    assert [r["id"] for r in db.query("SELECT id FROM ssh_keys")] == [admins["id"]]


def test_a_viewer_cannot_add_a_key(member, db):
    viewer = member("viewer")
    assert_problem(viewer.post("/ssh-keys", {"name": "k", "public_key": new_public_key()}), 403)
    assert count(db, "ssh_keys") == 0


def test_a_key_shared_by_two_users_is_one_account_key_removed_with_its_last_holder(admin, member, db, sandbox):
    public_key = new_public_key()
    developer = member("developer")
    mine, theirs = add_key(admin, public_key, "shared"), add_key(developer, public_key, "shared")
    assert admin.post("/servers", dict(SERVER, ssh_keys=[mine["id"]])).status == 202
    assert admin.post("/servers", dict(SERVER, name="web-2", ssh_keys=[theirs["id"]])).status == 202
    [account_key] = account_keys(sandbox)
    assert account_key["fingerprint"] == mine["fingerprint"]
    assert cloud_calls(sandbox, "POST /v2/account/keys") == 1
    assert {r["cloud_key_id"] for r in db.query("SELECT cloud_key_id FROM ssh_keys")} == {account_key["id"]}
    assert developer.delete(f"/ssh-keys/{theirs['id']}").status == 204
    assert [k["id"] for k in account_keys(sandbox)] == [account_key["id"]]  # still the admin's
    assert admin.delete(f"/ssh-keys/{mine['id']}").status == 204
    assert account_keys(sandbox) == []


# -- what a server is created with ----------------------------------------------------------------------------

SCRIPT = "#!/bin/sh\n# café: not ASCII, so it travels base64\necho hello > /tmp/hello\n"


def test_a_server_gets_its_key_the_default_vpc_and_firewall_and_merged_user_data(admin, db, sandbox, values):
    key = add_key(admin, new_public_key())
    assert admin.post("/workspaces", {"name": "staging", "description": "pre-production"}).status == 201
    answer = admin.post("/servers", dict(SERVER, workspace="staging", ssh_keys=[key["id"]], user_data=SCRIPT))
    assert answer.status == 202, answer.body
    server = answer.json
    assert server["workspace_id"] == admin.get("/workspaces/staging").json["id"]
    told = facts(sandbox, server["instance_id"])

    # The key: registered in the account under the fingerprint we computed, and given to the droplet.
    cloud_key_id = db.one("SELECT cloud_key_id FROM ssh_keys WHERE id = %s", (key["id"],))["cloud_key_id"]
    assert told["ssh_keys"] == [cloud_key_id]
    account_key = cloud(sandbox, "GET", f"account/keys/{cloud_key_id}").json["ssh_key"]
    assert account_key["fingerprint"] == key["fingerprint"] and account_key["public_key"] == key["public_key"]
    assert server["ssh_key_ids"] == [key["id"]]

    # The region's default VPC: made on first use from the platform's pool.
    [vpc] = admin.get("/vpcs").json
    assert vpc["name"] == "default-nyc3" and vpc["default"] and vpc["region"] == "nyc3" and vpc["status"] == "ready"
    network = ipaddress.ip_network(vpc["ip_range"])
    assert network.subnet_of(ipaddress.ip_network("172.16.0.0/12"))
    assert server["vpc_id"] == vpc["id"]
    vpc_cloud_id = cloud_id(db, "vpcs", vpc["id"])
    assert told["vpc_uuid"] == vpc_cloud_id
    in_cloud = cloud(sandbox, "GET", f"vpcs/{vpc_cloud_id}").json["vpc"]
    assert (in_cloud["name"], in_cloud["region"], in_cloud["ip_range"]) == (
        PREFIX["vpcs"] + vpc["id"], "nyc3", vpc["ip_range"])

    # The default firewall: ssh and http from anywhere, everything out; the droplet is behind it from boot.
    [firewall] = admin.get("/firewalls").json
    assert firewall["name"] == "default" and firewall["default"] and firewall["status"] == "ready"
    assert server["firewall_ids"] == [firewall["id"]]
    firewall_cloud_id = cloud_id(db, "firewalls", firewall["id"])
    assert told["firewall_ids"] == [firewall_cloud_id]
    rules = cloud(sandbox, "GET", f"firewalls/{firewall_cloud_id}").json["firewall"]
    assert sorted((r["protocol"], r["ports"], sorted(r["sources"]["addresses"])) for r in rules["inbound_rules"]) \
        == [("tcp", "22", sorted(WORLD)), ("tcp", "80", sorted(WORLD))]
    assert all(set(r["sources"]) == {"addresses"} for r in rules["inbound_rules"])
    assert sorted((r["protocol"], r["ports"], sorted(r["destinations"]["addresses"]))
                  for r in rules["outbound_rules"]) == [("icmp", "0", sorted(WORLD)), ("tcp", "0", sorted(WORLD)),
                                                        ("udp", "0", sorted(WORLD))]

    # The user data: the user's script unchanged, then ours switching password logins off.
    document = email.message_from_string(told["user_data"])
    assert document.get_content_type() == "multipart/mixed"
    parts = [part for part in document.walk() if not part.is_multipart()]
    assert parts[0].get_content_type() == "text/x-shellscript"
    assert parts[0].get_payload(decode=True).decode("utf-8") == SCRIPT
    ours = [part.get_payload(decode=True).decode("utf-8") for part in parts[1:]]
    assert [part.get_content_type() for part in parts[1:]] == ["text/cloud-config", "text/cloud-config",
                                                              "text/x-shellscript"]
    assert any("ssh_pwauth: false" in text.splitlines() for text in ours)
    assert any("PasswordAuthentication no" in text for text in ours)

    # Once ready, its private address is inside its VPC.
    time.sleep(1.2)
    assert "1 ready" in run(values)[1]
    ready_server = admin.get(f"/servers/{server['id']}").json
    assert ready_server["private_ip"] and ipaddress.ip_address(ready_server["private_ip"]) in network


def test_a_workspace_lists_its_servers_with_counts_and_filters_the_server_list(admin, values):
    assert admin.post("/workspaces", {"name": "staging"}).status == 201
    staged = ready(admin, values, dict(SERVER, workspace="staging"))
    pending = admin.post("/servers", dict(SERVER, name="web-2", workspace="staging")).json
    elsewhere = admin.post("/servers", dict(SERVER, name="web-3")).json
    workspace = admin.get("/workspaces/staging")
    assert workspace.status == 200, workspace.body
    body = workspace.json
    assert body["name"] == "staging" and body["default"] is False
    assert body["counts"] == {"pending": 1, "ready": 1, "error": 0, "deleting": 0, "deleted": 0}
    assert [s["id"] for s in body["servers"]] == [staged["id"], pending["id"]]
    assert {s["workspace_id"] for s in body["servers"]} == {body["id"]}
    assert [s["id"] for s in admin.get("/servers?workspace=staging").json] == [staged["id"], pending["id"]]
    assert [s["id"] for s in admin.get("/servers?workspace=default").json] == [elsewhere["id"]]
    assert {w["name"] for w in admin.get("/workspaces").json} == {"staging", "default"}
    assert "workspace" in assert_problem(admin.get("/servers?workspace=nowhere"), 422)["errors"]
    assert_problem(admin.get("/workspaces/nowhere"), 404)
    assert assert_problem(admin.post("/workspaces", {"name": "staging"}), 409)["type"].endswith(
        ":workspace-name-taken")


def test_a_server_in_an_unknown_workspace_is_422_and_nothing_is_made(admin, db, sandbox):
    problem = assert_problem(admin.post("/servers", dict(SERVER, workspace="nowhere")), 422)
    assert "no workspace 'nowhere'" in problem["errors"]["workspace"]
    assert count(db, "servers") == 0 and count(db, "firewalls") == 0 and count(db, "vpcs") == 0
    assert cloud_calls(sandbox, "POST /v2/droplets") == 0


def test_a_second_server_in_the_region_reuses_the_default_vpc_and_firewall(admin, db, sandbox):
    first = admin.post("/servers", SERVER).json
    second = admin.post("/servers", dict(SERVER, name="web-2")).json
    assert second["vpc_id"] == first["vpc_id"] and second["firewall_ids"] == first["firewall_ids"]
    assert cloud_calls(sandbox, "POST /v2/vpcs") == 1 and cloud_calls(sandbox, "POST /v2/firewalls") == 1
    assert len(ours_in_cloud(sandbox, "vpcs")) == 1 and len(ours_in_cloud(sandbox, "firewalls")) == 1
    assert count(db, "vpcs") == 1 and count(db, "firewalls") == 1
    told = [facts(sandbox, s["instance_id"]) for s in (first, second)]
    assert told[0]["vpc_uuid"] == told[1]["vpc_uuid"] and told[0]["firewall_ids"] == told[1]["firewall_ids"]
    # Another region gets its own default VPC (not overlapping), behind the same firewall.
    third = admin.post("/servers", dict(SERVER, name="web-3", region="ams3")).json
    assert third["vpc_id"] != first["vpc_id"] and third["firewall_ids"] == first["firewall_ids"]
    ranges = [ipaddress.ip_network(v["ip_range"]) for v in admin.get("/vpcs").json]
    assert len(ranges) == 2 and not ranges[0].overlaps(ranges[1])


# -- VPCs -----------------------------------------------------------------------------------------------------

def test_a_vpc_is_made_in_the_cloud_at_once(admin, db, sandbox):
    answer = admin.post("/vpcs", {"name": "backend", "region": "nyc3", "ip_range": "10.10.0.0/16",
                                  "description": "databases"})
    assert answer.status == 202, answer.body
    vpc = answer.json
    assert answer.headers["location"] == f"/api/vpcs/{vpc['id']}"
    assert answer.headers["operation-location"] == f"/api/operations/{vpc['operation']['id']}"
    assert (vpc["name"], vpc["region"], vpc["ip_range"], vpc["status"], vpc["default"]) == (
        "backend", "nyc3", "10.10.0.0/16", "ready", False)
    assert vpc["operation"]["kind"] == "vpc.create" and vpc["operation"]["status"] == "succeeded"
    assert vpc["operation"]["target"] == {"type": "vpc", "id": vpc["id"]}
    made = cloud(sandbox, "GET", f"vpcs/{cloud_id(db, 'vpcs', vpc['id'])}").json["vpc"]
    assert vpc["id"] in made["name"] and made["ip_range"] == "10.10.0.0/16" and made["region"] == "nyc3"
    operation = vpc.pop("operation")
    assert admin.get(f"/vpcs/{vpc['id']}").json == vpc
    assert admin.get(f"/operations/{operation['id']}").json["status"] == "succeeded"
    assert [v["id"] for v in admin.get("/vpcs?region=nyc3").json] == [vpc["id"]]
    assert admin.get("/vpcs?region=ams3").json == []


def test_an_overlap_with_your_own_vpc_is_409_naming_it(admin, db, sandbox):
    make_vpc(admin, "backend", "nyc3", "10.10.0.0/16")
    answer = admin.post("/vpcs", {"name": "backend-2", "region": "nyc3", "ip_range": "10.10.128.0/20"})
    problem = assert_problem(answer, 409)
    assert problem["type"].endswith(":vpc-range-overlap")
    assert "backend" in problem["detail"] and "10.10.0.0/16" in problem["detail"]
    assert "backend" in problem["errors"]["ip_range"]
    assert count(db, "vpcs") == 1 and len(ours_in_cloud(sandbox, "vpcs")) == 1


def test_an_overlap_with_another_tenants_vpc_is_409_naming_nothing_of_theirs(admin, register, db, sandbox):
    theirs = make_vpc(admin, "acme-secret-net", "nyc3", "10.10.0.0/16")
    globex = register(tenant="Globex", email="admin@globex.test")
    answer = globex.post("/vpcs", {"name": "mine", "region": "ams3", "ip_range": "10.10.64.0/24"})
    problem = assert_problem(answer, 409)
    assert problem["type"].endswith(":vpc-range-taken")
    body = answer.body.decode()
    for secret in ("acme-secret-net", "10.10.0.0/16", "nyc3", theirs["id"], tenant_of(admin)):
        assert secret not in body
    assert count(db, "vpcs") == 1


# A /24 already there, and new ranges around it: one holding it, the same one, one inside it.
EXISTING = "10.10.4.0/24"
AROUND = {"containing": "10.10.0.0/16", "equal": "10.10.4.0/24", "inside": "10.10.4.128/25"}
OTHER_INSTALLATION = "cloudprovisioner-otherinstall9-vpc-"  # another installation sharing the account


def test_a_range_holding_equal_to_or_inside_your_own_vpc_is_409_naming_it(admin, db, sandbox):
    make_vpc(admin, "backend", "nyc3", EXISTING)
    detail = "overlaps your VPC backend (10.10.4.0/24, nyc3); a tenant's VPCs may not overlap"
    for how, ip_range in AROUND.items():
        problem = assert_problem(admin.post("/vpcs", {"name": "net-2", "region": "ams3", "ip_range": ip_range}), 409)
        assert problem["type"].endswith(":vpc-range-overlap"), how
        assert (problem["detail"], problem["errors"]) == (detail, {"ip_range": detail}), how
    assert count(db, "vpcs") == 1 and cloud_calls(sandbox, "POST /v2/vpcs") == 1


def test_a_range_holding_equal_to_or_inside_another_tenants_vpc_is_409_naming_nothing(admin, register, db,
                                                                                     sandbox):
    theirs = make_vpc(admin, "acme-secret-net", "nyc3", EXISTING)
    globex = register(tenant="Globex", email="admin@globex.test")
    detail = "overlaps a range already in use on this platform; choose another"
    for how, ip_range in AROUND.items():
        answer = globex.post("/vpcs", {"name": "mine", "region": "ams3", "ip_range": ip_range})
        problem = assert_problem(answer, 409)
        assert problem["type"].endswith(":vpc-range-taken"), how
        assert (problem["detail"], problem["errors"]) == (detail, {"ip_range": detail}), how
        for secret in ("acme-secret-net", EXISTING, "nyc3", theirs["id"], tenant_of(admin)):
            assert secret not in answer.body.decode(), (how, secret)
    assert count(db, "vpcs") == 1 and cloud_calls(sandbox, "POST /v2/vpcs") == 1


def test_a_range_holding_equal_to_or_inside_a_vpc_the_account_holds_is_409_once_the_monitor_saw_it(
        admin, db, sandbox, values):
    other = cloud(sandbox, "POST", "vpcs", {"name": OTHER_INSTALLATION + new_id(), "region": "sgp1",
                                            "ip_range": EXISTING})
    assert other.status == 201, other.body
    assert run(values)[0] == 0  # lists the account's VPCs into account_vpcs
    detail = "overlaps a VPC already in the cloud account, made outside this platform; choose another"
    for how, ip_range in AROUND.items():
        answer = admin.post("/vpcs", {"name": "net", "region": "nyc3", "ip_range": ip_range})
        problem = assert_problem(answer, 409)
        assert problem["type"].endswith(":vpc-range-taken"), how
        assert (problem["detail"], problem["errors"]) == (detail, {"ip_range": detail}), how
        for secret in (other.json["vpc"]["name"], EXISTING, "sgp1", other.json["vpc"]["id"]):
            assert secret not in answer.body.decode(), (how, secret)
    assert count(db, "vpcs") == 0 and cloud_calls(sandbox, "POST /v2/vpcs") == 1


@pytest.mark.parametrize("ip_range, words", [
    ("10.0.0.0/15", "must be from /16"),
    ("10.0.0.0/29", "to /28"),
    ("8.8.8.0/24", "must be private (RFC 1918)"),
    ("10.10.0.1/16", "has host bits set; did you mean 10.10.0.0/16?"),
    ("10.10.0.0/33", "is not an IPv4 network"),
    ("fd00::/64", "is not an IPv4 network"),
])
def test_a_bad_vpc_range_is_422(admin, db, sandbox, ip_range, words):
    problem = assert_problem(admin.post("/vpcs", {"name": "net", "region": "nyc3", "ip_range": ip_range}), 422)
    assert words in problem["errors"]["ip_range"]
    assert count(db, "vpcs") == 0 and cloud_calls(sandbox, "POST /v2/vpcs") == 0


def test_vpc_names_starting_with_default_are_kept_for_the_defaults(admin, db):
    problem = assert_problem(admin.post("/vpcs", {"name": "default-nyc3", "region": "nyc3",
                                                  "ip_range": "10.10.0.0/16"}), 422)
    assert "'default-'" in problem["errors"]["name"]
    make_vpc(admin, "backend")
    taken = assert_problem(admin.post("/vpcs", {"name": "backend", "region": "ams3", "ip_range": "10.20.0.0/16"}),
                           409)
    assert taken["type"].endswith(":vpc-name-taken")
    assert count(db, "vpcs") == 1


def test_a_server_needs_a_vpc_of_its_own_tenant_and_region(admin, register, db):
    amsterdam = make_vpc(admin, "amsterdam", "ams3", "10.10.0.0/16")
    problem = assert_problem(admin.post("/servers", dict(SERVER, vpc=amsterdam["id"])), 422)
    assert "the VPC is in ams3" in problem["errors"]["vpc"]
    globex = register(tenant="Globex", email="admin@globex.test")
    foreign = assert_problem(globex.post("/servers", dict(SERVER, region="ams3", vpc=amsterdam["id"])), 422)
    unknown = assert_problem(globex.post("/servers", dict(SERVER, region="ams3", vpc=new_id())), 422)
    assert foreign["errors"]["vpc"] == f"no VPC {amsterdam['id']}"  # just as unknown as a made-up id
    assert unknown["errors"]["vpc"].startswith("no VPC ")
    assert count(db, "servers") == 0


def test_a_vpc_with_a_server_in_it_is_kept_until_the_server_is_gone(admin, db, sandbox, values):
    vpc = make_vpc(admin, "backend", "nyc3", "10.10.0.0/16")
    server = admin.post("/servers", dict(SERVER, vpc=vpc["id"])).json
    told = facts(sandbox, server["instance_id"])
    assert server["vpc_id"] == vpc["id"] and told["vpc_uuid"] == cloud_id(db, "vpcs", vpc["id"])
    problem = assert_problem(admin.delete(f"/vpcs/{vpc['id']}"), 409)
    assert problem["type"].endswith(":vpc-not-empty") and "1 server(s)" in problem["detail"]
    assert admin.delete(f"/servers/{server['id']}").status == 202
    assert_problem(admin.delete(f"/vpcs/{vpc['id']}"), 409)  # deleting is not deleted yet
    assert "1 deleted" in run(values)[1]
    answer = admin.delete(f"/vpcs/{vpc['id']}")
    assert answer.status == 202, answer.body
    assert answer.json["status"] == "deleted"
    assert answer.json["operation"]["kind"] == "vpc.delete" and answer.json["operation"]["status"] == "succeeded"
    assert ours_in_cloud(sandbox, "vpcs") == {}


def test_deleting_an_empty_vpc_removes_it_and_frees_its_name_and_range(admin, db, sandbox):
    vpc = make_vpc(admin, "backend", "nyc3", "10.10.0.0/16")
    made_in_cloud = cloud_id(db, "vpcs", vpc["id"])
    answer = admin.delete(f"/vpcs/{vpc['id']}")
    assert answer.status == 202, answer.body
    assert answer.json["status"] == "deleted"
    stored = row(db, "vpcs", vpc["id"])
    assert stored["status"] == "deleted" and stored["live"] is None
    assert cloud(sandbox, "GET", f"vpcs/{made_in_cloud}").status == 404
    assert_problem(admin.get(f"/vpcs/{vpc['id']}"), 404)
    assert_problem(admin.delete(f"/vpcs/{vpc['id']}"), 404)
    assert admin.get("/vpcs").json == []
    assert operations_of(admin, vpc["id"]) == [("vpc.delete", "succeeded"), ("vpc.create", "succeeded")]
    again = make_vpc(admin, "backend", "nyc3", "10.10.0.0/16")
    assert again["id"] != vpc["id"] and again["status"] == "ready"
    assert list(ours_in_cloud(sandbox, "vpcs")) == [PREFIX["vpcs"] + again["id"]]


# -- firewalls ------------------------------------------------------------------------------------------------

def test_rules_naming_servers_and_tags_become_tenant_scoped_cloud_tags(admin, register, db, sandbox):
    tenant = tenant_of(admin)
    web = admin.post("/servers", dict(SERVER, tags=["web"])).json
    firewall = make_firewall(admin, "database", [
        {"protocol": "tcp", "ports": "5432", "sources": {"servers": [web["id"]], "tags": ["web"]}}])
    assert firewall["status"] == "ready" and firewall["default"] is False
    assert firewall["inbound_rules"] == [{"protocol": "tcp", "ports": "5432",
                                          "sources": {"servers": [web["id"]], "tags": ["web"]}}]
    assert firewall["operation"]["kind"] == "firewall.create" and firewall["operation"]["status"] == "succeeded"
    in_cloud = cloud(sandbox, "GET", f"firewalls/{cloud_id(db, 'firewalls', firewall['id'])}").json["firewall"]
    assert in_cloud["name"] == PREFIX["firewalls"] + firewall["id"]
    [rule] = in_cloud["inbound_rules"]
    assert rule["protocol"] == "tcp" and rule["ports"] == "5432"
    assert rule["sources"] == {"tags": [f"{OURS}:{web['id']}", f"{OURS}:t:{tenant}:web"]}
    assert in_cloud["tags"] == [f"{OURS}:fw:{firewall['id']}"]
    # The server tagged `web` carries the scoped tag; another tenant's `web` server carries its own.
    assert f"{OURS}:t:{tenant}:web" in facts(sandbox, web["instance_id"])["tags"]
    globex = register(tenant="Globex", email="admin@globex.test")
    other = globex.post("/servers", dict(SERVER, tags=["web"])).json
    other_tags = facts(sandbox, other["instance_id"])["tags"]
    assert "web" in other_tags and f"{OURS}:t:{tenant_of(globex)}:web" in other_tags
    assert f"{OURS}:t:{tenant}:web" not in other_tags
    scoped = cloud(sandbox, "GET", f"droplets?tag_name={OURS}:t:{tenant}:web").json["droplets"]
    assert [d["id"] for d in scoped] == [int(web["instance_id"])]


def test_a_server_behind_a_chosen_firewall_is_covered_by_it_alone(admin, db, sandbox):
    firewall = make_firewall(admin)
    server = admin.post("/servers", dict(SERVER, firewalls=[firewall["id"]])).json
    assert server["firewall_ids"] == [firewall["id"]]
    assert facts(sandbox, server["instance_id"])["firewall_ids"] == [cloud_id(db, "firewalls", firewall["id"])]
    assert [f["id"] for f in admin.get("/firewalls").json] == [firewall["id"]]  # no default was needed
    unknown = assert_problem(admin.post("/servers", dict(SERVER, firewalls=[new_id()])), 422)
    assert unknown["errors"]["firewalls"].startswith("no firewall ")


def test_every_port_open_to_the_world_needs_saying_so(admin, db, sandbox):
    rule = {"protocol": "tcp", "ports": "all", "sources": {"addresses": ["0.0.0.0/0"]}}
    problem = assert_problem(admin.post("/firewalls", {"name": "open", "inbound_rules": [HTTPS, rule]}), 422)
    assert "rule 1 opens at least half of the tcp ports" in problem["errors"]["inbound_rules"]
    assert "allow_all_ports_from_anywhere" in problem["errors"]["inbound_rules"]
    whole_range = dict(rule, ports="1-65535")
    assert_problem(admin.post("/firewalls", {"name": "open", "inbound_rules": [whole_range]}), 422)
    assert count(db, "firewalls") == 0
    firewall = make_firewall(admin, "open", [rule], allow_all_ports_from_anywhere=True)
    assert firewall["inbound_rules"] == [rule]
    [in_cloud] = ours_in_cloud(sandbox, "firewalls").values()
    assert in_cloud["inbound_rules"] == [{"protocol": "tcp", "ports": "0", "sources": {"addresses": ["0.0.0.0/0"]}}]


OPEN_EVERY_PORT = ('rule 1 opens at least half of the {} ports to at least half of the internet (IPv4 or IPv6); '
                   'send "allow_all_ports_from_anywhere": true if you mean it')


@pytest.mark.parametrize("protocol, addresses", [
    ("tcp", ["::/0"]),  # the whole IPv6 internet alone, without 0.0.0.0/0
    ("udp", ["::/0"]),
    ("tcp", ["0:0::/0"]),  # spelled otherwise, stored as ::/0
    ("tcp", ["0.0.0.0/0"]),
    ("udp", ["0.0.0.0/0"]),
    ("tcp", ["0.0.0.0/0", "::/0"]),
    ("tcp", ["10.0.0.0/8", "::/0"]),  # one world source among others is enough
], ids=["ipv6-tcp", "ipv6-udp", "ipv6-spelled-long", "ipv4-tcp", "ipv4-udp", "both", "ipv6-among-others"])
def test_every_port_open_to_either_internet_needs_saying_so_on_create_and_patch(admin, db, sandbox, protocol,
                                                                                addresses):
    rule = {"protocol": protocol, "ports": "all", "sources": {"addresses": addresses}}
    problem = assert_problem(admin.post("/firewalls", {"name": "open", "inbound_rules": [HTTPS, rule]}), 422)
    assert problem["errors"] == {"inbound_rules": OPEN_EVERY_PORT.format(protocol)}
    assert count(db, "firewalls") == 0 and cloud_calls(sandbox, "POST /v2/firewalls") == 0
    # A PATCH is held to the same rule, and leaves the firewall as it was.
    firewall = make_firewall(admin, "web")
    problem = assert_problem(admin.patch(f"/firewalls/{firewall['id']}", {"inbound_rules": [HTTPS, rule]}), 422)
    assert problem["errors"] == {"inbound_rules": OPEN_EVERY_PORT.format(protocol)}
    assert admin.get(f"/firewalls/{firewall['id']}").json["inbound_rules"] == [HTTPS]
    assert cloud_calls(sandbox, "PUT /v2/firewalls/{firewall_id}") == 0
    # Said so, it is made as asked.
    opened = make_firewall(admin, "open", [HTTPS, rule], allow_all_ports_from_anywhere=True)
    canonical = ["::/0" if address == "0:0::/0" else address for address in addresses]
    assert opened["inbound_rules"][1] == {"protocol": protocol, "ports": "all", "sources": {"addresses": canonical}}
    in_cloud = ours_in_cloud(sandbox, "firewalls")[PREFIX["firewalls"] + opened["id"]]
    assert in_cloud["inbound_rules"][1] == {"protocol": protocol, "ports": "0",
                                            "sources": {"addresses": canonical}}
    patched = admin.patch(f"/firewalls/{firewall['id']}", {"inbound_rules": [HTTPS, rule],
                                                          "allow_all_ports_from_anywhere": True})
    assert patched.status == 202, patched.body


@pytest.mark.parametrize("rules, said", [
    ([{"protocol": "tcp", "ports": "1-65534", "sources": {"addresses": WORLD}}], "rule 0 opens"),
    ([{"protocol": "tcp", "ports": "all", "sources": {"addresses": ["0.0.0.0/1", "128.0.0.0/1"]}}], "rule 0 opens"),
    ([{"protocol": "tcp", "ports": "all", "sources": {"addresses": ["0.0.0.0/1"]}},
      {"protocol": "tcp", "ports": "all", "sources": {"addresses": ["128.0.0.0/1"]}}], "rules 0, 1 open"),
    ([{"protocol": "tcp", "ports": "1-32767", "sources": {"addresses": WORLD}},
      {"protocol": "tcp", "ports": "32768-65535", "sources": {"addresses": WORLD}}], "rules 0, 1 open"),
    ([{"protocol": "tcp", "ports": "all", "sources": {"addresses": ["::/1"]}}], "rule 0 opens"),
], ids=["all-but-one-port", "world-in-two-halves", "halves-in-two-rules", "ports-in-two-rules", "half-of-ipv6"])
def test_most_ports_to_most_of_the_internet_need_the_flag_however_spelled(admin, db, sandbox, rules, said):
    """Decided on the ports and addresses covered, not on the literal "all" from 0.0.0.0/0."""
    expected = {"inbound_rules": f"{said} at least half of the tcp ports to at least half of the internet (IPv4 or "
                                 'IPv6); send "allow_all_ports_from_anywhere": true if you mean it'}
    assert assert_problem(admin.post("/firewalls", {"name": "wide", "inbound_rules": rules}), 422)["errors"] == expected
    firewall = make_firewall(admin, "web")
    problem = assert_problem(admin.patch(f"/firewalls/{firewall['id']}", {"inbound_rules": rules}), 422)
    assert problem["errors"] == expected
    assert admin.get(f"/firewalls/{firewall['id']}").json["inbound_rules"] == [HTTPS]
    assert cloud_calls(sandbox, "POST /v2/firewalls") == 1
    assert cloud_calls(sandbox, "PUT /v2/firewalls/{firewall_id}") == 0
    assert make_firewall(admin, "wide", rules, allow_all_ports_from_anywhere=True)["inbound_rules"] == rules


def test_every_port_open_to_part_of_either_internet_or_some_ports_to_all_of_it_needs_no_flag(admin):
    for sources in (["10.0.0.0/8"], ["2001:db8::/32"], ["::/2"], ["0.0.0.0/2", "128.0.0.0/3"]):
        rule = {"protocol": "tcp", "ports": "all", "sources": {"addresses": sources}}
        assert admin.post("/firewalls", {"name": "part", "inbound_rules": [rule]}).status == 202, sources
        assert admin.delete(f"/firewalls/{admin.get('/firewalls').json[0]['id']}").status == 202
    wide = [{"protocol": "tcp", "ports": "1-32767", "sources": {"addresses": WORLD}},
            {"protocol": "udp", "ports": "49152-65535", "sources": {"addresses": WORLD}},
            {"protocol": "icmp", "sources": {"addresses": ["::/0"]}}]
    assert admin.post("/firewalls", {"name": "wide", "inbound_rules": wide}).status == 202


class _NoDatabase:
    """A store that fails the test when touched: what is refused is refused before anything is read."""

    def __getattr__(self, name):
        raise AssertionError(f"the database was used ({name})")


@pytest.mark.parametrize("addresses", [["::/0"], ["0.0.0.0/0"], ["0.0.0.0/0", "::/0"], ["::/0", "10.0.0.0/8"]],
                         ids=["ipv6", "ipv4", "both", "ipv6-among-others"])
def test_the_world_open_check_refuses_either_family_before_the_database(addresses):
    """The same rule as above without any service: the fast tier `make mutation` runs."""
    from cloudprovisioner import firewalls
    from cloudprovisioner.context import Context
    from cloudprovisioner.errors import Invalid
    ctx = Context(make_config({"CP_INSTALL_ID": TEST_INSTALL_ID}), db=_NoDatabase())
    for protocol in ("tcp", "udp"):
        rule = {"protocol": protocol, "ports": "all", "sources": {"addresses": addresses}}
        for action, args in ((firewalls.create, (ctx, {"name": "open", "inbound_rules": [HTTPS, rule]})),
                             (firewalls.update, (ctx, new_id(), {"inbound_rules": [HTTPS, rule]}))):
            with pytest.raises(Invalid) as refused:
                action(*args)
            assert refused.value.errors == {"inbound_rules": OPEN_EVERY_PORT.format(protocol)}


@pytest.mark.parametrize("rule, words", [
    ({"protocol": "icmp", "ports": "22", "sources": {"addresses": WORLD}}, "icmp has no ports"),
    ({"protocol": "tcp", "ports": "22", "sources": {"addresses": ["10.0.0.300/24"]}}, "is not an IP address"),
    ({"protocol": "tcp", "ports": "22", "sources": {"addresses": ["10.0.0.1/24"]}},
     "host bits set; did you mean 10.0.0.0/24?"),
    ({"protocol": "tcp", "ports": "0", "sources": {"addresses": WORLD}}, "ports are 1-65535"),
    ({"protocol": "tcp", "ports": "70000", "sources": {"addresses": WORLD}}, "ports are 1-65535"),
    ({"protocol": "tcp", "ports": "5-3", "sources": {"addresses": WORLD}}, "a range goes low-high"),
    ({"protocol": "tcp", "sources": {"addresses": WORLD}}, "tcp needs ports"),
    ({"protocol": "gre", "ports": "22", "sources": {"addresses": WORLD}}, "protocol must be tcp, udp or icmp"),
    ({"protocol": "tcp", "ports": "22", "sources": {}}, "must be an object with addresses"),
    ({"protocol": "tcp", "ports": "22", "sources": {"tags": ["cloudprovisioner:x"]}}, "are reserved"),
    ({"protocol": "tcp", "ports": "22", "sources": {"servers": ["not-an-id"]}}, "servers must be server ids"),
])
def test_a_bad_rule_is_422(admin, db, sandbox, rule, words):
    problem = assert_problem(admin.post("/firewalls", {"name": "bad", "inbound_rules": [rule]}), 422)
    assert words in problem["errors"]["inbound_rules"], problem
    assert count(db, "firewalls") == 0 and cloud_calls(sandbox, "POST /v2/firewalls") == 0


def test_rules_may_name_only_the_tenants_own_servers(admin, register, db):
    globex = register(tenant="Globex", email="admin@globex.test")
    theirs = globex.post("/servers", SERVER).json
    before = count(db, "firewalls")
    for server_id in (new_id(), theirs["id"]):
        rule = {"protocol": "tcp", "ports": "22", "sources": {"servers": [server_id]}}
        problem = assert_problem(admin.post("/firewalls", {"name": "peers", "inbound_rules": [rule]}), 422)
        assert problem["errors"]["inbound_rules"] == f"sources: no server {server_id}"
        outbound = {"protocol": "udp", "ports": "53", "destinations": {"servers": [server_id]}}
        problem = assert_problem(admin.post("/firewalls", {"name": "peers", "inbound_rules": [HTTPS],
                                                           "outbound_rules": [outbound]}), 422)
        assert problem["errors"]["outbound_rules"] == f"destinations: no server {server_id}"
    assert count(db, "firewalls") == before


def test_patch_rewrites_the_cloud_firewall_and_records_an_update(admin, db, sandbox):
    firewall = make_firewall(admin)
    ssh = {"protocol": "tcp", "ports": "22", "sources": {"addresses": ["192.0.2.0/24"]}}
    answer = admin.patch(f"/firewalls/{firewall['id']}", {"inbound_rules": [ssh]})
    assert answer.status == 202, answer.body
    assert answer.json["inbound_rules"] == [ssh] and answer.json["status"] == "ready"
    assert answer.json["operation"]["kind"] == "firewall.update"
    assert answer.json["operation"]["status"] == "succeeded"
    in_cloud = cloud(sandbox, "GET", f"firewalls/{cloud_id(db, 'firewalls', firewall['id'])}").json["firewall"]
    assert in_cloud["inbound_rules"] == [{"protocol": "tcp", "ports": "22", "sources": {"addresses": ["192.0.2.0/24"]}}]
    assert in_cloud["tags"] == [f"{OURS}:fw:{firewall['id']}"]
    assert operations_of(admin, firewall["id"]) == [("firewall.update", "succeeded"),
                                                    ("firewall.create", "succeeded")]
    stored = db.one("SELECT revision, applied_revision FROM firewalls WHERE id = %s", (firewall["id"],))
    assert stored == {"revision": 2, "applied_revision": 2}
    assert cloud_calls(sandbox, "POST /v2/firewalls") == 1  # changed in place, not made again
    renamed = admin.patch(f"/firewalls/{firewall['id']}", {"name": "edge"})
    assert renamed.status == 202 and renamed.json["name"] == "edge" and renamed.json["inbound_rules"] == [ssh]
    make_firewall(admin, "other")
    taken = assert_problem(admin.patch(f"/firewalls/{firewall['id']}", {"name": "other"}), 409)
    assert taken["type"].endswith(":firewall-name-taken")
    bad = assert_problem(admin.patch(f"/firewalls/{firewall['id']}", {"inbound_rules": [dict(ssh, ports="0")]}), 422)
    assert "ports are 1-65535" in bad["errors"]["inbound_rules"]
    assert admin.get(f"/firewalls/{firewall['id']}").json["inbound_rules"] == [ssh]


def test_the_default_firewall_and_one_in_use_cannot_be_deleted(admin, db, sandbox):
    server = admin.post("/servers", SERVER).json
    [default] = server["firewall_ids"]
    problem = assert_problem(admin.delete(f"/firewalls/{default}"), 409)
    assert problem["type"].endswith(":default-firewall")
    used = make_firewall(admin, "used")
    admin.post("/servers", dict(SERVER, name="web-2", firewalls=[used["id"]]))
    problem = assert_problem(admin.delete(f"/firewalls/{used['id']}"), 409)
    assert problem["type"].endswith(":firewall-in-use") and "1 server(s)" in problem["detail"]
    assert {f["status"] for f in admin.get("/firewalls").json} == {"ready"}
    assert len(ours_in_cloud(sandbox, "firewalls")) == 2


def test_deleting_an_unused_firewall_removes_it_from_the_cloud(admin, db, sandbox):
    firewall = make_firewall(admin)
    made_in_cloud = cloud_id(db, "firewalls", firewall["id"])
    answer = admin.delete(f"/firewalls/{firewall['id']}")
    assert answer.status == 202, answer.body
    assert answer.json["status"] == "deleted"
    assert answer.json["operation"]["kind"] == "firewall.delete"
    assert answer.json["operation"]["status"] == "succeeded"
    assert cloud(sandbox, "GET", f"firewalls/{made_in_cloud}").status == 404
    assert row(db, "firewalls", firewall["id"])["status"] == "deleted"
    assert_problem(admin.get(f"/firewalls/{firewall['id']}"), 404)
    assert admin.get("/firewalls").json == []
    assert make_firewall(admin)["status"] == "ready"  # the name is free again


def test_a_firewall_name_is_taken_once(admin, db):
    make_firewall(admin, "web")
    problem = assert_problem(admin.post("/firewalls", {"name": "web", "inbound_rules": [HTTPS]}), 409)
    assert problem["type"].endswith(":firewall-name-taken") and "'web'" in problem["detail"]
    assert count(db, "firewalls") == 1


def test_the_name_default_is_kept_for_the_default_firewall(admin, db):
    problem = assert_problem(admin.post("/firewalls", {"name": "default", "inbound_rules": [HTTPS]}), 422)
    assert "kept for the tenant's default firewall" in problem["errors"]["name"]
    # So the first server can still make the default (a user's `default` made this a 500).
    server = admin.post("/servers", SERVER)
    assert server.status == 202, server.body
    [default] = server.json["firewall_ids"]
    web = make_firewall(admin, "web")
    assert_problem(admin.patch(f"/firewalls/{web['id']}", {"name": "default"}), 422)
    assert admin.patch(f"/firewalls/{default}", {"name": "base"}).json["name"] == "base"
    assert_problem(admin.patch(f"/firewalls/{web['id']}", {"name": "default"}), 422)
    assert admin.patch(f"/firewalls/{default}", {"name": "default"}).json["name"] == "default"
    assert admin.post("/servers", dict(SERVER, name="web-2")).json["firewall_ids"] == [default]
    assert count(db, "firewalls") == 2


# -- the cloud failing: answered 202, finished by the monitor --------------------------------------------------

@pytest.mark.parametrize("table, status", [("firewalls", 500), ("vpcs", 429)])
def test_a_create_the_cloud_fails_is_accepted_and_finished_by_the_monitor(admin, db, sandbox, values, table,
                                                                          status):
    fault(sandbox, status=status, count=1000, method="POST", path_prefix=f"/v2/{table}", retry_after=300)
    body = ({"name": "web", "inbound_rules": [HTTPS]} if table == "firewalls"
            else {"name": "backend", "region": "nyc3", "ip_range": "10.10.0.0/16"})
    answer = impatient(admin, values).post(f"/{table}", body)
    assert answer.status == 202, answer.body
    made = answer.json
    assert made["status"] == "pending" and made["operation"]["status"] == "pending"
    assert cloud_id(db, table, made["id"]) is None and ours_in_cloud(sandbox, table) == {}
    # While the cloud still fails, the monitor's run fails and leaves it pending.
    age(db, table, made["id"])
    assert run(dict(values, CP_MONITOR_CLOUD_BUDGET="1"))[0] == 1
    assert admin.get(f"/{table}/{made['id']}").json["status"] == "pending"
    knob(sandbox, "DELETE", "/_sandbox/faults")
    age(db, table, made["id"])
    status_code, out = run(values)
    assert status_code == 0 and f"1 {table[:-1]}s created" in out, out
    assert admin.get(f"/{table}/{made['id']}").json["status"] == "ready"
    assert admin.get(f"/operations/{made['operation']['id']}").json["status"] == "succeeded"
    assert list(ours_in_cloud(sandbox, table)) == [PREFIX[table] + made["id"]]
    assert run(values)[0] == 0 and list(ours_in_cloud(sandbox, table)) == [PREFIX[table] + made["id"]]


VPC_REFUSED = ("the cloud refused to make this VPC (422), most often because its range overlaps a VPC in the cloud "
               "account that this platform has not seen; choose another ip_range; the operator's log has the "
               "cloud's own answer")


def test_a_create_the_cloud_refuses_is_422_and_the_row_is_error(admin, db, sandbox):
    # The account already holds a range the platform never saw: the cloud itself refuses the overlap.
    outside = cloud(sandbox, "POST", "vpcs", {"name": "made-by-hand", "region": "nyc3", "ip_range": "10.10.0.0/24"})
    assert outside.status == 201, outside.body
    answer = admin.post("/vpcs", {"name": "backend", "region": "nyc3", "ip_range": "10.10.0.0/16"})
    problem = assert_problem(answer, 422)
    assert problem["type"].endswith(":cloud-refused") and problem["detail"] == VPC_REFUSED
    assert "errors" not in problem
    [stored] = db.query("SELECT id, status, status_reason, cloud_id FROM vpcs")
    assert (stored["status"], stored["status_reason"], stored["cloud_id"]) == ("error", VPC_REFUSED, None)
    assert operations_of(admin, stored["id"])[0][0] == "vpc.create"
    operation = admin.get(f"/operations?target={stored['id']}").json[0]
    assert (operation["status"], operation["error"]) == ("failed", VPC_REFUSED)
    assert ours_in_cloud(sandbox, "vpcs") == {}
    # The refused row holds neither its range nor its name: a range next to the cloud's is ours to try
    # (and refused by the cloud alone, not by our own dead row), and the name is free at once.
    again = assert_problem(admin.post("/vpcs", {"name": "backend2", "region": "nyc3", "ip_range": "10.10.0.0/20"}), 422)
    assert again["type"].endswith(":cloud-refused")
    assert make_vpc(admin, "backend", "nyc3", "10.20.0.0/16")["status"] == "ready"
    # The dead row can still be deleted (nothing to remove in the cloud).
    assert admin.delete(f"/vpcs/{stored['id']}").json["status"] == "deleted"


def test_a_cloud_refusal_naming_another_installations_vpc_reaches_only_the_operators_log(admin, db, sandbox, values,
                                                                                        capsys):
    """The account is shared: the cloud's refusal of an overlap names the VPC in the way, its range and region.
    That VPC is another installation's, made since this one's monitor last listed the account, so the
    platform's own check cannot see it and the request reaches the cloud."""
    other = cloud(sandbox, "POST", "vpcs", {"name": OTHER_INSTALLATION + new_id(), "region": "sgp1",
                                            "ip_range": EXISTING})
    assert other.status == 201, other.body
    secrets = (other.json["vpc"]["name"], other.json["vpc"]["id"], EXISTING, "sgp1")
    capsys.readouterr()
    answer = admin.post("/vpcs", {"name": "backend", "region": "nyc3", "ip_range": AROUND["containing"]})
    problem = assert_problem(answer, 422)
    assert problem["type"].endswith(":cloud-refused") and problem["detail"] == VPC_REFUSED
    [stored] = admin.get("/vpcs").json
    shown = [answer.body.decode(), str(stored), str(admin.get(f"/operations?target={stored['id']}").json)]
    for secret in secrets:
        assert not [text for text in shown if secret in text], secret
    assert stored["status"] == "error"
    # The operator has the cloud's own words, with whose VPC it was.
    log = capsys.readouterr().err
    refusal = ("the cloud refused (422): ip_range 10.10.0.0/16 overlaps 10.10.4.0/24 of VPC "
               f"{other.json['vpc']['name']} (sgp1)")
    assert f"cloudprovisioner: vpc {stored['id']} of tenant {tenant_of(admin)}: {refusal}" in log, log
    # Once the monitor has listed the account, the platform refuses the range itself, naming nothing either.
    assert run(values)[0] == 0
    again = admin.post("/vpcs", {"name": "backend", "region": "nyc3", "ip_range": AROUND["containing"]})
    assert assert_problem(again, 409)["type"].endswith(":vpc-range-taken")
    assert not [secret for secret in secrets if secret in again.body.decode()]
    assert cloud_calls(sandbox, "POST /v2/vpcs") == 2


@pytest.mark.parametrize("table", ["firewalls", "vpcs"])
def test_a_create_whose_answer_was_lost_is_adopted_by_name_not_made_twice(admin, db, sandbox, values, table):
    made = make_firewall(admin) if table == "firewalls" else make_vpc(admin)
    original = cloud_id(db, table, made["id"])
    # As if the request died after the cloud made it, before the id was stored.
    db.update(f"UPDATE {table} SET cloud_id = NULL, status = 'pending' WHERE id = %s", (made["id"],))
    if table == "firewalls":
        db.update("UPDATE firewalls SET applied_revision = 0 WHERE id = %s", (made["id"],))
    db.update("UPDATE operations SET status = 'pending' WHERE target_id = %s", (made["id"],))
    age(db, table, made["id"])
    status, out = run(values)
    assert status == 0, out
    assert cloud_id(db, table, made["id"]) == original
    assert admin.get(f"/{table}/{made['id']}").json["status"] == "ready"
    assert operations_of(admin, made["id"]) == [(f"{table[:-1]}.create", "succeeded")]
    assert list(ours_in_cloud(sandbox, table)) == [PREFIX[table] + made["id"]]
    assert cloud_calls(sandbox, f"POST /v2/{table}") == 1


def test_a_fresh_pending_row_is_left_to_its_request(admin, db, sandbox, values):
    made = make_firewall(admin)
    db.update("UPDATE firewalls SET cloud_id = NULL, status = 'pending' WHERE id = %s", (made["id"],))
    run(values)  # its request may still be talking to the cloud: the monitor neither adopts nor creates
    assert cloud_id(db, "firewalls", made["id"]) is None
    assert cloud_calls(sandbox, "POST /v2/firewalls") == 1


def test_rules_changed_behind_our_back_are_put_back(admin, db, sandbox, values):
    firewall = make_firewall(admin, "web", [HTTPS, {"protocol": "udp", "ports": "53", "sources": {"tags": ["dns"]}}])
    firewall_cloud_id = cloud_id(db, "firewalls", firewall["id"])
    wanted = cloud(sandbox, "GET", f"firewalls/{firewall_cloud_id}").json["firewall"]
    drifted = cloud(sandbox, "PUT", f"firewalls/{firewall_cloud_id}", {
        "name": wanted["name"], "tags": wanted["tags"], "outbound_rules": wanted["outbound_rules"],
        "inbound_rules": [{"protocol": "tcp", "ports": "3306", "sources": {"addresses": ["0.0.0.0/0"]}}]})
    assert drifted.status == 200, drifted.body
    status, out = run(values)
    assert status == 0 and "1 firewalls updated" in out, out
    repaired = cloud(sandbox, "GET", f"firewalls/{firewall_cloud_id}").json["firewall"]
    for key in ("name", "inbound_rules", "outbound_rules", "tags"):
        assert repaired[key] == wanted[key], key
    assert "firewalls updated" not in run(values)[1]  # nothing left to do
    # Untagged by hand (servers would lose it): put back as well.
    cloud(sandbox, "PUT", f"firewalls/{firewall_cloud_id}", {k: wanted[k] for k in (
        "name", "inbound_rules", "outbound_rules")})
    assert "1 firewalls updated" in run(values)[1]
    assert cloud(sandbox, "GET", f"firewalls/{firewall_cloud_id}").json["firewall"]["tags"] == wanted["tags"]


def test_a_firewall_that_vanished_from_the_cloud_is_made_again(admin, db, sandbox, values):
    firewall = make_firewall(admin)
    gone = cloud_id(db, "firewalls", firewall["id"])
    assert cloud(sandbox, "DELETE", f"firewalls/{gone}").status == 204
    status, out = run(values)
    assert status == 0 and "1 firewalls created" in out, out
    again = cloud_id(db, "firewalls", firewall["id"])
    assert again and again != gone
    assert list(ours_in_cloud(sandbox, "firewalls")) == [PREFIX["firewalls"] + firewall["id"]]


def test_a_dead_rows_cloud_object_is_deleted_an_unknown_rows_is_held_and_others_left_alone(admin, db, sandbox,
                                                                                           values):
    keep = make_firewall(admin, "keep")
    dead = make_firewall(admin, "dead")
    # A delete that half failed: the row is deleted, the cloud firewall is still there.
    db.update("UPDATE firewalls SET status = 'deleted', live = NULL WHERE id = %s", (dead["id"],))
    # Named like ours for a row this database never had (a restored backup?): held for a person.
    # Someone else's, named like another installation's or by hand: not ours at all.
    spec = {"inbound_rules": [{"protocol": "tcp", "ports": "22", "sources": {"addresses": WORLD}}]}
    stray = PREFIX["firewalls"] + new_id()
    for name in (stray, "hand-made", "cloudprovisioner-firewall-" + new_id(), "cloudprovisioner-other0001-firewall-"
                 + new_id()):
        assert cloud(sandbox, "POST", "firewalls", dict(spec, name=name)).status == 202
    status, out = run(values)
    assert status == 0 and "1 firewalls orphaned" in out and "held firewall" in out, out
    left = {f["name"] for f in cloud_list(sandbox, "firewalls")}
    assert PREFIX["firewalls"] + dead["id"] not in left
    assert {stray, "hand-made", PREFIX["firewalls"] + keep["id"]} <= left
    assert len(left) == 5
    [held] = db.query("SELECT kind, name, verdict FROM orphans")
    assert held == {"kind": "firewall", "name": stray, "verdict": "held"}
    assert run(values) == (0, "")  # reported once; still held, quietly


def test_an_orphan_is_deleted_even_when_no_row_is_live(admin, db, sandbox, values):
    dead = make_firewall(admin, "dead")
    db.update("UPDATE firewalls SET status = 'deleted', live = NULL WHERE id = %s", (dead["id"],))
    status, out = run(values)
    assert status == 0 and "1 firewalls orphaned" in out, out
    assert ours_in_cloud(sandbox, "firewalls") == {}


def test_a_server_whose_vpc_cannot_be_made_yet_is_503_and_not_written(admin, db, sandbox, values):
    fault(sandbox, status=500, count=1000, method="POST", path_prefix="/v2/vpcs")
    answer = impatient(admin, values).post("/servers", SERVER)
    problem = assert_problem(answer, 503)
    assert problem["type"].endswith(":vpc-not-ready") and "default-nyc3" in problem["detail"]
    assert int(answer.headers["retry-after"]) > 0
    assert count(db, "servers") == 0 and cloud_calls(sandbox, "POST /v2/droplets") == 0
    assert admin.get("/operations?kind=server.create").json == []
    [vpc] = admin.get("/vpcs").json
    assert vpc["status"] == "pending"
    # Once the cloud is back and the monitor has made the VPC, the retry goes through.
    knob(sandbox, "DELETE", "/_sandbox/faults")
    age(db, "vpcs", vpc["id"])
    assert "1 vpcs created" in run(values)[1]
    retried = admin.post("/servers", SERVER)
    assert retried.status == 202, retried.body
    assert retried.json["vpc_id"] == vpc["id"]
    assert facts(sandbox, retried.json["instance_id"])["vpc_uuid"] == cloud_id(db, "vpcs", vpc["id"])


def test_a_server_is_not_created_before_its_firewall_is_in_the_cloud(admin, db, sandbox, values):
    """A droplet carrying the tag of a firewall the cloud does not have boots open to the world."""
    fault(sandbox, status=500, count=1000, method="POST", path_prefix="/v2/firewalls")
    answer = impatient(admin, values).post("/servers", SERVER)
    problem = assert_problem(answer, 503)
    assert problem["type"].endswith(":firewall-not-ready") and "default" in problem["detail"]
    assert int(answer.headers["retry-after"]) > 0
    assert count(db, "servers") == 0 and cloud_calls(sandbox, "POST /v2/droplets") == 0
    [firewall] = admin.get("/firewalls").json
    assert firewall["default"] and firewall["status"] == "pending"
    knob(sandbox, "DELETE", "/_sandbox/faults")
    age(db, "firewalls", firewall["id"])
    assert "1 firewalls created" in run(values)[1]
    retried = admin.post("/servers", SERVER)
    assert retried.status == 202, retried.body
    covered = facts(sandbox, retried.json["instance_id"])["firewall_ids"]
    assert covered == [cloud_id(db, "firewalls", firewall["id"])]


def test_a_server_behind_a_firewall_the_cloud_refused_is_409_until_the_firewall_is_fixed(admin, db, sandbox):
    firewall = make_firewall(admin)
    # As if the cloud had refused it (the sandbox cannot be made to refuse what the API lets through).
    assert cloud(sandbox, "DELETE", f"firewalls/{cloud_id(db, 'firewalls', firewall['id'])}").status == 204
    db.update("UPDATE firewalls SET status = 'error', status_reason = 'the cloud refused (422): no', "
              "cloud_id = NULL WHERE id = %s", (firewall["id"],))
    problem = assert_problem(admin.post("/servers", dict(SERVER, firewalls=[firewall["id"]])), 409)
    assert problem["type"].endswith(":firewall-failed") and "the cloud refused (422): no" in problem["detail"]
    assert count(db, "servers") == 0 and cloud_calls(sandbox, "POST /v2/droplets") == 0
    fixed = admin.patch(f"/firewalls/{firewall['id']}", {"inbound_rules": [HTTPS]})
    assert fixed.status == 202 and fixed.json["status"] == "ready"
    server = admin.post("/servers", dict(SERVER, firewalls=[firewall["id"]]))
    assert server.status == 202, server.body
    assert facts(sandbox, server.json["instance_id"])["firewall_ids"] == [cloud_id(db, "firewalls", firewall["id"])]


def test_a_server_refused_for_an_unknown_key_makes_no_network(admin, db, sandbox):
    problem = assert_problem(admin.post("/servers", dict(SERVER, ssh_keys=[new_id()])), 422)
    assert "no SSH key" in problem["errors"]["ssh_keys"]
    assert count(db, "servers") == 0
    assert (count(db, "firewalls"), count(db, "vpcs")) == (0, 0)
    assert ours_in_cloud(sandbox, "vpcs") == {} and ours_in_cloud(sandbox, "firewalls") == {}


def test_an_account_key_removed_behind_our_back_is_registered_again(admin, db, sandbox):
    key = add_key(admin, new_public_key())
    assert admin.post("/servers", dict(SERVER, ssh_keys=[key["id"]])).status == 202
    [account_key] = account_keys(sandbox)
    assert cloud(sandbox, "DELETE", f"account/keys/{account_key['id']}").status == 204
    answer = admin.post("/servers", dict(SERVER, name="web-2", ssh_keys=[key["id"]]))
    assert answer.status == 202, answer.body
    [again] = account_keys(sandbox)
    assert facts(sandbox, answer.json["instance_id"])["ssh_keys"] == [again["id"]]


# -- tenant isolation -----------------------------------------------------------------------------------------

def test_another_tenant_sees_none_of_the_keys_firewalls_vpcs_and_workspaces(admin, register, db):
    key = add_key(admin, new_public_key())
    firewall = make_firewall(admin)
    vpc = make_vpc(admin)
    assert admin.post("/workspaces", {"name": "staging"}).status == 201
    admin.post("/servers", dict(SERVER, workspace="staging"))  # and the default firewall, VPC, workspace
    globex = register(tenant="Globex", email="admin@globex.test")
    for path in ("/ssh-keys", "/firewalls", "/vpcs", "/workspaces"):
        assert globex.get(path).json == [], path
        assert admin.get(path).json != [], path
    for path in (f"/ssh-keys/{key['id']}", f"/firewalls/{firewall['id']}", f"/vpcs/{vpc['id']}",
                 "/workspaces/staging"):
        assert_problem(globex.get(path), 404)
    assert_problem(globex.delete(f"/ssh-keys/{key['id']}"), 404)
    assert_problem(globex.delete(f"/firewalls/{firewall['id']}"), 404)
    assert_problem(globex.patch(f"/firewalls/{firewall['id']}", {"name": "mine"}), 404)
    assert_problem(globex.delete(f"/vpcs/{vpc['id']}"), 404)
    assert_problem(globex.get("/servers?workspace=staging"), 422)
    # Globex's own things, made the same way, are all it lists; same names are no clash across tenants.
    own_key = add_key(globex, key["public_key"])
    own_firewall = make_firewall(globex)
    own_vpc = make_vpc(globex, ip_range="10.30.0.0/16")
    assert globex.post("/workspaces", {"name": "staging"}).status == 201
    assert [k["id"] for k in globex.get("/ssh-keys").json] == [own_key["id"]]
    assert [f["id"] for f in globex.get("/firewalls").json] == [own_firewall["id"]]
    assert [v["id"] for v in globex.get("/vpcs").json] == [own_vpc["id"]]
    assert [w["name"] for w in globex.get("/workspaces").json] == ["staging"]
    assert globex.get("/workspaces/staging").json["servers"] == []
    assert len(admin.get("/workspaces/staging").json["servers"]) == 1
    assert globex.get("/servers?workspace=staging").json == []
    foreign_key = assert_problem(globex.post("/servers", dict(SERVER, ssh_keys=[key["id"]])), 422)
    assert foreign_key["errors"]["ssh_keys"].startswith(f"no SSH key {key['id']}")
    foreign_firewall = assert_problem(globex.post("/servers", dict(SERVER, firewalls=[firewall["id"]])), 422)
    assert foreign_firewall["errors"]["firewalls"] == f"no firewall {firewall['id']}"
    # None of that made Globex see anything of Acme's.
    acme = {key["id"], firewall["id"], vpc["id"]}
    for path in ("/ssh-keys", "/firewalls", "/vpcs"):
        assert not acme & {item["id"] for item in globex.get(path).json}, path



# -- what a JSON body and a form may say ------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    {"name": "x", "inbound_rules": ""},
    {"name": "x", "inbound_rules": [], "outbound_rules": "tcp"},
])
def test_json_lists_are_arrays_not_comma_strings(admin, db, body):
    problem = assert_problem(admin.post("/firewalls", body), 422)
    assert "must be a list" in str(problem["errors"])
    assert_problem(admin.post("/servers", dict(SERVER, tags="web,db")), 422)
    assert count(db, "firewalls") == 0 and count(db, "servers") == 0


def test_a_form_may_say_true_for_the_world_open_flag(admin):
    answer = admin.request("POST", "/firewalls", {"name": "closed", "inbound_rules": "",
                                                  "allow_all_ports_from_anywhere": "true"},
                           "application/x-www-form-urlencoded")
    assert answer.status == 202, answer.body
    assert answer.json["inbound_rules"] == []


def test_a_workspace_is_found_by_its_exact_name_only(admin):
    assert admin.post("/workspaces", {"name": "shop"}).status == 201
    assert admin.get("/workspaces/shop").status == 200
    for other in ("SHOP", "Shop", "shop%20"):
        assert_problem(admin.get(f"/workspaces/{other}"), 404)


def test_a_rule_turned_to_deny_behind_our_back_is_put_back(admin, db, sandbox, values):
    firewall = make_firewall(admin, "web", [HTTPS])
    firewall_cloud_id = cloud_id(db, "firewalls", firewall["id"])
    wanted = cloud(sandbox, "GET", f"firewalls/{firewall_cloud_id}").json["firewall"]
    denied = [{**rule, "action": "deny"} for rule in wanted["inbound_rules"]]
    drifted = cloud(sandbox, "PUT", f"firewalls/{firewall_cloud_id}", {
        "name": wanted["name"], "tags": wanted["tags"], "outbound_rules": wanted["outbound_rules"],
        "inbound_rules": denied})
    assert drifted.status == 200, drifted.body
    status, out = run(values)
    assert status == 0 and "1 firewalls updated" in out, out
    repaired = cloud(sandbox, "GET", f"firewalls/{firewall_cloud_id}").json["firewall"]
    assert repaired["inbound_rules"] == wanted["inbound_rules"]
    # A rule that says allow is what the product asked for: no drift.
    cloud(sandbox, "PUT", f"firewalls/{firewall_cloud_id}", {
        "name": wanted["name"], "tags": wanted["tags"], "outbound_rules": wanted["outbound_rules"],
        "inbound_rules": [{**rule, "action": "allow"} for rule in wanted["inbound_rules"]]})
    assert "firewalls updated" not in run(values)[1]
