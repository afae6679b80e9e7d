"""The exact SDK calls, and how cloud failures become CloudError.

`responses` stands in for the cloud here because only a mock shows the exact
requests the SDK makes and a fault on a chosen page; the same flows run against
the sandbox in test_api.py and test_monitor.py.
"""

import json

import pytest
import requests
import responses

from cloudprovisioner import provider
from tests.support import make_config

API = "http://cloud.invalid/v2/"


@pytest.fixture
def config():
    return make_config({"CP_DO_TOKEN": "tok", "CP_DO_API_URL": API.rstrip("/"), "CP_DO_TIMEOUT": "2"})


def droplet(droplet_id, tags, status="active", ip="192.0.2.10"):
    v4 = [{"ip_address": ip, "type": "public", "netmask": "255.255.255.0", "gateway": "192.0.2.1"},
          {"ip_address": "10.0.0.5", "type": "private", "netmask": "255.255.0.0", "gateway": "10.0.0.1"}]
    return {"id": droplet_id, "name": f"d{droplet_id}", "status": status, "tags": tags, "features": [],
            "networks": {"v4": v4 if status == "active" else [], "v6": []},
            "created_at": "2026-01-01T00:00:00Z"}


@responses.activate
def test_create_sends_one_post_with_tags_and_timeout(config):
    responses.post(API + "droplets/", status=202, json={
        "droplet": droplet(7, ["cloudprovisioner"], "new"), "links": {"actions": [{"id": 99}]}})
    droplet_id = provider.create_droplet(
        config, name="web-1", region="nyc3", size="s-1vcpu-1gb", image="ubuntu-24-04-x64",
        tags=["cloudprovisioner", "cloudprovisioner:abc"], ssh_keys=[12], user_data="")
    assert droplet_id == 7
    assert len(responses.calls) == 1
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == "Bearer tok"
    body = json.loads(sent.body)
    assert body["tags"] == ["cloudprovisioner", "cloudprovisioner:abc"]
    assert body["size"] == "s-1vcpu-1gb" and body["ssh_keys"] == [12]
    assert "user_data" not in body
    assert sent.req_kwargs["timeout"] == 2.0


@responses.activate
def test_list_follows_pages_of_200(config):
    first = API + "droplets/?tag_name=cloudprovisioner&per_page=200"
    responses.get(API + "droplets/", match=[responses.matchers.query_param_matcher(
        {"tag_name": "cloudprovisioner", "per_page": "200", "page": "1"})], json={
        "droplets": [droplet(i, ["cloudprovisioner"]) for i in range(200)],
        "links": {"pages": {"next": first + "&page=2"}}, "meta": {"total": 201}})
    responses.get(API + "droplets/", match=[responses.matchers.query_param_matcher(
        {"tag_name": "cloudprovisioner", "per_page": "200", "page": "2"})], json={
        "droplets": [droplet(200, ["cloudprovisioner"], "new")], "links": {}, "meta": {"total": 201}})
    found = provider.list_droplets(config, "cloudprovisioner")
    assert len(found) == 201 and len(responses.calls) == 2
    assert (found[0].public_ip, found[0].private_ip) == ("192.0.2.10", "10.0.0.5")
    assert found[200].status == "new" and found[200].public_ip == ""


@responses.activate
def test_429_on_the_second_page_is_an_error_not_a_short_list(config):
    responses.get(API + "droplets/", match=[responses.matchers.query_param_matcher(
        {"tag_name": "t", "per_page": "200", "page": "1"})], json={
        "droplets": [], "links": {"pages": {"next": API + "droplets/?tag_name=t&page=2"}}})
    responses.get(API + "droplets/", status=429, headers={"retry-after": "3"},
                  json={"id": "too_many_requests", "message": "API Rate limit exceeded."})
    with pytest.raises(provider.CloudError, match="API Rate limit exceeded"):
        provider.list_droplets(config, "t")


@responses.activate
def test_500_is_a_cloud_error_with_the_cloud_message(config):
    responses.post(API + "droplets/", status=500,
                   json={"id": "server_error", "message": "Server was unable to give you a response."})
    with pytest.raises(provider.CloudError, match="unable to give you a response"):
        provider.create_droplet(config, name="a", region="r", size="s", image="i", tags=[],
                                ssh_keys=[], user_data="")


@responses.activate
def test_error_body_without_id_and_message_is_a_cloud_error(config):
    responses.post(API + "droplets/", status=502, json={"oops": True})
    with pytest.raises(provider.CloudError, match="unexpected body"):
        provider.create_droplet(config, name="a", region="r", size="s", image="i", tags=[],
                                ssh_keys=[], user_data="")


@responses.activate
def test_non_json_answer_is_a_cloud_error(config):
    responses.get(API + "droplets/", status=502, body="<html>bad gateway</html>")
    with pytest.raises(provider.CloudError, match="not JSON"):
        provider.list_droplets(config, "t")


@responses.activate
def test_timeout_is_a_cloud_error(config):
    responses.get(API + "droplets/", body=requests.exceptions.ReadTimeout("slow"))
    with pytest.raises(provider.CloudError, match="did not answer within 2 s"):
        provider.list_droplets(config, "t")


@responses.activate
def test_destroy_of_a_missing_droplet_answers_false(config):
    responses.delete(API + "droplets/5", status=404, json={"id": "not_found", "message": "gone"})
    responses.delete(API + "droplets/6", status=204)
    assert provider.destroy_droplet(config, 5) is False
    assert provider.destroy_droplet(config, 6) is True


@responses.activate
def test_refused_token_is_a_cloud_error(config):
    responses.get(API + "droplets/", status=401,
                  json={"id": "unauthorized", "message": "Unable to authenticate you"})
    with pytest.raises(provider.CloudError, match="Unable to authenticate you"):
        provider.list_droplets(config, "t")
