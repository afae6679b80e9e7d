"""The local cloud API driven by pydo alone, DigitalOcean's official Python client.

pydo is generated from DigitalOcean's current OpenAPI spec and nobody here wrote it: what it
sends, and what it makes of each answer, is what a new user of the local cloud API gets. Every
part the product uses and the sandbox claims is walked through it: account keys, the catalog,
droplets (one, many, by tag through `links.pages.next`, `new` -> `active` with addresses),
droplet actions and actions, tags, VPCs, firewalls (deny rules too), deletes, the error
bodies each endpoint documents, and the rate-limit headers. Its answers are checked against
DigitalOcean's models too (tests/doschema.py).

pydo takes the base URL without `/v2` (its paths carry it), and over plain http azure-core
refuses to send a bearer token unless a request says `enforce_https=False`: the client here
says it on every request with a per-call policy (docs/development.md shows both ways). Its
retries are off but where a test is about them, so a 429 or a 5xx is one call.
"""

import base64
import hashlib
import ipaddress
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pydo
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.core.pipeline.policies import SansIOHTTPPolicy

from tests import doschema
from tests.support import TEST_TOKEN, knob, new_public_key, reset_sandbox

# Long enough that a droplet stays "new" for the whole test unless the test activates it.
SLOW_ACTIVATION = 30
REGIONS = {"nyc1", "nyc3", "sfo3", "ams3", "fra1", "lon1", "sgp1", "tor1"}
DOCUMENTATION_NETS = [ipaddress.ip_network(net) for net in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
SSH_IN = {"protocol": "tcp", "ports": "22", "sources": {"addresses": ["0.0.0.0/0", "::/0"]}}
DENY_SSH_IN = {**SSH_IN, "action": "deny"}
ALL_OUT = {"protocol": "tcp", "ports": "0", "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}}
JSON_TYPE = "application/json; charset=utf-8"
WEB = {"size": "s-1vcpu-1gb", "image": "debian-12-x64", "region": "nyc3"}


class PlainHttp(SansIOHTTPPolicy):
    """Lets azure-core send the bearer token over http: each request says enforce_https=False."""

    def on_request(self, request):
        request.context.options["enforce_https"] = False


def endpoint(sandbox_url):
    """pydo's base URL: the local cloud API's without /v2 (pydo's paths start with it)."""
    return sandbox_url.split("/v2/")[0]


def make_client(sandbox_url, token=TEST_TOKEN, **options):
    options = {"retry_total": 0, "connection_timeout": 10, "read_timeout": 30, **options}
    return pydo.Client(token, endpoint=endpoint(sandbox_url), per_call_policies=[PlainHttp()], **options)


@pytest.fixture
def cloud(sandbox):
    """The session's local cloud API, emptied; droplets stay "new" until a test activates them."""
    reset_sandbox(sandbox)
    configure(sandbox, activate_after=SLOW_ACTIVATION)
    return sandbox


@pytest.fixture
def client(cloud):
    return make_client(cloud)


def configure(sandbox_url, **settings):
    answer = knob(sandbox_url, "POST", "/_sandbox/config", settings)
    assert answer.status == 200, answer.body


def fault(sandbox_url, **rule):
    answer = knob(sandbox_url, "POST", "/_sandbox/faults", rule)
    assert answer.status == 201, answer.body


def calls(sandbox_url):
    """The API calls the local cloud API counted, by route."""
    return knob(sandbox_url, "GET", "/_sandbox/stats").json["requests"]


@dataclass
class Answer:
    status: int
    body: object
    headers: dict  # the headers pydo read, as it typed them
    http_headers: object  # every header of the HTTP answer


def answered(operation, *args, **kwargs):
    """The status, body and headers of one pydo call, through its `cls` callback."""
    def keep(pipeline_response, body, headers):
        http = pipeline_response.http_response
        return Answer(http.status_code, body, headers, http.headers)
    return operation(*args, cls=keep, **kwargs)


def refused(operation, *args, **kwargs):
    """The error pydo raises for a status its spec does not document for the call."""
    with pytest.raises(HttpResponseError) as caught:
        operation(*args, **kwargs)
    return caught.value


def assert_model(instance, model):
    errors = doschema.validate(instance, model)
    assert errors == [], "\n".join(errors)


def assert_error_body(body, error_id, *fragments):
    assert_model(body, "common/models/error.yml")
    assert body["id"] == error_id and body["request_id"], body
    for fragment in fragments:
        assert fragment in body["message"], body["message"]


def md5_fingerprint(public_key):
    digest = hashlib.md5(base64.b64decode(public_key.split()[1])).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


def in_documentation_nets(address):
    return any(ipaddress.ip_address(address) in net for net in DOCUMENTATION_NETS)


# ---------------------------------------------------------------- how to point pydo at it


def test_pydo_needs_the_base_url_without_v2_and_enforce_https_off_over_http(cloud):
    strict = pydo.Client(TEST_TOKEN, endpoint=endpoint(cloud), retry_total=0)
    with pytest.raises(ServiceRequestError, match="non-TLS"):
        strict.account.get()
    # Said on the call itself, as azure-core reads it: per request.
    assert strict.account.get(enforce_https=False)["account"]["status"] == "active"
    with_v2 = pydo.Client(TEST_TOKEN, endpoint=endpoint(cloud) + "/v2", per_call_policies=[PlainHttp()], retry_total=0)
    with pytest.raises(ResourceNotFoundError):  # it asked for /v2/v2/account
        with_v2.account.get()
    assert make_client(cloud).account.get()["account"]["email"] == "sandbox@example.com"


# ---------------------------------------------------------------- the catalog and account keys


def test_account_regions_sizes_and_images(client):
    account = client.account.get()
    assert_model(account, "resources/account/responses/account.yml")
    assert (account["account"]["status"], account["account"]["droplet_limit"]) == ("active", 10000)
    regions = client.regions.list(per_page=200)
    assert_model(regions, "resources/regions/responses/all_regions.yml")
    assert {region["slug"] for region in regions["regions"]} == REGIONS
    sizes = client.sizes.list(per_page=200)
    assert_model(sizes, "resources/sizes/responses/all_sizes.yml")
    by_slug = {size["slug"]: size for size in sizes["sizes"]}
    assert (by_slug["s-1vcpu-1gb"]["memory"], by_slug["s-1vcpu-1gb"]["price_monthly"]) == (1024, 6.0)
    assert sizes["meta"]["total"] == 6

    images = client.images.list(type="distribution", per_page=200)
    assert_model(images, "resources/images/responses/all_images.yml")
    assert {"ubuntu-24-04-x64", "ubuntu-22-04-x64", "debian-12-x64"} <= {i["slug"] for i in images["images"]}
    debian = client.images.get("debian-12-x64")
    assert_model(debian, "resources/images/responses/existing_image.yml")
    assert client.images.get(debian["image"]["id"]) == debian
    assert client.images.list(type="application")["images"] == []
    missing = answered(client.images.get, "windows-95")
    assert missing.status == 404
    assert_error_body(missing.body, "not_found")


def test_account_keys_created_listed_got_renamed_and_deleted(client):
    line = new_public_key(comment="pydo@cp")
    created = answered(client.ssh_keys.create, {"name": "pydo", "public_key": line})
    assert created.status == 201
    assert_model(created.body, "resources/ssh_keys/responses/sshKeys_new.yml")
    key = created.body["ssh_key"]
    assert (key["name"], key["public_key"], key["fingerprint"]) == ("pydo", line, md5_fingerprint(line))
    listed = client.ssh_keys.list()
    assert_model(listed, "resources/ssh_keys/responses/sshKeys_all.yml")
    assert (listed["ssh_keys"], listed["meta"]["total"]) == ([key], 1)
    for ref in (key["id"], key["fingerprint"]):
        fetched = client.ssh_keys.get(ref)
        assert_model(fetched, "resources/ssh_keys/responses/sshKeys_existing.yml")
        assert fetched["ssh_key"] == key
    renamed = client.ssh_keys.update(key["fingerprint"], {"name": "pydo laptop"})
    assert renamed["ssh_key"] == {**key, "name": "pydo laptop"}

    again = refused(client.ssh_keys.create, {"name": "again", "public_key": line})
    assert again.status_code == 422
    assert_error_body(again.response.json(), "unprocessable_entity", "SSH Key is already in use on your account.")
    bad = refused(client.ssh_keys.create, {"name": "bad", "public_key": "ssh-ed25519 bm90IGEga2V5"})
    assert_error_body(bad.response.json(), "unprocessable_entity", "Key invalid")

    assert answered(client.ssh_keys.delete, key["id"]).status == 204
    gone = answered(client.ssh_keys.get, key["id"])
    assert gone.status == 404
    assert_error_body(gone.body, "not_found")
    assert client.ssh_keys.list()["ssh_keys"] == []


# ---------------------------------------------------------------- droplets


def test_droplets_created_one_and_many_and_got(client):
    line = new_public_key(comment="pydo@cp")
    key = client.ssh_keys.create({"name": "pydo", "public_key": line})["ssh_key"]
    one = answered(client.droplets.create, {"name": "web-1", **WEB, "tags": ["web"], "ssh_keys": [key["fingerprint"]],
                                            "user_data": "#cloud-config\n"})
    assert one.status == 202
    assert_model(one.body, "resources/droplets/responses/droplet_create.yml")
    droplet = one.body["droplet"]
    assert (droplet["name"], droplet["status"], droplet["tags"]) == ("web-1", "new", ["web"])
    assert droplet["networks"] == {"v4": [], "v6": []}
    [action] = one.body["links"]["actions"]
    assert action["rel"] == "create" and action["href"].endswith(f"/v2/actions/{action['id']}")

    many = client.droplets.create({"names": ["web-2", "web-3"], **WEB, "tags": ["web"]})
    assert_model(many, "resources/droplets/responses/droplet_create.yml")
    assert [d["name"] for d in many["droplets"]] == ["web-2", "web-3"]
    assert len(many["links"]["actions"]) == 2
    fetched = client.droplets.get(droplet["id"])
    assert_model(fetched, "resources/droplets/responses/existing_droplet.yml")
    assert fetched["droplet"] == droplet
    assert client.droplets.list()["meta"]["total"] == 3

    invalid = refused(client.droplets.create, {"name": "bad name", **WEB})
    assert invalid.status_code == 422
    assert_error_body(invalid.response.json(), "unprocessable_entity", "Name 'bad name' is invalid")
    missing = answered(client.droplets.get, 1)
    assert missing.status == 404
    assert_error_body(missing.body, "not_found")


def every_page(client, **query):
    """Each page of a droplet listing, from the first through `links.pages.next` to the last."""
    pages = [client.droplets.list(**query)]
    while "next" in pages[-1]["links"].get("pages", {}):
        link = urlsplit(pages[-1]["links"]["pages"]["next"])
        assert link.path == "/v2/droplets"
        params = {name: values[0] for name, values in parse_qs(link.query).items()}
        pages.append(client.droplets.list(page=int(params.pop("page")), per_page=int(params.pop("per_page")),
                                          **params))
    return pages


def test_droplets_listed_by_tag_page_by_page_through_links_next(client, cloud):
    made = client.droplets.create({"names": [f"web-{n}" for n in range(1, 6)], **WEB, "tags": ["web"]})
    client.droplets.create({"name": "other", **WEB})
    pages = every_page(client, tag_name="web", per_page=2)
    assert [len(page["droplets"]) for page in pages] == [2, 2, 1]
    assert [page["meta"]["total"] for page in pages] == [5, 5, 5]
    for page in pages:
        assert_model(page, "resources/droplets/responses/all_droplets.yml")
    assert [d["id"] for page in pages for d in page["droplets"]] == [d["id"] for d in made["droplets"]]
    assert [sorted(page["links"]["pages"]) for page in pages] == [
        ["last", "next"], ["first", "last", "next", "prev"], ["first", "prev"]]

    fleet = knob(cloud, "POST", "/_sandbox/droplets/bulk", {"count": 450, "tags": ["fleet"]}).json["ids"]
    knob(cloud, "DELETE", "/_sandbox/stats")
    pages = every_page(client, tag_name="fleet", per_page=200)
    assert [d["id"] for page in pages for d in page["droplets"]] == fleet
    assert [page["meta"]["total"] for page in pages] == [450, 450, 450]
    assert calls(cloud) == {"GET /v2/droplets": 3}


def test_droplets_listed_by_type_gpus_or_the_others(client):
    made = client.droplets.create({"names": ["web-1", "web-2"], **WEB})
    gpus = client.droplets.list(type="gpus")
    assert_model(gpus, "resources/droplets/responses/all_droplets.yml")
    assert (gpus["droplets"], gpus["meta"]["total"]) == ([], 0)  # the local cloud has no GPU sizes
    others = client.droplets.list(type="droplets")
    assert [d["id"] for d in others["droplets"]] == [d["id"] for d in made["droplets"]]
    assert others["meta"]["total"] == 2


def test_a_droplet_goes_from_new_to_active_with_its_addresses(client, cloud):
    created = client.droplets.create({"name": "web-1", **WEB, "ipv6": True})
    droplet_id = created["droplet"]["id"]
    new = client.droplets.get(droplet_id)["droplet"]
    assert (new["status"], new["networks"]) == ("new", {"v4": [], "v6": []})

    configure(cloud, activate_after=0)
    active = client.droplets.get(droplet_id)
    assert_model(active, "resources/droplets/responses/existing_droplet.yml")
    droplet = active["droplet"]
    assert droplet["status"] == "active"
    v4 = {net["type"]: net for net in droplet["networks"]["v4"]}
    assert sorted(v4) == ["private", "public"]
    assert in_documentation_nets(v4["public"]["ip_address"])
    vpc = client.vpcs.get(droplet["vpc_uuid"])["vpc"]
    assert (vpc["region"], vpc["default"]) == ("nyc3", True)
    assert ipaddress.ip_address(v4["private"]["ip_address"]) in ipaddress.ip_network(vpc["ip_range"])
    [v6] = droplet["networks"]["v6"]
    assert ipaddress.ip_address(v6["ip_address"]) in ipaddress.ip_network("2001:db8::/32")
    action = client.actions.get(created["links"]["actions"][0]["id"])["action"]
    assert (action["type"], action["status"], action["resource_id"]) == ("create", "completed", droplet_id)


def test_droplet_actions_and_actions(client, cloud):
    configure(cloud, activate_after=0)
    droplet_id = client.droplets.create({"name": "web-1", **WEB})["droplet"]["id"]
    off = answered(client.droplet_actions.post, droplet_id, {"type": "power_off"})
    assert off.status == 201
    assert_model(off.body, "resources/droplets/responses/droplet_action.yml")
    action = off.body["action"]
    assert (action["type"], action["resource_id"], action["region_slug"]) == ("power_off", droplet_id, "nyc3")
    assert client.droplets.get(droplet_id)["droplet"]["status"] == "off"
    assert client.droplet_actions.get(droplet_id, action["id"]) == client.actions.get(action["id"])
    assert_model(client.actions.get(action["id"]), "resources/actions/responses/action.yml")
    client.droplet_actions.post(droplet_id, {"type": "power_on"})
    assert client.droplets.get(droplet_id)["droplet"]["status"] == "active"

    mine = client.droplet_actions.list(droplet_id)
    assert_model(mine, "resources/droplets/responses/all_droplet_actions.yml")
    assert [a["type"] for a in mine["actions"]] == ["create", "power_off", "power_on"]
    everything = client.actions.list()
    assert_model(everything, "resources/actions/responses/actions.yml")
    assert everything["meta"]["total"] == 3

    unknown = refused(client.droplet_actions.post, droplet_id, {"type": "explode"})
    assert unknown.status_code == 422
    assert_error_body(unknown.response.json(), "unprocessable_entity", "'explode' is not supported")
    missing = answered(client.droplet_actions.post, 1, {"type": "reboot"})
    assert missing.status == 404
    assert_error_body(missing.body, "not_found")
    assert answered(client.actions.get, 1).status == 404


# ---------------------------------------------------------------- tags


def test_tags_created_assigned_and_deleted(client):
    created = answered(client.tags.create, {"name": "team:blue"})
    assert created.status == 201
    assert_model(created.body, "resources/tags/responses/tags_new.yml")
    droplet_id = client.droplets.create({"name": "web-1", **WEB})["droplet"]["id"]
    resources = {"resources": [{"resource_id": str(droplet_id), "resource_type": "droplet"}]}
    assert answered(client.tags.assign_resources, "team:blue", resources).status == 204
    assert client.droplets.get(droplet_id)["droplet"]["tags"] == ["team:blue"]
    tag = client.tags.get("team:blue")
    assert_model(tag, "resources/tags/responses/tags_existing.yml")
    assert tag["tag"]["resources"]["droplets"]["count"] == 1
    listed = client.tags.list()
    assert_model(listed, "resources/tags/responses/tags_all.yml")
    assert [t["name"] for t in listed["tags"]] == ["team:blue"]
    assert answered(client.tags.unassign_resources, "team:blue", resources).status == 204
    assert client.droplets.get(droplet_id)["droplet"]["tags"] == []
    assert answered(client.tags.delete, "team:blue").status == 204
    gone = answered(client.tags.get, "team:blue")
    assert gone.status == 404
    assert_error_body(gone.body, "not_found")


def test_an_invalid_tag_name_is_the_400_pydo_documents(client):
    refusal = answered(client.tags.create, {"name": "bad tag"})
    assert refusal.status == 400
    assert_model(refusal.body, "resources/tags/responses/tags_bad_request.yml")
    says = ("Tag 'bad tag' is invalid: tags may contain letters, numbers, colons, dashes and underscores,"
            " at most 255.")
    assert (refusal.body["error"], refusal.body["root_causes"], refusal.body["messages"]) == (says, [says], None)
    assert (refusal.body["id"], refusal.body["message"]) == ("bad_request", says)
    assert refusal.headers["x-request-id"] == refusal.body["request_id"]  # pydo reads it for this 400
    assert client.tags.list()["tags"] == []


# ---------------------------------------------------------------- VPCs


def test_vpcs_created_changed_listed_with_members_and_deleted(client):
    defaults = client.vpcs.list(per_page=200)
    assert_model(defaults, "resources/vpcs/responses/all_vpcs.yml")
    assert {vpc["region"] for vpc in defaults["vpcs"]} == REGIONS and defaults["meta"]["total"] == 8
    created = answered(client.vpcs.create, {"name": "tenant-a", "region": "fra1", "ip_range": "172.16.0.0/24",
                                            "description": "Tenant A"})
    assert created.status == 201
    assert_model(created.body, "resources/vpcs/responses/existing_vpc.yml")
    vpc = created.body["vpc"]
    assert (vpc["name"], vpc["ip_range"], vpc["default"]) == ("tenant-a", "172.16.0.0/24", False)
    assert client.vpcs.get(vpc["id"]) == created.body
    assert client.vpcs.update(vpc["id"], {"name": "tenant-b"})["vpc"]["name"] == "tenant-b"
    patched = client.vpcs.patch(vpc["id"], {"description": "only this"})["vpc"]
    assert (patched["name"], patched["description"]) == ("tenant-b", "only this")

    droplet = client.droplets.create({"name": "member-1", **WEB, "region": "fra1", "vpc_uuid": vpc["id"]})["droplet"]
    members = client.vpcs.list_members(vpc["id"])
    assert_model(members, "resources/vpcs/responses/vpc_members.yml")
    assert [m["urn"] for m in members["members"]] == [f"do:droplet:{droplet['id']}"]
    busy = refused(client.vpcs.delete, vpc["id"])
    assert busy.status_code == 403
    assert_error_body(busy.response.json(), "forbidden", "Cannot delete VPC with members.")
    overlap = refused(client.vpcs.create, {"name": "b", "region": "nyc3", "ip_range": "172.16.0.0/16"})
    assert overlap.status_code == 422
    assert_error_body(overlap.response.json(), "unprocessable_entity", "overlaps 172.16.0.0/24 of VPC tenant-b")

    client.droplets.destroy(droplet["id"])
    assert answered(client.vpcs.delete, vpc["id"]).status == 204
    gone = answered(client.vpcs.get, vpc["id"])
    assert gone.status == 404
    assert_error_body(gone.body, "not_found")


# ---------------------------------------------------------------- firewalls


def test_a_firewall_keeps_deny_rules_droplets_and_tags(client):
    client.tags.create({"name": "web"})
    tagged = client.droplets.create({"name": "tagged", **WEB, "tags": ["web"]})["droplet"]["id"]
    direct = client.droplets.create({"name": "direct", **WEB})["droplet"]["id"]
    created = answered(client.firewalls.create, {"name": "web.fw-1", "tags": ["web"],
                                                 "inbound_rules": [DENY_SSH_IN], "outbound_rules": [ALL_OUT]})
    assert created.status == 202
    assert_model(created.body, "resources/firewalls/responses/create_firewall_response.yml")
    firewall = created.body["firewall"]
    assert (firewall["inbound_rules"], firewall["outbound_rules"]) == ([DENY_SSH_IN], [ALL_OUT])
    assert (firewall["tags"], firewall["droplet_ids"], firewall["status"]) == (["web"], [tagged], "waiting")
    fetched = client.firewalls.get(firewall["id"])
    assert_model(fetched, "resources/firewalls/responses/get_firewall_response.yml")
    assert fetched["firewall"]["inbound_rules"] == [DENY_SSH_IN]  # reported back as deny
    listed = client.firewalls.list()
    assert_model(listed, "resources/firewalls/responses/list_firewalls_response.yml")
    assert [f["id"] for f in listed["firewalls"]] == [firewall["id"]]

    fw = firewall["id"]
    assert answered(client.firewalls.assign_droplets, fw, {"droplet_ids": [direct]}).status == 204
    assert client.firewalls.get(fw)["firewall"]["droplet_ids"] == [tagged, direct]
    assert answered(client.firewalls.delete_tags, fw, {"tags": ["web"]}).status == 204
    assert answered(client.firewalls.delete_droplets, fw, {"droplet_ids": [direct]}).status == 204
    assert client.firewalls.get(fw)["firewall"]["droplet_ids"] == []
    assert answered(client.firewalls.add_tags, fw, {"tags": ["web"]}).status == 204
    assert client.firewalls.get(fw)["firewall"]["tags"] == ["web"]

    # The allow rule for the same traffic is another rule; taking it away leaves the deny rule.
    assert answered(client.firewalls.add_rules, fw, {"inbound_rules": [SSH_IN]}).status == 204
    assert client.firewalls.get(fw)["firewall"]["inbound_rules"] == [DENY_SSH_IN, SSH_IN]
    assert answered(client.firewalls.delete_rules, fw, {"inbound_rules": [{**SSH_IN, "action": "allow"}]}).status == 204
    assert client.firewalls.get(fw)["firewall"]["inbound_rules"] == [DENY_SSH_IN]
    put = client.firewalls.update(fw, {"name": "web.fw-2", "inbound_rules": [DENY_SSH_IN, SSH_IN], "tags": ["web"]})
    assert_model(put, "resources/firewalls/responses/put_firewall_response.yml")
    assert (put["firewall"]["name"], put["firewall"]["inbound_rules"]) == ("web.fw-2", [DENY_SSH_IN, SSH_IN])

    assert answered(client.firewalls.delete, fw).status == 204
    gone = answered(client.firewalls.get, fw)
    assert gone.status == 404
    assert_error_body(gone.body, "not_found")


@pytest.mark.parametrize(("body", "says"), [
    ({"name": "has space", "inbound_rules": [SSH_IN]}, "Firewall name 'has space' is invalid"),
    ({"name": "fw-1", "inbound_rules": []}, "At least one inbound or outbound rule is required."),
    ({"name": "fw-1", "inbound_rules": [{**SSH_IN, "action": "drop"}]}, "action 'drop' is invalid: use allow or deny"),
    ({"name": "fw-1", "inbound_rules": [SSH_IN], "tags": ["ghost"]}, "Tag 'ghost' does not exist"),
])
def test_an_invalid_firewall_is_the_400_pydo_documents(client, body, says):
    refusal = answered(client.firewalls.create, body)
    assert refusal.status == 400
    assert_model(refusal.body, "common/responses/bad_request.yml")
    assert_error_body(refusal.body, "bad_request", says)
    assert client.firewalls.list()["firewalls"] == []
    fw = client.firewalls.create({"name": "fw-ok", "inbound_rules": [SSH_IN]})["firewall"]["id"]
    changed = answered(client.firewalls.update, fw, body)
    assert changed.status == 400
    assert_error_body(changed.body, "bad_request", says)
    assert client.firewalls.get(fw)["firewall"]["inbound_rules"] == [SSH_IN]


def test_firewall_rule_droplet_and_tag_changes_refused_as_400(client):
    fw = client.firewalls.create({"name": "fw-1", "inbound_rules": [SSH_IN]})["firewall"]["id"]
    for operation, body, says in (
            (client.firewalls.add_rules, {"inbound_rules": [{**SSH_IN, "action": "DENY"}]}, "action 'DENY'"),
            (client.firewalls.assign_droplets, {"droplet_ids": [1]}, "Droplet 1 does not exist"),
            (client.firewalls.add_tags, {"tags": ["bad tag"]}, "Tag 'bad tag' is invalid")):
        refusal = answered(operation, fw, body)
        assert refusal.status == 400, body
        assert_error_body(refusal.body, "bad_request", says)
    assert answered(client.firewalls.add_tags, "00000000-0000-0000-0000-000000000000", {"tags": ["t"]}).status == 404


# ---------------------------------------------------------------- deletes


def test_deletes_one_and_by_tag_answer_204_with_the_content_type_pydo_reads(client):
    one = client.droplets.create({"name": "web-1", **WEB})["droplet"]["id"]
    tagged = client.droplets.create({"names": ["doomed-1", "doomed-2"], **WEB, "tags": ["doomed"]})["droplets"]
    survivor = client.droplets.create({"name": "survivor", **WEB})["droplet"]["id"]

    deleted = answered(client.droplets.destroy, one)
    assert (deleted.status, deleted.body, deleted.headers["content-type"]) == (204, None, JSON_TYPE)
    assert doschema.validate_headers(deleted.http_headers, "common/responses/no_content_with_content_type.yml") == []
    again = answered(client.droplets.destroy, one)
    assert again.status == 404
    assert_error_body(again.body, "not_found")

    by_tag = answered(client.droplets.destroy_by_tag, tag_name="doomed")
    assert (by_tag.status, by_tag.headers["content-type"]) == (204, JSON_TYPE)
    assert [d["id"] for d in client.droplets.list()["droplets"]] == [survivor]
    assert all(answered(client.droplets.get, d["id"]).status == 404 for d in tagged)
    assert answered(client.droplets.destroy_by_tag, tag_name="nope").status == 404


# ---------------------------------------------------------------- errors, rate limits, retries


def test_a_wrong_token_is_401(cloud):
    for token in ("wrong", "  "):
        with pytest.raises(ClientAuthenticationError) as caught:
            make_client(cloud, token=token).droplets.list()
        assert caught.value.status_code == 401
        body = caught.value.response.json()
        assert_error_body(body, "unauthorized")
        assert body["message"] == "Unable to authenticate you"


@pytest.mark.parametrize(("status", "error_id"), [(429, "too_many_requests"), (500, "server_error"),
                                                  (502, "server_error"), (503, "server_error")])
def test_429_and_5xx_reach_pydo_as_errors_with_do_bodies(client, cloud, status, error_id):
    fault(cloud, status=status, path_prefix="/v2/droplets", method="GET", retry_after=7)
    knob(cloud, "DELETE", "/_sandbox/stats")
    error = refused(client.droplets.list)
    assert error.status_code == status
    assert_error_body(error.response.json(), error_id)
    if status == 429:
        assert (error.response.headers["retry-after"], error.response.headers["ratelimit-remaining"]) == ("7", "0")
    assert calls(cloud) == {"GET /v2/droplets": 1}  # retries off: one call
    assert client.droplets.list()["droplets"] == []  # the fault is used up


def test_pydo_retries_a_429_and_a_503_by_default(cloud):
    retrying = make_client(cloud, retry_total=10, retry_backoff_factor=0)  # pydo's count, without the waits
    fault(cloud, status=429, path_prefix="/v2/account", retry_after=0)
    fault(cloud, status=503, path_prefix="/v2/account")
    knob(cloud, "DELETE", "/_sandbox/stats")
    assert retrying.account.get()["account"]["status"] == "active"
    assert calls(cloud) == {"GET /v2/account": 3}


def test_the_rate_limit_headers_reach_pydo(client, cloud):
    first = answered(client.account.get).headers
    second = answered(client.account.get).headers
    assert first["ratelimit-limit"] == 5000
    assert second["ratelimit-remaining"] == first["ratelimit-remaining"] - 1
    assert first["ratelimit-reset"] >= int(time.time()) - 1

    configure(cloud, ratelimit_limit=250, ratelimit_remaining=10)
    seen = []
    client.regions.list(raw_response_hook=lambda response: seen.append(response.http_response.headers))
    [headers] = seen
    assert (headers["ratelimit-limit"], headers["ratelimit-remaining"]) == ("250", "9")
    assert int(headers["ratelimit-reset"]) >= int(time.time()) - 1
