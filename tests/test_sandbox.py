"""The sandbox cloud API, run as a real subprocess and driven over loopback.

Three things are checked: its replies match DigitalOcean's own response models
(tests/doschema.py), python-digitalocean 1.17.0 works against it unchanged,
and its knobs (faults, config, stats, bulk, reset) do what the other tests
rely on.
"""

import base64
import hashlib
import os
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import digitalocean
import pytest
import requests
from digitalocean.baseapi import DELETE, BaseAPI, DataReadError, NotFoundError

from tests import doschema

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "sandbox-test-token"
# Long enough that a droplet stays "new" for the whole test unless the test
# shortens it with the config knob.
SLOW_ACTIVATION = 30
DOCUMENTATION_NETS = ("192.0.2.", "198.51.100.", "203.0.113.")


class RunningSandbox:
    """A sandbox subprocess and small HTTP helpers around it."""

    def __init__(self, state_path, *extra_args):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cloudprovisioner.sandbox", "--host", "127.0.0.1",
             "--port", "0", "--state", str(state_path), "--token", TOKEN, *extra_args],
            cwd=ROOT, stdout=subprocess.PIPE, text=True)
        self.url = self._ready_url()
        self.root = self.url.split("/v2/")[0]
        self.http = requests.Session()

    def _ready_url(self):
        ready, _, _ = select.select([self.process.stdout], [], [], 15)
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith("sandbox listening on http://127.0.0.1:"):
            self.process.kill()
            pytest.fail(f"sandbox did not start: {line!r}")
        return line.split()[-1]

    def api(self, method, path, token=TOKEN, **kwargs):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.request(method, self.url + path, headers=headers, timeout=10, **kwargs)

    def knob(self, method, path, body=None):
        answer = self.http.request(method, f"{self.root}/_sandbox/{path}", json=body, timeout=10)
        assert answer.ok, answer.text
        return answer.json() if answer.status_code != 204 else None

    def create(self, **body):
        body = {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb",
                "image": "ubuntu-24-04-x64", **body}
        answer = self.api("POST", "droplets", json=body)
        assert answer.status_code == 202, answer.text
        return answer.json()

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def sandbox_process(tmp_path_factory):
    running = RunningSandbox(tmp_path_factory.mktemp("sandbox") / "state.sqlite3",
                             "--activate-after", str(SLOW_ACTIVATION))
    yield running
    assert running.stop() == 0


@pytest.fixture
def sandbox(sandbox_process, monkeypatch):
    """The shared sandbox, emptied, with python-digitalocean pointed at it."""
    sandbox_process.knob("POST", "reset")
    sandbox_process.knob("POST", "config", {"activate_after": SLOW_ACTIVATION,
                                            "ratelimit_limit": 5000})
    # python-digitalocean reads these when each object is made.
    monkeypatch.setenv("DIGITALOCEAN_END_POINT", sandbox_process.url)
    monkeypatch.setenv("PYTHON_DIGITALOCEAN_REQUEST_TIMEOUT_SEC", "5")
    return sandbox_process


def assert_model(instance, model):
    errors = doschema.validate(instance, model)
    assert errors == [], "\n".join(errors)


def public_key(seed):
    """An ssh-ed25519 public key line, well-formed but made up."""
    key_type = b"ssh-ed25519"
    point = hashlib.sha256(seed.encode()).digest()
    blob = struct.pack(">I", len(key_type)) + key_type + struct.pack(">I", len(point)) + point
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {seed}@example", blob


def md5_fingerprint(blob):
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


# ---------------------------------------------------------------- DO models


def test_droplet_replies_match_the_do_models_before_and_after_activation(sandbox):
    created = sandbox.create(tags=["web", "env:test"], ipv6=True, vpc_uuid=None)
    assert_model(created, "resources/droplets/responses/droplet_create.yml")
    droplet = created["droplet"]
    assert droplet["status"] == "new" and droplet["networks"] == {"v4": [], "v6": []}
    action = created["links"]["actions"][0]
    assert action["rel"] == "create" and action["href"].endswith(f"/v2/actions/{action['id']}")
    fetched = sandbox.api("GET", f"droplets/{droplet['id']}").json()
    assert_model(fetched, "resources/droplets/responses/existing_droplet.yml")

    sandbox.knob("POST", "config", {"activate_after": 0})
    active = sandbox.api("GET", f"droplets/{droplet['id']}").json()
    assert_model(active, "resources/droplets/responses/existing_droplet.yml")
    networks = active["droplet"]["networks"]
    assert active["droplet"]["status"] == "active"
    assert [net["type"] for net in networks["v4"]] == ["public", "private"]
    assert networks["v4"][0]["ip_address"].startswith(DOCUMENTATION_NETS)
    assert networks["v4"][1]["ip_address"].startswith("10.")
    assert networks["v6"][0]["ip_address"].startswith("2001:db8:")
    assert_model(sandbox.create(name="web-2"), "resources/droplets/responses/droplet_create.yml")

    multi = sandbox.api("POST", "droplets", json={"names": ["a-1", "a-2"], "size": "s-1vcpu-1gb",
                                                  "image": 163000003})
    assert multi.status_code == 202
    assert_model(multi.json(), "resources/droplets/responses/droplet_create.yml")
    assert len(multi.json()["droplets"]) == len(multi.json()["links"]["actions"]) == 2
    listed = sandbox.api("GET", "droplets").json()
    assert_model(listed, "resources/droplets/responses/all_droplets.yml")
    assert listed["meta"]["total"] == 4


def test_action_replies_match_the_do_models(sandbox):
    sandbox.knob("POST", "config", {"activate_after": 0.2})
    droplet_id = sandbox.create()["droplet"]["id"]
    time.sleep(0.25)
    answer = sandbox.api("POST", f"droplets/{droplet_id}/actions", json={"type": "power_off"})
    assert answer.status_code == 201
    assert_model(answer.json(), "resources/droplets/responses/droplet_action.yml")
    action = answer.json()["action"]
    assert (action["status"], action["completed_at"]) == ("in-progress", None)
    assert (action["resource_id"], action["region_slug"]) == (droplet_id, "nyc3")
    assert sandbox.api("GET", f"droplets/{droplet_id}").json()["droplet"]["status"] == "off"

    time.sleep(0.25)
    done = sandbox.api("GET", f"actions/{action['id']}").json()
    assert_model(done, "resources/actions/responses/action.yml")
    assert done["action"]["status"] == "completed" and done["action"]["completed_at"]
    same = sandbox.api("GET", f"droplets/{droplet_id}/actions/{action['id']}/").json()
    assert same == done
    sandbox.api("POST", f"droplets/{droplet_id}/actions", json={"type": "power_on"})
    assert sandbox.api("GET", f"droplets/{droplet_id}").json()["droplet"]["status"] == "active"

    mine = sandbox.api("GET", f"droplets/{droplet_id}/actions").json()
    assert_model(mine, "resources/droplets/responses/all_droplet_actions.yml")
    assert [a["type"] for a in mine["actions"]] == ["create", "power_off", "power_on"]
    everything = sandbox.api("GET", "actions").json()
    assert_model(everything, "resources/actions/responses/actions.yml")
    assert everything["meta"]["total"] == 3

    unknown = sandbox.api("POST", f"droplets/{droplet_id}/actions", json={"type": "explode"})
    assert unknown.status_code == 422 and unknown.json()["id"] == "unprocessable_entity"
    missing = sandbox.api("POST", "droplets/1/actions", json={"type": "reboot"})
    assert missing.status_code == 404


def test_catalog_and_account_replies_match_the_do_models(sandbox):
    account = sandbox.api("GET", "account").json()
    assert_model(account, "resources/account/responses/account.yml")
    regions = sandbox.api("GET", "regions").json()
    assert_model(regions, "resources/regions/responses/all_regions.yml")
    assert {r["slug"] for r in regions["regions"]} == {
        "nyc1", "nyc3", "sfo3", "ams3", "fra1", "lon1", "sgp1", "tor1"}
    sizes = sandbox.api("GET", "sizes").json()
    assert_model(sizes, "resources/sizes/responses/all_sizes.yml")
    assert "s-1vcpu-512mb-10gb" in {s["slug"] for s in sizes["sizes"]}

    images = sandbox.api("GET", "images", params={"type": "distribution"}).json()
    assert_model(images, "resources/images/responses/all_images.yml")
    slugs = {image["slug"] for image in images["images"]}
    assert {"ubuntu-24-04-x64", "ubuntu-22-04-x64", "debian-12-x64"} <= slugs
    by_slug = sandbox.api("GET", "images/debian-12-x64").json()
    assert_model(by_slug, "resources/images/responses/existing_image.yml")
    by_id = sandbox.api("GET", f"images/{by_slug['image']['id']}").json()
    assert by_id == by_slug
    assert sandbox.api("GET", "images", params={"type": "application"}).json()["images"] == []
    assert sandbox.api("GET", "images/windows-95").status_code == 404


def test_key_and_tag_replies_match_the_do_models(sandbox):
    line, blob = public_key("alice")
    created = sandbox.api("POST", "account/keys", json={"name": "alice", "public_key": line})
    assert created.status_code == 201
    assert_model(created.json(), "resources/ssh_keys/responses/sshKeys_new.yml")
    key = created.json()["ssh_key"]
    assert key["fingerprint"] == md5_fingerprint(blob)
    for ref in (key["id"], key["fingerprint"]):
        fetched = sandbox.api("GET", f"account/keys/{ref}").json()
        assert_model(fetched, "resources/ssh_keys/responses/sshKeys_existing.yml")
        assert fetched["ssh_key"] == key
    listed = sandbox.api("GET", "account/keys").json()
    assert_model(listed, "resources/ssh_keys/responses/sshKeys_all.yml")

    tag = sandbox.api("POST", "tags", json={"name": "team:blue"})
    assert tag.status_code == 201
    assert_model(tag.json(), "resources/tags/responses/tags_new.yml")
    droplet_id = sandbox.create()["droplet"]["id"]
    resources = {"resources": [{"resource_id": str(droplet_id), "resource_type": "droplet"}]}
    assert sandbox.api("POST", "tags/team:blue/resources", json=resources).status_code == 204
    assert sandbox.api("GET", f"droplets/{droplet_id}").json()["droplet"]["tags"] == ["team:blue"]
    fetched = sandbox.api("GET", "tags/team:blue").json()
    assert_model(fetched, "resources/tags/responses/tags_existing.yml")
    assert fetched["tag"]["resources"]["droplets"]["count"] == 1
    assert_model(sandbox.api("GET", "tags").json(), "resources/tags/responses/tags_all.yml")
    assert sandbox.api("DELETE", "tags/team:blue").status_code == 204
    assert sandbox.api("GET", f"droplets/{droplet_id}").json()["droplet"]["tags"] == []
    assert sandbox.api("GET", "tags/team:blue").status_code == 404


# ---------------------------------------------------------------- python-digitalocean


def test_sdk_creates_loads_and_destroys_a_droplet(sandbox):
    droplet = digitalocean.Droplet(token=TOKEN, name="sdk-1", region="ams3",
                                   image="ubuntu-22-04-x64", size_slug="s-1vcpu-2gb",
                                   ipv6=True, tags=["sdk"], user_data="#cloud-config\n")
    droplet.create()
    assert droplet.id and len(droplet.action_ids) == 1
    loaded = digitalocean.Droplet(token=TOKEN, id=droplet.id).load()
    assert (loaded.status, loaded.ip_address, loaded.tags) == ("new", None, ["sdk"])

    sandbox.knob("POST", "config", {"activate_after": 0})
    loaded = digitalocean.Manager(token=TOKEN).get_droplet(droplet.id)
    assert loaded.status == "active"
    assert loaded.ip_address.startswith(DOCUMENTATION_NETS)
    assert loaded.private_ip_address.startswith("10.")
    assert loaded.ip_v6_address.startswith("2001:db8:")
    action = digitalocean.Action.get_object(api_token=TOKEN, action_id=droplet.action_ids[0])
    assert (action.type, action.status) == ("create", "completed")

    assert loaded.destroy() is True
    with pytest.raises(NotFoundError):
        loaded.load()
    assert sandbox.knob("GET", "stats")["requests"]["DELETE /v2/droplets/{id}"] == 1


def test_sdk_lists_450_tagged_droplets_in_three_calls(sandbox):
    ids = sandbox.knob("POST", "droplets/bulk", {"count": 450, "name_prefix": "fleet",
                                                  "tags": ["fleet"]})["ids"]
    sandbox.knob("POST", "droplets/bulk", {"count": 5, "name_prefix": "other"})
    sandbox.knob("DELETE", "stats")

    droplets = digitalocean.Manager(token=TOKEN).get_all_droplets(tag_name="fleet")

    assert [d.id for d in droplets] == ids
    assert sandbox.knob("GET", "stats") == {"requests": {"GET /v2/droplets": 3}, "total": 3}


def test_page_links_keep_filters_and_follow_do_rules(sandbox):
    sandbox.knob("POST", "droplets/bulk", {"count": 5, "tags": ["t"]})
    pages = [sandbox.api("GET", "droplets", params={"tag_name": "t", "per_page": 2, "page": n})
             .json() for n in (1, 2, 3)]
    assert [len(page["droplets"]) for page in pages] == [2, 2, 1]
    assert [sorted(page["links"]["pages"]) for page in pages] == [
        ["last", "next"], ["first", "last", "next", "prev"], ["first", "prev"]]
    assert pages[0]["links"]["pages"]["next"] == (
        f"{sandbox.url}droplets?page=2&per_page=2&tag_name=t")
    single = sandbox.api("GET", "droplets", params={"per_page": 500}).json()
    assert single["links"] == {} and single["meta"]["total"] == 5


def test_delete_by_tag_needs_the_tag_in_the_url(sandbox):
    sandbox.knob("POST", "droplets/bulk", {"count": 3, "tags": ["doomed"]})
    survivor = sandbox.create(name="survivor")["droplet"]["id"]
    api = BaseAPI(token=TOKEN)
    # python-digitalocean sends DELETE parameters as a JSON body, which the
    # API ignores: the tag must be in the URL.
    with pytest.raises(DataReadError, match="tag_name"):
        api.get_data("droplets/", type=DELETE, params={"tag_name": "doomed"})
    assert sandbox.api("GET", "droplets").json()["meta"]["total"] == 4

    assert api.get_data("droplets/?tag_name=doomed", type=DELETE) is True
    listed = sandbox.api("GET", "droplets").json()
    assert [d["id"] for d in listed["droplets"]] == [survivor]
    assert sandbox.api("DELETE", "droplets", params={"tag_name": "nope"}).status_code == 404


def test_sdk_manages_account_keys(sandbox):
    manager = digitalocean.Manager(token=TOKEN)
    assert manager.get_all_sshkeys() == []
    line, blob = public_key("bob")
    key = digitalocean.SSHKey(token=TOKEN, name="bob", public_key=line)
    key.create()
    assert key.id
    by_fingerprint = digitalocean.SSHKey(token=TOKEN, fingerprint=md5_fingerprint(blob))
    by_fingerprint.load()
    assert (by_fingerprint.id, by_fingerprint.name) == (key.id, "bob")
    assert [k.id for k in manager.get_all_sshkeys()] == [key.id]

    with pytest.raises(DataReadError, match="already in use"):
        digitalocean.SSHKey(token=TOKEN, name="again", public_key=line).create()
    with pytest.raises(DataReadError, match="Key invalid"):
        digitalocean.SSHKey(token=TOKEN, name="bad", public_key="ssh-rsa bm90IGEga2V5").create()

    droplet = digitalocean.Droplet(token=TOKEN, name="keyed", region="fra1", size_slug="s-1vcpu-1gb",
                                   image="debian-12-x64", ssh_keys=[key.id, md5_fingerprint(blob)])
    droplet.create()
    assert droplet.id
    assert key.destroy() is True
    assert manager.get_all_sshkeys() == []
    with pytest.raises(DataReadError, match="not in the account"):
        digitalocean.Droplet(token=TOKEN, name="x", region="fra1", size_slug="s-1vcpu-1gb",
                             image="debian-12-x64", ssh_keys=[key.id]).create()


# ---------------------------------------------------------------- faults


def test_fault_rules_answer_429_and_5xx_and_the_sdk_raises(sandbox):
    manager = digitalocean.Manager(token=TOKEN)
    sandbox.knob("POST", "faults", {"status": 429, "count": 1, "path_prefix": "/v2/droplets",
                                    "method": "GET", "retry_after": 7})
    limited = sandbox.api("GET", "droplets")
    assert limited.status_code == 429
    assert (limited.headers["retry-after"], limited.headers["ratelimit-remaining"]) == ("7", "0")
    assert limited.json()["id"] == "too_many_requests"
    assert_model(limited.json(), "shared/models/error.yml")
    assert sandbox.api("GET", "droplets").status_code == 200  # the rule is used up

    sandbox.knob("POST", "faults", {"status": 429, "path_prefix": "/v2/droplets"})
    with pytest.raises(DataReadError, match="API Rate limit exceeded."):
        manager.get_all_droplets()
    sandbox.knob("POST", "faults", {"status": 500, "count": 2})
    for _ in range(2):
        with pytest.raises(DataReadError, match="Server was unable to give you a response."):
            manager.get_account()
    assert manager.get_account().status == "active"

    sandbox.knob("POST", "faults", {"status": 503, "method": "POST"})
    assert manager.get_all_regions()  # a GET passes a POST-only rule
    assert sandbox.knob("GET", "faults")["faults"][0]["status"] == 503
    sandbox.knob("DELETE", "faults")
    assert sandbox.knob("GET", "faults") == {"faults": []}


def test_delay_fault_trips_the_sdk_timeout(sandbox, monkeypatch):
    monkeypatch.setenv("PYTHON_DIGITALOCEAN_REQUEST_TIMEOUT_SEC", "0.3")
    sandbox.knob("POST", "faults", {"delay": 1.0, "path_prefix": "/v2/account"})
    with pytest.raises(requests.exceptions.Timeout):
        digitalocean.Manager(token=TOKEN).get_account()

    sandbox.knob("POST", "faults", {"delay": 0.2, "path_prefix": "/v2/account"})
    started = time.monotonic()
    assert sandbox.api("GET", "account").status_code == 200  # delay only: then normal
    assert time.monotonic() - started >= 0.2


def test_sdk_pagination_swallows_an_error_on_a_later_page(sandbox):
    """python-digitalocean checks only the first page's status: a 429 on page 2
    ends the listing early, silently. Callers must not trust the count."""
    sandbox.knob("POST", "droplets/bulk", {"count": 450, "tags": ["fleet"]})
    sandbox.knob("POST", "faults", {"status": 429, "skip": 1, "path_prefix": "/v2/droplets",
                                    "method": "GET"})
    droplets = digitalocean.Manager(token=TOKEN).get_all_droplets(tag_name="fleet")
    assert len(droplets) == 200


# ---------------------------------------------------------------- validation, auth, routing


@pytest.mark.parametrize("change", [
    {"name": "bad name"}, {"name": "x" * 256}, {"name": None}, {"region": "mars1"},
    {"size": "s-64vcpu-1tb"}, {"image": "windows-95"}, {"image": 1}, {"tags": ["bad tag"]},
    {"user_data": "x" * (64 * 1024 + 1)}, {"ipv6": "yes"}, {"volumes": ["vol-1"]},
    {"ssh_keys": [12345]}, {"vpc_uuid": "not-a-uuid"}, {"names": [f"n{i}" for i in range(11)]},
])
def test_invalid_create_requests_are_422(sandbox, change):
    body = {"name": "ok", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "debian-12-x64",
            **change}
    answer = sandbox.api("POST", "droplets", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["id"] == "unprocessable_entity" and answer.json()["message"]
    assert_model(answer.json(), "shared/models/error.yml")
    assert sandbox.api("GET", "droplets").json()["meta"]["total"] == 0


def test_create_accepts_the_sdk_nulls_and_64_kib_of_user_data(sandbox):
    sandbox.create(user_data="x" * 64 * 1024, vpc_uuid=None, volumes=None, tags=None,
                   ssh_keys=None, backups=None, region=None)
    with pytest.raises(DataReadError, match="invalid size"):
        digitalocean.Droplet(token=TOKEN, name="sdk", region="nyc3", size_slug="huge",
                             image="debian-12-x64").create()


def test_auth_errors_routes_and_ratelimit_headers(sandbox):
    for token in (None, "wrong"):
        answer = sandbox.api("GET", "account", token=token)
        assert answer.status_code == 401
        assert answer.json()["id"] == "unauthorized"
        assert answer.json()["message"] == "Unable to authenticate you"
    missing = sandbox.api("GET", "droplets/12345")
    assert missing.status_code == 404
    assert missing.json()["message"] == "The resource you were accessing could not be found."
    assert sandbox.api("GET", "no/such/thing").json()["id"] == "not_found"
    assert sandbox.api("PATCH", "droplets").status_code == 405
    for path in ("droplets", "droplets/", "account/keys", "account/keys/", "tags", "tags/"):
        assert sandbox.api("GET", path).status_code == 200, path
    with pytest.raises(NotFoundError):
        digitalocean.Manager(token=TOKEN).get_droplet(12345)

    first = sandbox.api("GET", "regions").headers
    second = sandbox.api("GET", "regions").headers
    assert first["ratelimit-limit"] == "5000"
    assert int(second["ratelimit-remaining"]) == int(first["ratelimit-remaining"]) - 1
    assert int(first["ratelimit-reset"]) >= int(time.time())
    sandbox.knob("POST", "config", {"ratelimit_limit": 250, "ratelimit_remaining": 10})
    assert sandbox.api("GET", "regions").headers["ratelimit-remaining"] == "9"
    assert sandbox.knob("GET", "config") == {"activate_after": SLOW_ACTIVATION,
                                             "ratelimit_limit": 250, "ratelimit_remaining": 9}


def test_stats_count_calls_by_path_template(sandbox):
    droplet_id = sandbox.create()["droplet"]["id"]
    sandbox.api("GET", f"droplets/{droplet_id}/")
    sandbox.api("DELETE", f"droplets/{droplet_id}")
    assert sandbox.knob("GET", "stats") == {"requests": {
        "DELETE /v2/droplets/{id}": 1, "GET /v2/droplets/{id}": 1, "POST /v2/droplets": 1,
    }, "total": 3}
    sandbox.knob("DELETE", "stats")
    assert sandbox.knob("GET", "stats") == {"requests": {}, "total": 0}


# ---------------------------------------------------------------- scale and persistence


def test_ten_thousand_droplets_list_by_tag_quickly(sandbox):
    started = time.monotonic()
    sandbox.knob("POST", "droplets/bulk", {"count": 10000, "tags": ["big"]})
    sandbox.knob("POST", "droplets/bulk", {"count": 100, "tags": ["small"]})
    assert time.monotonic() - started < 5
    started = time.monotonic()
    last = sandbox.api("GET", "droplets", params={"tag_name": "big", "per_page": 200,
                                                  "page": 50}).json()
    assert time.monotonic() - started < 1
    assert (len(last["droplets"]), last["meta"]["total"]) == (200, 10000)
    assert "next" not in last["links"]["pages"]
    assert sandbox.api("DELETE", "droplets", params={"tag_name": "big"}).status_code == 204
    assert sandbox.api("GET", "droplets").json()["meta"]["total"] == 100


def test_state_survives_a_restart(tmp_path):
    state = tmp_path / "state.sqlite3"
    first = RunningSandbox(state, "--activate-after", "0")
    try:
        droplet = first.create(tags=["keep"])["droplet"]
        line, _ = public_key("carol")
        key = first.api("POST", "account/keys", json={"name": "carol", "public_key": line}).json()
    finally:
        assert first.stop() == 0  # SIGTERM is a clean exit

    second = RunningSandbox(state, "--activate-after", "0")
    try:
        again = second.api("GET", f"droplets/{droplet['id']}").json()["droplet"]
        assert (again["name"], again["tags"], again["status"]) == ("web-1", ["keep"], "active")
        assert second.api("GET", f"account/keys/{key['ssh_key']['id']}").status_code == 200
        assert second.api("GET", "tags/keep").status_code == 200
        assert second.create(name="web-2")["droplet"]["id"] > droplet["id"]
    finally:
        second.stop()


def test_reset_forgets_everything_but_ids_are_never_reused(sandbox):
    before = sandbox.create()["droplet"]["id"]
    sandbox.knob("POST", "faults", {"status": 500, "path_prefix": "/v2/tags"})
    sandbox.knob("POST", "reset")
    assert sandbox.api("GET", "droplets").json()["meta"]["total"] == 0
    assert sandbox.knob("GET", "faults") == {"faults": []}
    assert sandbox.knob("GET", "stats")["total"] == 1
    assert sandbox.create()["droplet"]["id"] > before


def test_only_loopback_addresses_are_accepted():
    answer = subprocess.run([sys.executable, "-m", "cloudprovisioner.sandbox", "--host",
                             "0.0.0.0", "--port", "0", "--state", os.devnull],
                            cwd=ROOT, capture_output=True, text=True, timeout=10)
    assert answer.returncode == 2 and "loopback" in answer.stderr
