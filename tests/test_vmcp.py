"""VMCP in-process: configurations over the API, tenant keys, and the responder, with every signature checked
the way the CernVM WebAPI client checks it (tests/vmcpclient.py, written apart from the signing code)."""

import json
import secrets
import subprocess

import pytest

from tests.support import assert_problem, call
from tests.vmcpclient import verify

CONFIG = {"name": "analysis-vm", "secret": "pr0t3ct_this", "memory": 2048, "cpus": 2, "disk": 20000, "flags": 49,
          "userData": "[amiconfig]\nplugins=cernvm\n[cernvm]\nusers=user:users:user\n"}


def salt():
    return secrets.token_urlsafe(48)[:64].replace("_", "-")


def fetch(app, config_id, the_salt, pretty=False, hostid="host-1"):
    """The responder as the extension calls it."""
    query = f"cvm_salt={the_salt}&cvm_hostid={hostid}"
    if pretty:
        return call(app, "GET", f"/{config_id}?{query}", script_name="/vmcp")
    return call(app, "GET", f"/?config={config_id}&{query}", script_name="/cgi-bin/vmcp")


def public_key_of(client):
    return client.get("/vmcp-key").json["public_key_pem"]


# -- configurations -----------------------------------------------------------------------------------------------

def test_a_configuration_is_stored_without_showing_its_secret(admin, db):
    made = admin.post("/vmcp-configs", CONFIG)
    assert made.status == 201, made.body
    body = made.json
    assert "secret" not in body and body["secret_set"] is True
    assert {key: body[key] for key in CONFIG if key != "secret"} == {k: v for k, v in CONFIG.items() if k != "secret"}
    assert body["url"] == f"/vmcp/{body['id']}"
    assert admin.get(f"/vmcp-configs/{body['id']}").json == body
    assert [c["id"] for c in admin.get("/vmcp-configs").json] == [body["id"]]
    assert "pr0t3ct_this" not in json.dumps(db.query("SELECT * FROM audit_log"))


def test_ram_is_taken_as_memory_and_the_reply_says_so(admin):
    made = admin.post("/vmcp-configs", {"name": "old-style", "secret": "x", "ram": 128})
    assert made.status == 201, made.body
    assert made.json["memory"] == 128 and "ram" not in made.json
    assert any("'ram'" in note and "'memory'" in note for note in made.json["notes"])
    assert_problem(admin.post("/vmcp-configs", {"name": "both", "secret": "x", "ram": 1, "memory": 2}), 422)


@pytest.mark.parametrize(("field", "value", "words"), [
    ("memory", 1.5, "fraction"),
    ("cpus", True, "boolean"),
    ("flags", [1], "a list"),
    ("userData", {"a": "b"}, "an object"),
    ("memory", "lots", "whole number"),
    ("cpus", 0, "between"),
    ("executionCap", 101, "between"),
    ("flags", 256, "between"),
    ("apiPort", 70000, "between"),
    ("diskChecksum", "abc", "hex"),
    ("colour", "blue", "unknown field"),
    ("userData", "a\x00b", "NUL"),
    ("diskURL", "https://x/\x00", "NUL"),
])
def test_what_the_client_would_drop_or_misread_is_422(admin, db, field, value, words):
    problem = assert_problem(admin.post("/vmcp-configs", dict(CONFIG, **{field: value})), 422)
    assert words in problem["errors"][field]
    assert db.one("SELECT COUNT(*) AS n FROM vmcp_configs")["n"] == 0


@pytest.mark.parametrize("name", ["has space", "slash/no", "percent%", "dot.no", "é", ""])
def test_names_are_what_the_client_accepts(admin, name):
    assert "name" in assert_problem(admin.post("/vmcp-configs", dict(CONFIG, name=name)), 422)["errors"]


def test_disk_url_only_with_its_checksum(admin):
    url = {"diskURL": "https://example.org/disk.iso"}
    assert "diskURL" in assert_problem(admin.post("/vmcp-configs", dict(CONFIG, **url)), 422)["errors"]
    made = admin.post("/vmcp-configs", dict(CONFIG, **url, diskChecksum="ab" * 32))
    assert made.status == 201, made.body
    # Removing one of the two alone is refused too; both together is fine.
    config_id = made.json["id"]
    assert_problem(admin.patch(f"/vmcp-configs/{config_id}", {"diskChecksum": None}), 422)
    cleared = admin.patch(f"/vmcp-configs/{config_id}", {"diskChecksum": None, "diskURL": None})
    assert cleared.status == 200 and "diskURL" not in cleared.json


def test_patch_changes_and_removes_and_names_stay_unique(admin):
    first = admin.post("/vmcp-configs", CONFIG).json
    admin.post("/vmcp-configs", dict(CONFIG, name="other"))
    changed = admin.patch(f"/vmcp-configs/{first['id']}", {"cpus": 4, "userData": None})
    assert changed.status == 200 and changed.json["cpus"] == 4 and "userData" not in changed.json
    assert_problem(admin.patch(f"/vmcp-configs/{first['id']}", {"name": "other"}), 409)
    assert_problem(admin.post("/vmcp-configs", CONFIG), 409)
    assert_problem(admin.patch(f"/vmcp-configs/{first['id']}", {"secret": None}), 422)
    assert admin.delete(f"/vmcp-configs/{first['id']}").status == 204
    assert_problem(admin.get(f"/vmcp-configs/{first['id']}"), 404)


# -- the responder ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pretty", [False, True], ids=["cgi-bin", "pretty"])
def test_the_responder_signs_with_the_platform_key_as_the_client_verifies(admin, app, pretty):
    config = admin.post("/vmcp-configs", CONFIG).json
    the_salt = salt()
    answer = fetch(app, config["id"], the_salt, pretty=pretty)
    assert answer.status == 200, answer.body
    assert answer.headers["cache-control"] == "no-store"
    document = answer.json
    assert document["secret"] == "pr0t3ct_this" and document["memory"] == 2048
    assert admin.get("/vmcp-key").json["source"] == "platform"
    assert verify(answer.body, the_salt, public_key_of(admin))
    assert not verify(answer.body, salt(), public_key_of(admin))


def test_a_tenant_key_signs_its_configurations_once_set_and_the_platform_key_after_delete(admin, app, register):
    config = admin.post("/vmcp-configs", CONFIG).json
    platform_pem = public_key_of(admin)
    made = admin.post("/vmcp-key", {"generate": True, "bits": 3072})
    assert made.status == 201, made.body
    assert made.json["source"] == "tenant" and made.json["bits"] == 3072 and "private" not in json.dumps(made.json)
    the_salt = salt()
    answer = fetch(app, config["id"], the_salt)
    assert verify(answer.body, the_salt, made.json["public_key_pem"])
    assert not verify(answer.body, the_salt, platform_pem)
    # Another tenant's configurations are still signed by the platform.
    other = register(tenant="Globex", email="admin@globex.test")
    theirs = other.post("/vmcp-configs", CONFIG).json
    assert verify(fetch(app, theirs["id"], the_salt).body, the_salt, platform_pem)
    assert admin.delete("/vmcp-key").status == 204
    assert verify(fetch(app, config["id"], the_salt).body, the_salt, platform_pem)
    assert_problem(admin.delete("/vmcp-key"), 404)


def test_an_uploaded_key_is_stored_encrypted_and_never_shown(admin, app, db, tmp_path):
    pem_path = tmp_path / "domain.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(pem_path), "2048"], check=True,
                   capture_output=True)
    pem = pem_path.read_text()
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----")  # PKCS#1
    made = admin.post("/vmcp-key", {"private_key": pem})
    assert made.status == 201, made.body
    der = subprocess.run(["openssl", "rsa", "-in", str(pem_path), "-pubout", "-outform", "DER"], check=True,
                         capture_output=True).stdout
    import base64
    assert made.json["public_key_base64"] == base64.b64encode(der).decode()
    stored = db.one("SELECT private_key FROM vmcp_keys")["private_key"]
    body = "".join(pem.splitlines()[1:-1])
    assert stored.startswith("v1:") and body[:40] not in stored and "PRIVATE" not in stored
    assert body[:40] not in json.dumps(db.query("SELECT * FROM audit_log"))
    config = admin.post("/vmcp-configs", CONFIG).json
    the_salt = salt()
    assert verify(fetch(app, config["id"], the_salt).body, the_salt, made.json["public_key_pem"])


@pytest.mark.parametrize(("body", "words"), [
    ({"private_key": "not a key"}, "PEM"),
    ({"generate": True, "bits": "1024"}, "between"),
    ({"generate": True, "bits": 3000}, "2048, 3072 or 4096"),
    ({"generate": True, "private_key": "x"}, "either"),
    ({}, "either"),
])
def test_bad_key_requests_are_422(admin, body, words):
    problem = assert_problem(admin.post("/vmcp-key", body), 422)
    assert words in json.dumps(problem)


@pytest.mark.parametrize("query", [
    "config={id}",
    "config={id}&cvm_salt=short",
    "config={id}&cvm_salt=" + "a" * 63 + "_",
    "config={id}&cvm_salt=" + "a" * 65,
    "config={id}&cvm_salt=" + "a" * 64 + "&cvm_hostid=bad%20host",
    "cvm_salt=" + "a" * 64,
])
def test_a_missing_or_malformed_salt_or_config_is_400(admin, app, query):
    config = admin.post("/vmcp-configs", CONFIG).json
    answer = call(app, "GET", "/?" + query.format(id=config["id"]), script_name="/cgi-bin/vmcp")
    assert_problem(answer, 400)


def test_unknown_configurations_are_404_and_only_get_is_served(admin, app):
    assert_problem(fetch(app, "01m8440000000000000000000z", salt()), 404)
    assert_problem(call(app, "GET", "/not-an-id?cvm_salt=" + salt(), script_name="/vmcp"), 404)
    config = admin.post("/vmcp-configs", CONFIG).json
    answer = call(app, "POST", f"/?config={config['id']}&cvm_salt={salt()}", {}, script_name="/cgi-bin/vmcp")
    assert_problem(answer, 405)


def test_a_deleted_configuration_is_no_longer_served(admin, app):
    config = admin.post("/vmcp-configs", CONFIG).json
    admin.delete(f"/vmcp-configs/{config['id']}")
    assert_problem(fetch(app, config["id"], salt()), 404)


def test_awkward_values_verify_as_sent_and_any_change_breaks_the_signature(admin, app):
    awkward = {"name": "odd~vm+1", "secret": "50% of a/b & c=d", "cernvmVersion": "2026.06-1",
               "userData": "[cernvm]\nusers=jörg:users:pässwörd\nmotd=日本 / 100% sure\n\ttabbed line\n",
               "diskURL": "https://example.org/a%20b/disk.iso?x=1&y=%2F~", "diskChecksum": "0f" * 32}
    config = admin.post("/vmcp-configs", awkward)
    assert config.status == 201, config.body
    the_salt, key = salt(), public_key_of(admin)
    answer = fetch(app, config.json["id"], the_salt)
    assert answer.status == 200 and verify(answer.body, the_salt, key)
    received = answer.json
    assert {name: received[name] for name in awkward} == awkward
    for name, changed in (("secret", "50% of a/b & c=e"), ("userData", awkward["userData"].replace("ö", "o", 1)),
                          ("diskURL", awkward["diskURL"].replace("%20", "+")), ("name", "odd~vm+2")):
        tampered = json.dumps(dict(received, **{name: changed})).encode()
        assert not verify(tampered, the_salt, key), name
    assert not verify(json.dumps({k: v for k, v in received.items() if k != "userData"}).encode(), the_salt, key)


def test_the_responder_paths_serve_nothing_but_the_responder(admin, app):
    # The same script serves /api; under the responder's paths the API must not answer.
    for script_name, path in (("/cgi-bin/vmcp", "/me"), ("/vmcp", "/me"), ("/vmcp", "/servers"), ("/vmcp", "/")):
        answer = call(app, "GET", path, headers={"Authorization": f"Bearer {admin.token}"}, script_name=script_name)
        assert_problem(answer, 404)


def test_a_changed_key_secret_is_a_503_not_a_wrong_signature(admin, app, values):
    from cloudprovisioner.web.app import make_app
    from tests.support import make_config
    config = admin.post("/vmcp-configs", CONFIG).json
    assert admin.post("/vmcp-key", {"generate": True}).status == 201
    other = make_app(make_config(dict(values, CP_VMCP_KEY_SECRET="another-secret-" + "y" * 32)))
    problem = assert_problem(fetch(other, config["id"], salt()), 503)
    assert problem["type"].endswith(":misconfigured")
    assert fetch(app, config["id"], salt()).status == 200


# -- signing keys the responder cannot afford ---------------------------------------------------------------------

OVERSIZED_BITS = 4160  # just over the 4,096-bit cap: a real key, quick enough to make for a test


@pytest.fixture(scope="module")
def oversized_pem(tmp_path_factory):
    path = tmp_path_factory.mktemp("oversized") / "key.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{OVERSIZED_BITS}",
                    "-out", str(path)], check=True, capture_output=True)
    return path.read_text()


def test_a_signing_key_over_4096_bits_is_422_and_not_stored(admin, db, oversized_pem):
    problem = assert_problem(admin.post("/vmcp-key", {"private_key": oversized_pem}), 422)
    assert problem["errors"]["private_key"].startswith(
        "This RSA key has 4160 bits, more than the 4096 accepted here: make an RSA key with `openssl genpkey")
    assert db.query("SELECT tenant_id FROM vmcp_keys") == []
    assert admin.get("/vmcp-key").json["source"] == "platform"


def test_a_stored_key_over_the_cap_answers_a_problem_instead_of_signing(admin, app, db, values, oversized_pem):
    """A key stored when larger ones were taken: the responder refuses to spend its signing time on it."""
    from cloudprovisioner import vmcpkeys
    config = admin.post("/vmcp-configs", CONFIG).json
    tenant_id = db.one("SELECT tenant_id FROM vmcp_configs WHERE id = %s", (config["id"],))["tenant_id"]
    sealed = vmcpkeys.encrypt(values["CP_VMCP_KEY_SECRET"], tenant_id, oversized_pem.encode())
    db.update("INSERT INTO vmcp_keys (tenant_id, private_key, public_key_base64, bits, fingerprint, created_at) "
              "VALUES (%s, %s, 'AAAA', %s, 'SHA256:x', UTC_TIMESTAMP(6))", (tenant_id, sealed, OVERSIZED_BITS))
    problem = assert_problem(fetch(app, config["id"], salt()), 409)
    assert problem["type"] == "urn:cloudprovisioner:problem:unusable-signing-key"
    assert "4160 bits, more than the 4096 accepted here" in problem["detail"]
    assert admin.delete("/vmcp-key").status == 204  # what the detail tells the tenant's admin to do
    assert fetch(app, config["id"], salt()).status == 200
