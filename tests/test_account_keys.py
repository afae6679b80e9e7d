"""SSH keys in the shared cloud account that the platform did not add: used, never removed.

All tenants (and maybe other installations, and the operator by hand) share one cloud account, where a
public key can be there once only. A tenant's key that is already in the account is used as it is; when
the tenant deletes it, the platform removes from the account only a key it added itself, whatever the key
in the account is called. In-process against the real MariaDB and the local cloud API, whose
/v2/account/keys the operator uses directly here.
"""

import pytest

from cloudprovisioner.web.app import make_app
from tests.support import TEST_INSTALL_ID, TEST_TOKEN, Client, http, knob, make_config, new_public_key

SERVER = {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}
CLOUD_AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


def cloud(sandbox, method, path, body=None):
    return http(method, sandbox + path, body, headers=CLOUD_AUTH)


def account_keys(sandbox):
    """The account's keys: {id: name}."""
    answer = cloud(sandbox, "GET", "account/keys?per_page=200")
    assert answer.status == 200, answer.body
    return {key["id"]: key["name"] for key in answer.json["ssh_keys"]}


def added_by_hand(sandbox, public_key, name):
    answer = cloud(sandbox, "POST", "account/keys", {"name": name, "public_key": public_key})
    assert answer.status == 201, answer.body
    return answer.json["ssh_key"]["id"]


def platform_name(fingerprint):
    """How this installation names the keys it adds: `<platform>-<install id>-<md5 hex>`."""
    return f"cloudprovisioner-{TEST_INSTALL_ID}-{fingerprint.replace(':', '')}"


def server_with(client, key, name="web-1"):
    answer = client.post("/servers", dict(SERVER, name=name, ssh_keys=[key["id"]]))
    assert answer.status == 202, answer.body
    return answer.json


def droplet_keys(sandbox, droplet_id):
    return knob(sandbox, "GET", f"/_sandbox/droplets/{droplet_id}").json["ssh_keys"]


@pytest.fixture
def acme(values):
    app = make_app(make_config(dict(values, CP_REGISTRATION="open")))
    answer = Client(app).post("/auth/register", {"tenant_name": "Acme", "name": "Ada", "email": "ada@acme.test",
                                                 "password": "correct horse battery"})
    assert answer.status == 201, answer.body
    return Client(app).login("ada@acme.test", "correct horse battery")


@pytest.mark.parametrize("name", ["ops laptop", "platform", "cloudprovisioner-otherinstall9-{hex}"],
                         ids=["any-name", "the-platforms-own-name", "another-installations-name"])
def test_a_key_the_operator_added_is_used_and_stays_when_the_tenant_deletes_it(acme, db, sandbox, name):
    public_key = new_public_key()
    key = acme.post("/ssh-keys", {"name": "laptop", "public_key": public_key}).json
    name = platform_name(key["fingerprint"]) if name == "platform" else name.format(
        hex=key["fingerprint"].replace(":", ""))
    theirs = added_by_hand(sandbox, public_key, name)
    knob(sandbox, "DELETE", "/_sandbox/stats")
    server = server_with(acme, key)
    assert droplet_keys(sandbox, server["instance_id"]) == [theirs]  # adopted for use
    assert knob(sandbox, "GET", "/_sandbox/stats").json["requests"].get("POST /v2/account/keys") is None
    assert acme.delete(f"/ssh-keys/{key['id']}").status == 204
    assert account_keys(sandbox) == {theirs: name}
    assert db.query("SELECT cloud_key_id FROM account_keys_added") == []


def test_a_key_the_platform_added_goes_with_its_last_holder(acme, db, sandbox):
    key = acme.post("/ssh-keys", {"name": "laptop", "public_key": new_public_key()}).json
    server = server_with(acme, key)
    [ours] = account_keys(sandbox)
    assert account_keys(sandbox) == {ours: platform_name(key["fingerprint"])}
    assert droplet_keys(sandbox, server["instance_id"]) == [ours]
    assert db.query("SELECT cloud_key_id, fingerprint FROM account_keys_added") == [
        {"cloud_key_id": ours, "fingerprint": key["fingerprint"]}]
    assert acme.delete(f"/ssh-keys/{key['id']}").status == 204
    assert account_keys(sandbox) == {}
    assert db.query("SELECT cloud_key_id FROM account_keys_added") == []


def test_after_a_restored_backup_a_key_added_by_hand_since_stays(acme, db, sandbox):
    """The platform added the key, then removed it; the operator added it again by hand under the platform's
    own name; then the database was restored from a backup taken while the platform's key was there."""
    public_key = new_public_key()
    key = acme.post("/ssh-keys", {"name": "laptop", "public_key": public_key}).json
    server_with(acme, key)
    tables = ("ssh_keys", "account_keys_added")
    for table in tables:  # the backup
        db.update(f"CREATE TEMPORARY TABLE backup_{table} AS SELECT * FROM {table}")
    assert acme.delete(f"/ssh-keys/{key['id']}").status == 204
    assert account_keys(sandbox) == {}
    theirs = added_by_hand(sandbox, public_key, platform_name(key["fingerprint"]))
    for table in tables:  # the restore
        db.update(f"DELETE FROM {table}")
        db.update(f"INSERT INTO {table} SELECT * FROM backup_{table}")
    assert db.one("SELECT cloud_key_id FROM ssh_keys")["cloud_key_id"] != theirs
    server = server_with(acme, key, "web-2")
    assert droplet_keys(sandbox, server["instance_id"]) == [theirs]
    assert acme.delete(f"/ssh-keys/{key['id']}").status == 204
    assert account_keys(sandbox) == {theirs: platform_name(key["fingerprint"])}
