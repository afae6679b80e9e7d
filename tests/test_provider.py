"""The exact SDK calls, and how cloud failures become CloudFailed.

`responses` stands in for the cloud here because only a mock shows the exact
requests the SDK makes and a fault on a chosen page; the same flows run against
the sandbox in test_api.py and test_monitor.py.
"""

import json

import pytest
import requests
import responses

from cloudprovisioner import provider
from cloudprovisioner.errors import CloudFailed
from tests.support import make_config

API = "http://cloud.invalid/v2/"


@pytest.fixture
def config():
    return make_config({"CP_DO_TOKEN": "tok", "CP_DO_API_URL": API.rstrip("/"), "CP_DO_TIMEOUT": "2",
                        "CP_CLOUD_BUDGET": "3"})


class FakeClock:
    """Retries wait for real elsewhere; here a wait only moves this clock on (and is recorded)."""

    def __init__(self):
        self.now = 1000.0
        self.waits = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(provider.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(provider.time, "sleep", fake.sleep)
    return fake


def no_droplets_tagged():
    """The look-up a create makes before retrying: nothing was made."""
    responses.get(API + "droplets/", json={"droplets": [], "links": {}, "meta": {"total": 0}})


def cloud(config, seconds=3):
    """One conversation with the cloud, under a budget of `seconds` on the fake clock."""
    return provider.Cloud(config, seconds)


def create(config, row_tag="cloudprovisioner:abc"):
    return cloud(config).create_droplet(name="a", region="r", size="s", image="i", tags=[], ssh_keys=[],
                                        user_data="", row_tag=row_tag)


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
    droplet_id = cloud(config).create_droplet(
        name="web-1", region="nyc3", size="s-1vcpu-1gb", image="ubuntu-24-04-x64",
        tags=["cloudprovisioner", "cloudprovisioner:abc"], ssh_keys=[12], user_data="", row_tag="cloudprovisioner:abc")
    assert droplet_id == 7
    assert len(responses.calls) == 1
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == "Bearer tok"
    body = json.loads(sent.body)
    assert body["tags"] == ["cloudprovisioner", "cloudprovisioner:abc"]
    assert body["size"] == "s-1vcpu-1gb" and body["ssh_keys"] == [12]
    assert "user_data" not in body
    assert sent.req_kwargs["timeout"] == 2.0  # CP_DO_TIMEOUT, always set


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
    found = cloud(config).list_droplets("cloudprovisioner")
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
    with pytest.raises(CloudFailed, match="API Rate limit exceeded"):
        cloud(config).list_droplets("t")


@responses.activate
def test_a_500_that_persists_is_retried_with_backoff_until_the_budget_ends(config, clock):
    responses.post(API + "droplets/", status=500,
                   json={"id": "server_error", "message": "Server was unable to give you a response."})
    no_droplets_tagged()
    with pytest.raises(CloudFailed, match="unable to give you a response") as failed:
        create(config)
    assert failed.value.status == 500 and failed.value.retry_after == provider.GIVE_UP_RETRY_AFTER
    posts = [call for call in responses.calls if call.request.method == "POST"]
    lookups = [call for call in responses.calls if call.request.method == "GET"]
    assert len(posts) == len(clock.waits) + 1 and len(lookups) == len(clock.waits)
    assert all("tag_name=cloudprovisioner%3Aabc" in call.request.url for call in lookups)
    assert clock.waits[1] > clock.waits[0] / 2 and sum(clock.waits) <= 3  # growing, within the budget


@responses.activate
def test_a_create_that_was_made_after_all_is_adopted_not_repeated(config):
    responses.post(API + "droplets/", status=504, json={"id": "timeout", "message": "Gateway timeout"})
    responses.get(API + "droplets/", json={"droplets": [droplet(77, ["cloudprovisioner:abc"], "new")],
                                          "links": {}, "meta": {"total": 1}})
    assert create(config) == 77
    assert [call.request.method for call in responses.calls] == ["POST", "GET"]


@responses.activate
def test_a_429_waits_for_retry_after_then_succeeds(config, clock):
    responses.post(API + "droplets/", status=429, headers={"retry-after": "2"},
                   json={"id": "too_many_requests", "message": "API Rate limit exceeded."})
    responses.post(API + "droplets/", status=202, json={"droplet": droplet(8, [], "new"),
                                                        "links": {"actions": [{"id": 1}]}})
    assert create(config) == 8
    assert clock.waits == [2]  # exactly the cloud's retry-after, and no look-up before retrying a 429


@responses.activate
def test_a_429_without_retry_after_waits_until_the_ratelimit_reset(config, clock, monkeypatch):
    monkeypatch.setattr(provider.time, "time", lambda: 5000)
    responses.get(API + "droplets/", status=429, headers={"ratelimit-reset": "5001"},
                  json={"id": "too_many_requests", "message": "API Rate limit exceeded."})
    responses.get(API + "droplets/", json={"droplets": [], "links": {}, "meta": {"total": 0}})
    assert cloud(config).list_droplets("t") == []
    assert clock.waits == [1]


@responses.activate
def test_a_429_longer_than_the_budget_gives_up_at_once_with_the_clouds_wait(config, clock):
    responses.get(API + "droplets/", status=429, headers={"retry-after": "120"},
                  json={"id": "too_many_requests", "message": "API Rate limit exceeded."})
    with pytest.raises(CloudFailed) as failed:
        cloud(config).list_droplets("t")
    assert failed.value.rate_limited and failed.value.retry_after == 120
    assert clock.waits == [] and len(responses.calls) == 1


@responses.activate
def test_rate_limit_headers_are_remembered(config):
    responses.get(API + "droplets/", json={"droplets": [], "links": {}, "meta": {"total": 0}},
                  headers={"ratelimit-limit": "5000", "ratelimit-remaining": "4321", "ratelimit-reset": "99"})
    conversation = cloud(config)
    conversation.list_droplets("t")
    assert conversation.rate_limit == {"limit": 5000, "remaining": 4321, "reset": 99}
    assert conversation.calls == 1 and cloud(config).rate_limit == {}  # each Cloud counts its own


@responses.activate
def test_a_power_action_is_not_repeated_when_its_outcome_is_unknown(config, clock):
    responses.post(API + "droplets/9/actions/", status=500, json={"id": "server_error", "message": "oops"})
    with pytest.raises(CloudFailed, match="may or may not have started"):
        cloud(config).droplet_action(9, "reboot")
    assert len(responses.calls) == 1


@responses.activate
def test_a_4xx_is_not_retried(config, clock):
    responses.post(API + "droplets/", status=422, json={"id": "unprocessable_entity", "message": "bad size"})
    with pytest.raises(CloudFailed, match="bad size") as failed:
        create(config)
    assert failed.value.status == 422 and failed.value.retry_after is None and clock.waits == []


@responses.activate
def test_error_body_without_id_and_message_is_a_cloud_error(config):
    responses.post(API + "droplets/", status=400, json={"oops": True})
    with pytest.raises(CloudFailed, match="unexpected body"):
        create(config)


@responses.activate
def test_non_json_answer_is_a_cloud_error(config):
    responses.get(API + "droplets/", status=502, body="<html>bad gateway</html>")
    with pytest.raises(CloudFailed, match="not JSON"):
        cloud(config).list_droplets("t")


@responses.activate
def test_timeout_is_a_cloud_error(config):
    responses.get(API + "droplets/", body=requests.exceptions.ReadTimeout("slow"))
    with pytest.raises(CloudFailed, match="did not answer within 2 s"):
        cloud(config).list_droplets("t")


@responses.activate
def test_destroy_of_a_missing_droplet_answers_false(config):
    responses.delete(API + "droplets/5", status=404, json={"id": "not_found", "message": "gone"})
    responses.delete(API + "droplets/6", status=204)
    assert cloud(config).destroy_droplet(5) is False
    assert cloud(config).destroy_droplet(6) is True


@responses.activate
def test_refused_token_is_a_cloud_error(config):
    responses.get(API + "droplets/", status=401,
                  json={"id": "unauthorized", "message": "Unable to authenticate you"})
    with pytest.raises(CloudFailed, match="Unable to authenticate you"):
        cloud(config).list_droplets("t")
