"""The sandbox cloud API, run as a real subprocess and driven over loopback.

Three things are checked: its replies match DigitalOcean's own response models
(tests/doschema.py), python-digitalocean 1.17.0 works against it unchanged,
and its knobs (faults, config, stats, bulk, reset, droplet facts, a held public
IPv4 address) do what the other tests rely on.
"""

import base64
import hashlib
import ipaddress
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
REGIONS = ("nyc1", "nyc3", "sfo3", "ams3", "fra1", "lon1", "sgp1", "tor1")
SSH_IN = {"protocol": "tcp", "ports": "22", "sources": {"addresses": ["0.0.0.0/0", "::/0"]}}
ALL_OUT = {"protocol": "tcp", "ports": "0", "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}}


class RunningSandbox:
    """A sandbox subprocess and small HTTP helpers around it."""

    def __init__(self, state_path, *extra_args):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "docloud", "--host", "127.0.0.1",
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

    def create_vpc(self, **body):
        answer = self.api("POST", "vpcs", json={"name": "tenant-a", "region": "nyc3", **body})
        assert answer.status_code == 201, answer.text
        return answer.json()["vpc"]

    def create_firewall(self, **body):
        answer = self.api("POST", "firewalls", json={"name": "fw-1", "inbound_rules": [SSH_IN], **body})
        assert answer.status_code == 202, answer.text
        return answer.json()["firewall"]

    def firewall(self, firewall_id):
        answer = self.api("GET", f"firewalls/{firewall_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()["firewall"]

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


def assert_error(answer, status, error_id, *fragments):
    """An error reply in DigitalOcean's shape whose message says each fragment."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert_model(body, "common/models/error.yml")
    assert body["id"] == error_id and body["request_id"]
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    return body


def private_address(droplet):
    return next(net["ip_address"] for net in droplet["networks"]["v4"] if net["type"] == "private")


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


@pytest.mark.parametrize("body", [{"name": "bad tag"}, {"name": "x" * 256}, {"name": "naïve"}, {}, {"name": 7}])
def test_an_invalid_tag_is_a_400_in_the_tags_bad_request_shape(sandbox, body):
    """POST /v2/tags documents one refusal, 400 with error, root_causes and messages
    (tags_bad_request); id and message stay for clients that read the usual error shape."""
    answer = sandbox.api("POST", "tags", json=body)
    assert answer.status_code == 400, answer.text
    refused = answer.json()
    assert_model(refused, "resources/tags/responses/tags_bad_request.yml")
    assert_model(refused, "common/models/error.yml")
    assert doschema.validate_headers(answer.headers, "resources/tags/responses/tags_bad_request.yml") == []
    says = f"Tag {body.get('name')!r} is invalid: tags may contain letters, numbers, colons, dashes and underscores"
    assert refused["error"].startswith(says) and refused["root_causes"] == [refused["error"]]
    assert (refused["id"], refused["message"], refused["messages"]) == ("bad_request", refused["error"], None)
    assert answer.headers["x-request-id"] == refused["request_id"]
    assert sandbox.api("GET", "tags").json()["meta"]["total"] == 0


def test_a_tag_body_that_is_no_object_is_a_400_in_the_tags_bad_request_shape(sandbox):
    for raw in (b"[]", b"{not json"):
        answer = sandbox.api("POST", "tags", data=raw)
        assert answer.status_code == 400, answer.text
        assert_model(answer.json(), "resources/tags/responses/tags_bad_request.yml")


def test_droplet_deletes_answer_204_with_a_content_type_as_documented(sandbox):
    """The two droplet deletes document their 204 with a content-type (DigitalOcean's
    no_content_with_content_type); pydo reads it."""
    sandbox.knob("POST", "droplets/bulk", {"count": 2, "tags": ["doomed"]})
    droplet_id = sandbox.create()["droplet"]["id"]
    for path, params in ((f"droplets/{droplet_id}", None), ("droplets", {"tag_name": "doomed"})):
        answer = sandbox.api("DELETE", path, params=params)
        assert (answer.status_code, answer.content) == (204, b"")
        assert answer.headers["content-type"] == "application/json; charset=utf-8"
        assert "content-length" not in answer.headers  # a 204 has no body to measure
        errors = doschema.validate_headers(answer.headers, "common/responses/no_content_with_content_type.yml")
        assert errors == [], errors
    assert sandbox.api("GET", "droplets").json()["meta"]["total"] == 0
    # Other 204s document no content-type, and send none.
    sandbox.api("POST", "tags", json={"name": "t"})
    assert "content-type" not in sandbox.api("DELETE", "tags/t").headers


def test_droplets_listed_by_type_gpus_or_the_others(sandbox):
    """`type=gpus` lists GPU droplets only, `type=droplets` (and no type) the others; the
    sandbox has no GPU sizes, so no GPU droplets. DigitalOcean documents `type` as not
    combinable with `tag_name`."""
    ids = sandbox.knob("POST", "droplets/bulk", {"count": 3, "tags": ["fleet"]})["ids"]
    gpus = sandbox.api("GET", "droplets", params={"type": "gpus"}).json()
    assert_model(gpus, "resources/droplets/responses/all_droplets.yml")
    assert (gpus["droplets"], gpus["meta"], gpus["links"]) == ([], {"total": 0}, {})
    for params in ({"type": "droplets"}, {}, {"type": "droplets", "per_page": 2, "page": 2}):
        others = sandbox.api("GET", "droplets", params=params).json()
        assert_model(others, "resources/droplets/responses/all_droplets.yml")
        assert others["meta"]["total"] == 3
    assert [d["id"] for d in others["droplets"]] == ids[2:]
    assert others["links"]["pages"]["first"] == f"{sandbox.url}droplets?page=1&per_page=2&type=droplets"
    assert_error(sandbox.api("GET", "droplets", params={"type": "gpu"}), 422, "unprocessable_entity",
                 "type 'gpu' is invalid: use droplets or gpus.")
    assert_error(sandbox.api("GET", "droplets", params={"type": "gpus", "tag_name": "fleet"}), 422,
                 "unprocessable_entity", "type cannot be combined with tag_name.")
    assert sandbox.api("GET", "droplets", params={"tag_name": "fleet"}).json()["meta"]["total"] == 3


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


# ---------------------------------------------------------------- VPCs


def test_every_region_has_a_default_vpc_that_droplets_land_in(sandbox):
    listed = sandbox.api("GET", "vpcs").json()
    assert_model(listed, "resources/vpcs/responses/all_vpcs.yml")
    assert listed["meta"]["total"] == len(REGIONS)
    vpcs = {vpc["region"]: vpc for vpc in listed["vpcs"]}
    assert sorted(vpcs) == sorted(REGIONS)
    ranges = [ipaddress.ip_network(vpc["ip_range"]) for vpc in vpcs.values()]
    for vpc, net in zip(vpcs.values(), ranges, strict=True):
        assert (vpc["default"], vpc["name"], vpc["urn"]) == (True, f"default-{vpc['region']}",
                                                             f"do:vpc:{vpc['id']}")
        assert net.prefixlen == 20 and net.subnet_of(ipaddress.ip_network("10.16.0.0/12"))
    assert len(set(ranges)) == len(ranges)
    fetched = sandbox.api("GET", f"vpcs/{vpcs['ams3']['id']}/").json()
    assert_model(fetched, "resources/vpcs/responses/existing_vpc.yml")
    assert fetched["vpc"] == vpcs["ams3"]

    sandbox.knob("POST", "config", {"activate_after": 0})
    droplet = sandbox.create(region="ams3", vpc_uuid=None)["droplet"]
    assert droplet["vpc_uuid"] == vpcs["ams3"]["id"]
    assert ipaddress.ip_address(private_address(droplet)) in ipaddress.ip_network(vpcs["ams3"]["ip_range"])


def test_vpc_create_get_update_and_delete(sandbox):
    created = sandbox.api("POST", "vpcs", json={"name": "tenant-a.prod", "region": "fra1",
                                                "description": "Tenant A", "ip_range": "172.16.0.0/24"})
    assert created.status_code == 201
    assert_model(created.json(), "resources/vpcs/responses/existing_vpc.yml")
    vpc = created.json()["vpc"]
    assert (vpc["name"], vpc["region"], vpc["ip_range"], vpc["default"], vpc["description"]) == (
        "tenant-a.prod", "fra1", "172.16.0.0/24", False, "Tenant A")
    automatic = sandbox.create_vpc(name="auto", region="fra1", description=None, ip_range=None)
    assert ipaddress.ip_network(automatic["ip_range"]).subnet_of(ipaddress.ip_network("10.100.0.0/14"))
    assert automatic["ip_range"].endswith("/20") and automatic["description"] == ""
    second = sandbox.create_vpc(name="auto-2", region="nyc1")
    assert second["ip_range"] != automatic["ip_range"]
    assert sandbox.api("GET", "vpcs").json()["meta"]["total"] == len(REGIONS) + 3

    put = sandbox.api("PUT", f"vpcs/{vpc['id']}", json={"name": "tenant-a", "description": "A"})
    assert put.status_code == 200
    assert_model(put.json(), "resources/vpcs/responses/existing_vpc.yml")
    assert (put.json()["vpc"]["name"], put.json()["vpc"]["description"]) == ("tenant-a", "A")
    patched = sandbox.api("PATCH", f"vpcs/{vpc['id']}/", json={"description": "only this"})
    assert_model(patched.json(), "resources/vpcs/responses/existing_vpc.yml")
    assert (patched.json()["vpc"]["name"], patched.json()["vpc"]["description"]) == ("tenant-a", "only this")
    assert sandbox.api("GET", f"vpcs/{vpc['id']}").json() == patched.json()

    assert_error(sandbox.api("PUT", f"vpcs/{vpc['id']}", json={"description": "x"}),
                 422, "unprocessable_entity", "name is required")
    assert_error(sandbox.api("PATCH", f"vpcs/{vpc['id']}", json={"name": "auto"}),
                 422, "unprocessable_entity", "already exists")
    assert_error(sandbox.api("PATCH", f"vpcs/{vpc['id']}", json={"ip_range": "172.16.1.0/24"}),
                 422, "unprocessable_entity", "ip_range of a VPC cannot be changed")
    assert_error(sandbox.api("PATCH", f"vpcs/{vpc['id']}", json={"name": "bad name"}),
                 422, "unprocessable_entity", "invalid")
    default_id = sandbox.api("GET", "vpcs").json()["vpcs"][0]["id"]
    assert_error(sandbox.api("PATCH", f"vpcs/{default_id}", json={"default": False}),
                 422, "unprocessable_entity", "cannot be unset")
    assert sandbox.api("PATCH", f"vpcs/{default_id}", json={"default": True}).status_code == 200

    assert sandbox.api("DELETE", f"vpcs/{vpc['id']}").status_code == 204
    assert_error(sandbox.api("GET", f"vpcs/{vpc['id']}"), 404, "not_found")
    assert_error(sandbox.api("DELETE", f"vpcs/{vpc['id']}"), 404, "not_found")
    assert_error(sandbox.api("PUT", f"vpcs/{vpc['id']}", json={"name": "x"}), 404, "not_found")
    assert_error(sandbox.api("GET", "vpcs/not-a-vpc/members"), 404, "not_found")
    # The freed range can be taken again.
    assert sandbox.create_vpc(name="again", ip_range="172.16.0.0/24")["ip_range"] == "172.16.0.0/24"


@pytest.mark.parametrize(("ip_range", "says"), [
    ("10.0.0.0/15", "/16 (largest) to /28 (smallest)"),
    ("10.10.10.0/29", "/16 (largest) to /28 (smallest)"),
    ("8.8.8.0/24", "RFC 1918"),
    ("100.64.0.0/16", "RFC 1918"),
    ("172.32.0.0/16", "RFC 1918"),
    ("10.10.10.5/24", "not a network address: did you mean 10.10.10.0/24?"),
    ("10.10.10.0", "CIDR"), ("garbage/24", "CIDR"), ("fd00::/64", "CIDR"), (167772160, "CIDR"),
])
def test_bad_vpc_ranges_are_422(sandbox, ip_range, says):
    answer = sandbox.api("POST", "vpcs", json={"name": "bad", "region": "nyc3", "ip_range": ip_range})
    assert_error(answer, 422, "unprocessable_entity", says)
    assert sandbox.api("GET", "vpcs").json()["meta"]["total"] == len(REGIONS)


@pytest.mark.parametrize("body", [
    {"region": "nyc3"}, {"name": "has space", "region": "nyc3"}, {"name": "x" * 256, "region": "nyc3"},
    {"name": "ok"}, {"name": "ok", "region": "mars1"}, {"name": "ok", "region": "nyc3", "description": "d" * 256},
    {"name": "default-nyc3", "region": "nyc3"},
])
def test_bad_vpc_creates_are_422(sandbox, body):
    assert_error(sandbox.api("POST", "vpcs", json=body), 422, "unprocessable_entity")


def test_vpc_ranges_must_not_overlap_any_vpc_in_any_region(sandbox):
    tenant = sandbox.create_vpc(name="tenant-a", region="nyc3", ip_range="172.16.0.0/20")
    same_region = sandbox.api("POST", "vpcs", json={"name": "b", "region": "nyc3", "ip_range": "172.16.8.0/24"})
    assert_error(same_region, 422, "unprocessable_entity", "overlaps 172.16.0.0/20 of VPC tenant-a (nyc3)")
    other_region = sandbox.api("POST", "vpcs", json={"name": "c", "region": "sgp1", "ip_range": "172.16.0.0/16"})
    assert_error(other_region, 422, "unprocessable_entity", "overlaps 172.16.0.0/20")
    default = sandbox.api("POST", "vpcs", json={"name": "d", "region": "tor1", "ip_range": "10.16.0.0/16"})
    assert_error(default, 422, "unprocessable_entity", "of VPC default-")
    assert sandbox.create_vpc(name="e", region="sgp1", ip_range="172.16.16.0/20")["ip_range"] == "172.16.16.0/20"
    # An automatic range skips what is taken.
    taken = sandbox.create_vpc(name="f", region="lon1", ip_range="10.100.0.0/20")
    assert sandbox.create_vpc(name="g", region="lon1")["ip_range"] == "10.100.16.0/20"
    assert tenant["id"] != taken["id"]


def test_vpc_members_and_vpcs_that_cannot_be_deleted(sandbox):
    vpc = sandbox.create_vpc(name="tenant-a", region="sfo3", ip_range="192.168.4.0/24")
    droplet = sandbox.create(name="member-1", region="sfo3", vpc_uuid=vpc["id"])["droplet"]
    elsewhere = sandbox.create(name="elsewhere", region="sfo3")["droplet"]
    members = sandbox.api("GET", f"vpcs/{vpc['id']}/members").json()
    assert_model(members, "resources/vpcs/responses/vpc_members.yml")
    assert members["members"] == [{"urn": f"do:droplet:{droplet['id']}", "name": "member-1",
                                   "created_at": droplet["created_at"]}]
    assert members["meta"]["total"] == 1
    only_droplets = sandbox.api("GET", f"vpcs/{vpc['id']}/members", params={"resource_type": "droplet"})
    assert only_droplets.json()["members"] == members["members"]
    balancers = sandbox.api("GET", f"vpcs/{vpc['id']}/members", params={"resource_type": "load_balancer"})
    assert balancers.json()["members"] == [] and balancers.json()["meta"]["total"] == 0

    assert_error(sandbox.api("DELETE", f"vpcs/{vpc['id']}"), 403, "forbidden", "Cannot delete VPC with members.")
    default = sandbox.api("GET", f"vpcs/{elsewhere['vpc_uuid']}").json()["vpc"]
    assert (default["default"], default["region"]) == (True, "sfo3")
    assert_error(sandbox.api("DELETE", f"vpcs/{default['id']}"), 403, "forbidden",
                 "Cannot delete the default VPC of a region.")
    assert sandbox.api("DELETE", f"droplets/{droplet['id']}").status_code == 204
    assert sandbox.api("GET", f"vpcs/{vpc['id']}/members").json()["members"] == []
    assert sandbox.api("DELETE", f"vpcs/{vpc['id']}").status_code == 204


def test_droplets_in_a_named_vpc_get_addresses_in_its_range(sandbox):
    small = sandbox.create_vpc(name="small", region="fra1", ip_range="172.20.5.16/28")
    net = ipaddress.ip_network(small["ip_range"])
    sandbox.knob("POST", "config", {"activate_after": 0})
    multi = sandbox.api("POST", "droplets", json={
        "names": [f"n-{i}" for i in range(10)], "region": "fra1", "size": "s-1vcpu-1gb",
        "image": "debian-12-x64", "vpc_uuid": small["id"].upper()})
    assert multi.status_code == 202, multi.text
    assert_model(multi.json(), "resources/droplets/responses/droplet_create.yml")
    bulk = sandbox.knob("POST", "droplets/bulk", {"count": 20, "region": "fra1", "vpc_uuid": small["id"]})
    droplet_ids = [d["id"] for d in multi.json()["droplets"]] + bulk["ids"]
    for droplet_id in droplet_ids:
        droplet = sandbox.api("GET", f"droplets/{droplet_id}").json()
        assert_model(droplet, "resources/droplets/responses/existing_droplet.yml")
        assert droplet["droplet"]["vpc_uuid"] == small["id"]
        private = next(n for n in droplet["droplet"]["networks"]["v4"] if n["type"] == "private")
        address = ipaddress.ip_address(private["ip_address"])
        assert address in net and address not in (net.network_address, net.network_address + 1,
                                                   net.broadcast_address)
        assert (private["netmask"], private["gateway"]) == ("255.255.255.240", "172.20.5.17")
    listed = sandbox.api("GET", "droplets", params={"per_page": 13}).json()["droplets"]
    assert len({private_address(d) for d in listed}) == 13  # distinct until a /28's 13 hosts run out

    for vpc_uuid, says in ((small["id"], "is in fra1, not in nyc3"),
                           ("0b9b3c5e-52a4-4b5e-9c59-2d2f2c1f0a11", "does not name a VPC")):
        answer = sandbox.api("POST", "droplets", json={"name": "x", "region": "nyc3", "size": "s-1vcpu-1gb",
                                                       "image": "debian-12-x64", "vpc_uuid": vpc_uuid})
        assert_error(answer, 422, "unprocessable_entity", says)


def test_sdk_creates_renames_and_destroys_a_vpc(sandbox):
    vpc = digitalocean.VPC(token=TOKEN, name="sdk-vpc", region="tor1")
    vpc.create()
    assert vpc.id and vpc.ip_range.startswith("10.10") and vpc.default is False
    assert vpc.id in {v.id for v in digitalocean.Manager(token=TOKEN).get_all_vpcs()}
    vpc.rename("sdk-vpc-2")
    assert digitalocean.Manager(token=TOKEN).get_vpc(vpc.id).name == "sdk-vpc-2"
    assert vpc.destroy() is True
    with pytest.raises(NotFoundError):
        vpc.load()


# ---------------------------------------------------------------- firewalls


def test_firewall_replies_match_the_do_models(sandbox):
    sandbox.api("POST", "tags", json={"name": "web"})
    tagged = sandbox.create(name="tagged", tags=["web"])["droplet"]["id"]
    direct = sandbox.create(name="direct")["droplet"]["id"]
    body = {"name": "web.fw-1", "tags": ["web"], "droplet_ids": [direct],
            "inbound_rules": [SSH_IN, {"protocol": "tcp", "ports": "8000-9000",
                                       "sources": {"tags": ["web"], "droplet_ids": [direct]}},
                              {"protocol": "icmp", "sources": {"addresses": ["192.0.2.7"]}}],
            "outbound_rules": [ALL_OUT, {"protocol": "udp", "ports": "53",
                                         "destinations": {"addresses": ["2001:db8::/32"]}}]}
    created = sandbox.api("POST", "firewalls/", json=body)
    assert created.status_code == 202, created.text
    assert_model(created.json(), "resources/firewalls/responses/create_firewall_response.yml")
    firewall = created.json()["firewall"]
    assert uuid_like(firewall["id"]) and firewall["status"] == "waiting"
    assert (firewall["name"], firewall["tags"], firewall["droplet_ids"]) == ("web.fw-1", ["web"], [tagged, direct])
    assert firewall["pending_changes"] == [{"droplet_id": d, "removing": False, "status": "waiting"}
                                           for d in (tagged, direct)]
    assert firewall["inbound_rules"][2] == {"protocol": "icmp", "ports": "0",
                                            "sources": {"addresses": ["192.0.2.7"]}}
    assert firewall["outbound_rules"] == body["outbound_rules"]

    fetched = sandbox.api("GET", f"firewalls/{firewall['id']}")
    assert_model(fetched.json(), "resources/firewalls/responses/get_firewall_response.yml")
    assert fetched.json()["firewall"] == firewall
    sandbox.knob("POST", "config", {"activate_after": 0})
    active = sandbox.firewall(firewall["id"])
    assert (active["status"], active["pending_changes"]) == ("succeeded", [])
    listed = sandbox.api("GET", "firewalls").json()
    assert_model(listed, "resources/firewalls/responses/list_firewalls_response.yml")
    assert listed["firewalls"] == [active] and listed["meta"]["total"] == 1

    sandbox.knob("POST", "config", {"activate_after": SLOW_ACTIVATION})
    put = sandbox.api("PUT", f"firewalls/{firewall['id']}", json={"name": "renamed", "outbound_rules": [ALL_OUT]})
    assert put.status_code == 200, put.text
    assert_model(put.json(), "resources/firewalls/responses/put_firewall_response.yml")
    replaced = put.json()["firewall"]
    # PUT resets what it leaves out.
    assert (replaced["name"], replaced["status"], replaced["inbound_rules"], replaced["tags"],
            replaced["droplet_ids"]) == ("renamed", "waiting", [], [], [])
    assert replaced["created_at"] == firewall["created_at"]

    assert sandbox.api("DELETE", f"firewalls/{firewall['id']}").status_code == 204
    assert_error(sandbox.api("GET", f"firewalls/{firewall['id']}"), 404, "not_found")
    assert_error(sandbox.api("DELETE", f"firewalls/{firewall['id']}"), 404, "not_found")
    assert_error(sandbox.api("PUT", f"firewalls/{firewall['id']}", json=body), 404, "not_found")
    assert_error(sandbox.api("POST", f"firewalls/{firewall['id']}/tags", json={"tags": ["web"]}), 404, "not_found")


def uuid_like(text):
    return len(text) == 36 and text.count("-") == 4


def test_firewall_droplets_follow_tags_and_assignments(sandbox):
    sandbox.api("POST", "tags", json={"name": "tenant:a"})
    firewall = sandbox.create_firewall(tags=["tenant:a"])
    assert firewall["droplet_ids"] == []
    # A droplet created later with the tag is covered at once.
    first = sandbox.create(name="a-1", tags=["tenant:a"])["droplet"]["id"]
    second = sandbox.knob("POST", "droplets/bulk", {"count": 2, "tags": ["tenant:a"]})["ids"]
    loose = sandbox.create(name="loose")["droplet"]["id"]
    assert sandbox.firewall(firewall["id"])["droplet_ids"] == [first, *second]
    assert sandbox.knob("GET", f"droplets/{first}")["firewall_ids"] == [firewall["id"]]
    assert sandbox.knob("GET", f"droplets/{loose}")["firewall_ids"] == []

    url = f"firewalls/{firewall['id']}"
    assert sandbox.api("POST", f"{url}/droplets", json={"droplet_ids": [loose]}).status_code == 204
    assert sandbox.firewall(firewall["id"])["droplet_ids"] == [first, *second, loose]
    resources = {"resources": [{"resource_id": str(first), "resource_type": "droplet"}]}
    assert sandbox.api("DELETE", "tags/tenant:a/resources", json=resources).status_code == 204
    assert sandbox.api("DELETE", f"droplets/{second[0]}").status_code == 204
    assert sandbox.firewall(firewall["id"])["droplet_ids"] == [second[1], loose]
    assert sandbox.api("DELETE", f"{url}/droplets", json={"droplet_ids": [loose]}).status_code == 204
    assert sandbox.api("DELETE", f"{url}/tags", json={"tags": ["tenant:a"]}).status_code == 204
    untouched = sandbox.firewall(firewall["id"])
    assert (untouched["droplet_ids"], untouched["tags"]) == ([], [])
    assert sandbox.api("POST", f"{url}/tags/", json={"tags": ["tenant:a"]}).status_code == 204
    assert sandbox.firewall(firewall["id"])["droplet_ids"] == [second[1]]
    # Deleting the tag takes it off the firewall.
    assert sandbox.api("DELETE", "tags/tenant:a").status_code == 204
    assert sandbox.firewall(firewall["id"])["tags"] == []

    http_in = {"protocol": "tcp", "ports": "80", "sources": {"addresses": ["0.0.0.0/0"]}}
    rules = {"inbound_rules": [http_in, SSH_IN], "outbound_rules": [ALL_OUT]}
    assert sandbox.api("POST", f"{url}/rules", json=rules).status_code == 204
    changed = sandbox.firewall(firewall["id"])
    assert (changed["inbound_rules"], changed["outbound_rules"]) == ([SSH_IN, http_in], [ALL_OUT])
    assert sandbox.api("DELETE", f"{url}/rules", json={"inbound_rules": [SSH_IN]}).status_code == 204
    assert sandbox.firewall(firewall["id"])["inbound_rules"] == [http_in]
    for path, body, says in ((f"{url}/rules", {}, "At least one"), (f"{url}/droplets", {}, "droplet_ids is required"),
                             (f"{url}/droplets", {"droplet_ids": [1]}, "Droplet 1 does not exist"),
                             (f"{url}/tags", {"tags": ["nope"]}, "Tag 'nope' does not exist")):
        assert_firewall_refused(sandbox.api("POST", path, json=body), says)


@pytest.mark.parametrize(("change", "says"), [
    ({"name": None}, "name is required"), ({"name": "-fw"}, "Firewall name"), ({"name": "a"}, "Firewall name"),
    ({"name": "has space"}, "Firewall name"), ({"inbound_rules": []}, "At least one"),
    ({"inbound_rules": [{**SSH_IN, "protocol": "http"}]}, "protocol 'http' is invalid"),
    ({"inbound_rules": [{**SSH_IN, "ports": "all"}]}, "inbound_rules[0].ports 'all' is invalid"),
    ({"inbound_rules": [{**SSH_IN, "ports": "0-10"}]}, "ports '0-10'"),
    ({"inbound_rules": [{**SSH_IN, "ports": "70000"}]}, "ports '70000'"),
    ({"inbound_rules": [{**SSH_IN, "ports": "22-21"}]}, "ports '22-21'"),
    ({"inbound_rules": [{**SSH_IN, "ports": "22-"}]}, "ports '22-'"),
    ({"inbound_rules": [{**SSH_IN, "ports": 22}]}, "ports 22"),
    ({"inbound_rules": [{"protocol": "udp", "sources": SSH_IN["sources"]}]}, "ports None"),
    ({"inbound_rules": [{**SSH_IN, "protocol": "icmp"}]}, "must be left out for icmp"),
    ({"inbound_rules": [{**SSH_IN, "sources": [SSH_IN["sources"]]}]}, "invalid type for inbound_rules[0].sources"),
    ({"inbound_rules": [{**SSH_IN, "sources": {"addresses": []}}]}, "sources is empty"),
    ({"inbound_rules": [{"protocol": "tcp", "ports": "22"}]}, "invalid type"),
    ({"outbound_rules": [{**SSH_IN}]}, "outbound_rules[0].destinations"),
    ({"inbound_rules": [{**SSH_IN, "sources": {"addresses": ["10.0.0.300"]}}]}, "not an IPv4 or IPv6"),
    ({"inbound_rules": [{**SSH_IN, "sources": {"addresses": [167772160]}}]}, "not an IPv4 or IPv6"),
    ({"inbound_rules": [{**SSH_IN, "sources": {"droplet_ids": ["1"]}}]}, "is not a droplet id"),
    ({"inbound_rules": [{**SSH_IN, "sources": {"tags": ["bad tag"]}}]}, "Tag 'bad tag' is invalid"),
    ({"inbound_rules": [{**SSH_IN, "sources": {"tags": ["ghost"]}}]}, "Tag 'ghost' does not exist"),
    ({"inbound_rules": [{**SSH_IN, "sources": {"load_balancer_uids": ["lb-1"]}}]}, "load balancer 'lb-1'"),
    ({"inbound_rules": [{**SSH_IN, "sources": {"kubernetes_ids": ["k8s-1"]}}]}, "Kubernetes cluster"),
    ({"tags": ["ghost"]}, "Tag 'ghost' does not exist"), ({"tags": "web"}, "tags must be a list"),
    ({"droplet_ids": [12345]}, "Droplet 12345 does not exist"), ({"droplet_ids": [True]}, "droplet_ids must be"),
    ({"inbound_rules": [{**SSH_IN, "action": "drop"}]}, "inbound_rules[0].action 'drop' is invalid: use allow or deny"),
    ({"outbound_rules": [{**ALL_OUT, "action": ["deny"]}]}, "outbound_rules[0].action ['deny'] is invalid"),
])
def test_invalid_firewall_requests_are_400(sandbox, change, says):
    body = {"name": "fw-1", "inbound_rules": [SSH_IN], **change}
    assert_firewall_refused(sandbox.api("POST", "firewalls", json=body), says)
    assert sandbox.api("GET", "firewalls").json()["meta"]["total"] == 0
    firewall = sandbox.create_firewall()
    assert_firewall_refused(sandbox.api("PUT", f"firewalls/{firewall['id']}", json=body), says)
    assert sandbox.firewall(firewall["id"])["inbound_rules"] == [SSH_IN]


def test_a_deny_rule_is_kept_and_never_taken_for_an_allow_rule(sandbox):
    """DigitalOcean's rules carry `action`, allow or deny (allow when left out): a deny rule is
    stored and shown as sent, and adding or removing the allow rule for the same traffic
    leaves it alone."""
    deny_ssh = {**SSH_IN, "action": "deny"}
    allow_web = {"protocol": "tcp", "ports": "443", "sources": {"addresses": ["0.0.0.0/0"]}, "action": "allow"}
    deny_out = {**ALL_OUT, "action": "deny"}
    created = sandbox.api("POST", "firewalls", json={"name": "deny-1", "inbound_rules": [deny_ssh, allow_web],
                                                     "outbound_rules": [deny_out]})
    assert created.status_code == 202, created.text
    assert_model(created.json(), "resources/firewalls/responses/create_firewall_response.yml")
    firewall = created.json()["firewall"]
    assert (firewall["inbound_rules"], firewall["outbound_rules"]) == ([deny_ssh, allow_web], [deny_out])
    assert sandbox.firewall(firewall["id"])["inbound_rules"] == [deny_ssh, allow_web]

    url = f"firewalls/{firewall['id']}/rules"
    # The allow rule for the same traffic is another rule: added beside the deny rule, not merged into it.
    assert sandbox.api("POST", url, json={"inbound_rules": [SSH_IN, deny_ssh]}).status_code == 204
    assert sandbox.firewall(firewall["id"])["inbound_rules"] == [deny_ssh, allow_web, SSH_IN]
    # Saying allow is what leaving it out says: no second copy of either allow rule.
    assert sandbox.api("POST", url, json={"inbound_rules": [{**SSH_IN, "action": "allow"},
                                                            {**allow_web, "action": None}]}).status_code == 204
    assert sandbox.firewall(firewall["id"])["inbound_rules"] == [deny_ssh, allow_web, SSH_IN]
    assert sandbox.api("DELETE", url, json={"inbound_rules": [{**SSH_IN, "action": "allow"}],
                                            "outbound_rules": [ALL_OUT]}).status_code == 204
    kept = sandbox.firewall(firewall["id"])
    assert (kept["inbound_rules"], kept["outbound_rules"]) == ([deny_ssh, allow_web], [deny_out])
    both_denials = {"inbound_rules": [deny_ssh], "outbound_rules": [deny_out]}
    assert sandbox.api("DELETE", url, json=both_denials).status_code == 204
    assert sandbox.firewall(firewall["id"])["inbound_rules"] == [allow_web]

    put = sandbox.api("PUT", f"firewalls/{firewall['id']}", json={"name": "deny-1", "inbound_rules": [deny_ssh]})
    assert put.status_code == 200, put.text
    assert_model(put.json(), "resources/firewalls/responses/put_firewall_response.yml")
    assert put.json()["firewall"]["inbound_rules"] == [deny_ssh]
    listed = sandbox.api("GET", "firewalls").json()
    assert_model(listed, "resources/firewalls/responses/list_firewalls_response.yml")
    assert listed["firewalls"][0]["inbound_rules"] == [deny_ssh]
    assert_firewall_refused(sandbox.api("POST", url, json={"inbound_rules": [{**SSH_IN, "action": "DENY"}]}),
                            "action 'DENY' is invalid")
    assert_firewall_refused(sandbox.api("POST", "firewalls", json=[deny_ssh]), "must be a JSON object")
    assert sandbox.firewall(firewall["id"])["inbound_rules"] == [deny_ssh]


def assert_firewall_refused(answer, says):
    """DigitalOcean documents 400 bad_request (its shared bad_request response), and no 422,
    for every firewall write."""
    body = assert_error(answer, 400, "bad_request", says)
    assert_model(body, "common/responses/bad_request.yml")
    assert doschema.validate_headers(answer.headers, "common/responses/bad_request.yml") == []


def test_sdk_manages_a_firewall(sandbox):
    droplet_id = sandbox.create()["droplet"]["id"]
    rules = {"inbound_rules": [digitalocean.InboundRule(protocol="tcp", ports="22", sources=digitalocean.Sources(
                 addresses=["0.0.0.0/0", "::/0"])),
                               digitalocean.InboundRule(protocol="icmp", sources=digitalocean.Sources(
                 addresses=["0.0.0.0/0"]))],
             "outbound_rules": [digitalocean.OutboundRule(protocol="udp", ports="53",
                                                          destinations=digitalocean.Destinations(
                                                              addresses=["0.0.0.0/0"]))]}
    firewall = digitalocean.Firewall(token=TOKEN, name="sdk-fw", droplet_ids=[droplet_id], **rules)
    firewall.create()
    assert firewall.id and firewall.status == "waiting" and firewall.droplet_ids == [droplet_id]
    assert [r.ports for r in firewall.inbound_rules] == ["22", "0"]
    other = sandbox.create(name="other")["droplet"]["id"]
    firewall.add_droplets([other])
    [listed] = digitalocean.Manager(token=TOKEN).get_all_firewalls()
    assert listed.droplet_ids == [droplet_id, other]
    firewall.remove_droplets([droplet_id])
    assert digitalocean.Manager(token=TOKEN).get_firewall(firewall.id).droplet_ids == [other]
    assert firewall.destroy() is True
    assert digitalocean.Manager(token=TOKEN).get_all_firewalls() == []


# ---------------------------------------------------------------- keys and the droplet knob


def test_keys_by_id_or_fingerprint_and_a_duplicate_is_refused(sandbox):
    line, blob = public_key("dave")
    key = sandbox.api("POST", "account/keys/", json={"name": "dave", "public_key": line}).json()["ssh_key"]
    again = sandbox.api("POST", "account/keys", json={"name": "dave again", "public_key": f"{line} "})
    assert_error(again, 422, "unprocessable_entity", "SSH Key is already in use on your account.")
    renamed = sandbox.api("PUT", f"account/keys/{md5_fingerprint(blob)}", json={"name": "dave's laptop"})
    assert renamed.status_code == 200
    assert_model(renamed.json(), "resources/ssh_keys/responses/sshKeys_existing.yml")
    assert renamed.json()["ssh_key"] == {**key, "name": "dave's laptop"}
    assert sandbox.api("GET", f"account/keys/{key['id']}").json()["ssh_key"]["name"] == "dave's laptop"
    assert_error(sandbox.api("PUT", f"account/keys/{key['id']}", json={"name": ""}), 422, "unprocessable_entity")
    assert sandbox.api("DELETE", f"account/keys/{md5_fingerprint(blob)}").status_code == 204
    assert_error(sandbox.api("GET", f"account/keys/{key['id']}"), 404, "not_found")
    assert_error(sandbox.api("DELETE", f"account/keys/{key['id']}"), 404, "not_found")
    assert sandbox.api("POST", "account/keys", json={"name": "back", "public_key": line}).status_code == 201


def test_droplet_knob_shows_what_do_never_shows_back(sandbox):
    line, blob = public_key("erin")
    key_id = sandbox.api("POST", "account/keys", json={"name": "erin", "public_key": line}).json()["ssh_key"]["id"]
    vpc = sandbox.create_vpc(name="tenant-e", region="lon1", ip_range="172.18.0.0/24")
    sandbox.api("POST", "tags", json={"name": "tenant-e"})
    by_tag = sandbox.create_firewall(name="by-tag", tags=["tenant-e"])
    droplet = sandbox.create(name="web-e", region="lon1", vpc_uuid=vpc["id"], tags=["tenant-e", "row-7"],
                             user_data="#cloud-config\nruncmd: [true]\n", ssh_keys=[md5_fingerprint(blob)])["droplet"]
    direct = sandbox.create_firewall(name="direct", droplet_ids=[droplet["id"]])
    sandbox.create_firewall(name="unrelated")

    facts = sandbox.knob("GET", f"droplets/{droplet['id']}")
    assert facts == {"id": droplet["id"], "name": "web-e", "user_data": "#cloud-config\nruncmd: [true]\n",
                     "ssh_keys": [key_id], "vpc_uuid": vpc["id"], "tags": ["row-7", "tenant-e"],
                     "firewall_ids": [by_tag["id"], direct["id"]]}
    plain = sandbox.create(name="plain")["droplet"]
    assert sandbox.knob("GET", f"droplets/{plain['id']}/") == {
        "id": plain["id"], "name": "plain", "user_data": None, "ssh_keys": [], "vpc_uuid": plain["vpc_uuid"],
        "tags": [], "firewall_ids": []}
    missing = sandbox.http.get(f"{sandbox.root}/_sandbox/droplets/12345", timeout=10)
    assert_error(missing, 404, "not_found")


def test_public_ipv4_knob_holds_the_address_back_until_given_back(sandbox):
    """DigitalOcean can list a droplet `active` before its public address is attached; the
    knob makes the sandbox show that, so the monitor's handling of it can be tested."""
    droplet = sandbox.create(name="late-ip", tags=["late"], ipv6=True)["droplet"]
    sandbox.create(name="on-time", tags=["late"])
    assert sandbox.http.delete(f"{sandbox.root}/_sandbox/droplets/{droplet['id']}/public_ipv4",
                               timeout=10).status_code == 204
    sandbox.knob("POST", "config", {"activate_after": 0})

    held = sandbox.api("GET", f"droplets/{droplet['id']}").json()
    assert_model(held, "resources/droplets/responses/existing_droplet.yml")
    assert held["droplet"]["status"] == "active"
    v4 = held["droplet"]["networks"]["v4"]
    assert [net["type"] for net in v4] == ["private"] and v4[0]["ip_address"].startswith("10.")
    assert held["droplet"]["networks"]["v6"][0]["ip_address"].startswith("2001:db8:")  # only IPv4 is held
    listed = {d["name"]: d for d in sandbox.api("GET", "droplets", params={"tag_name": "late"}).json()["droplets"]}
    assert [net["type"] for net in listed["late-ip"]["networks"]["v4"]] == ["private"]
    assert [net["type"] for net in listed["on-time"]["networks"]["v4"]] == ["public", "private"]

    sandbox.knob("POST", f"droplets/{droplet['id']}/public_ipv4")
    given = sandbox.api("GET", f"droplets/{droplet['id']}").json()["droplet"]["networks"]["v4"]
    assert [net["type"] for net in given] == ["public", "private"]
    assert given[0]["ip_address"].startswith(DOCUMENTATION_NETS) and given[1] == v4[0]

    for method in ("DELETE", "POST"):
        missing = sandbox.http.request(method, f"{sandbox.root}/_sandbox/droplets/12345/public_ipv4", timeout=10)
        assert_error(missing, 404, "not_found")


# ---------------------------------------------------------------- faults


def test_fault_rules_answer_429_and_5xx_and_the_sdk_raises(sandbox):
    manager = digitalocean.Manager(token=TOKEN)
    sandbox.knob("POST", "faults", {"status": 429, "count": 1, "path_prefix": "/v2/droplets",
                                    "method": "GET", "retry_after": 7})
    limited = sandbox.api("GET", "droplets")
    assert limited.status_code == 429
    assert (limited.headers["retry-after"], limited.headers["ratelimit-remaining"]) == ("7", "0")
    assert limited.json()["id"] == "too_many_requests"
    assert_model(limited.json(), "common/models/error.yml")
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


def test_faults_and_stats_cover_vpcs_and_firewalls(sandbox):
    sandbox.knob("POST", "faults", {"status": 503, "path_prefix": "/v2/vpcs", "method": "POST"})
    sandbox.knob("POST", "faults", {"status": 429, "path_prefix": "/v2/firewalls/"})
    assert sandbox.api("POST", "vpcs", json={"name": "v", "region": "nyc3"}).status_code == 503
    vpc = sandbox.create_vpc(name="v")
    limited = sandbox.api("GET", "firewalls/00000000-0000-0000-0000-000000000000")
    assert_error(limited, 429, "too_many_requests")
    firewall = sandbox.create_firewall()
    sandbox.firewall(firewall["id"])
    sandbox.api("GET", f"vpcs/{vpc['id']}/members/")
    assert sandbox.knob("GET", "stats")["requests"] == {
        "GET /v2/firewalls/{firewall_id}": 2, "GET /v2/vpcs/{vpc_id}/members": 1,
        "POST /v2/firewalls": 1, "POST /v2/vpcs": 2}


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
    assert_model(answer.json(), "common/models/error.yml")
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
    for path in ("droplets", "droplets/", "account/keys", "account/keys/", "tags", "tags/",
                 "vpcs", "vpcs/", "firewalls", "firewalls/"):
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
        vpc = first.create_vpc(name="kept", ip_range="172.16.0.0/24")
        firewall = first.create_firewall(tags=["keep"])
    finally:
        assert first.stop() == 0  # SIGTERM is a clean exit

    second = RunningSandbox(state, "--activate-after", "0")
    try:
        again = second.api("GET", f"droplets/{droplet['id']}").json()["droplet"]
        assert (again["name"], again["tags"], again["status"]) == ("web-1", ["keep"], "active")
        assert second.api("GET", f"account/keys/{key['ssh_key']['id']}").status_code == 200
        assert second.api("GET", "tags/keep").status_code == 200
        assert second.api("GET", f"vpcs/{vpc['id']}").json()["vpc"]["name"] == "kept"
        assert second.firewall(firewall["id"])["tags"] == ["keep"]
        assert second.api("GET", "vpcs").json()["meta"]["total"] == len(REGIONS) + 1
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


def test_reset_keeps_only_the_default_vpcs(sandbox):
    defaults = sandbox.api("GET", "vpcs").json()["vpcs"]
    sandbox.api("PATCH", f"vpcs/{defaults[0]['id']}", json={"name": "renamed", "description": "mine"})
    vpc = sandbox.create_vpc(ip_range="172.16.0.0/16")
    sandbox.create(vpc_uuid=vpc["id"])
    sandbox.api("POST", "tags", json={"name": "t"})
    sandbox.create_firewall(tags=["t"])
    sandbox.knob("POST", "reset")
    assert sandbox.api("GET", "vpcs").json()["vpcs"] == defaults
    assert sandbox.api("GET", "firewalls").json() == {"firewalls": [], "links": {}, "meta": {"total": 0}}
    assert sandbox.create_vpc(ip_range="172.16.0.0/16")["id"] != vpc["id"]


def test_only_loopback_addresses_are_accepted():
    answer = subprocess.run([sys.executable, "-m", "docloud", "--host",
                             "0.0.0.0", "--port", "0", "--state", os.devnull],
                            cwd=ROOT, capture_output=True, text=True, timeout=10)
    assert answer.returncode == 2 and "loopback" in answer.stderr
