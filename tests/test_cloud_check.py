"""`make cloud-check` (tools/cloud_check.py): DigitalOcean's answers against the local cloud API's.

The real DigitalOcean is out of reach here, so "DigitalOcean" is played by the session's local
cloud API, as it is, or behind a proxy that takes a field out of its regions (so the local API
seems to invent one). What must hold: without a token nothing is sent and the exit is 0; it only
reads the account it is given; equal shapes pass; an invented field fails with 2; a token the
cloud refuses fails with 1; configured catalog entries the account lacks are named.
"""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.support import TEST_TOKEN, http, knob
from tools import cloud_check

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "cloud_check.py"


def run(**settings):
    """The tool, in an environment holding only PATH and `settings`, as a user would run it."""
    env = {"PATH": os.environ["PATH"], **settings}
    return subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


# -- the comparison, on records written out here -----------------------------------------------------------


def test_equal_shapes_are_the_same_whatever_the_values():
    real = [{"slug": "ams3", "sizes": ["s-1"], "available": True, "features": {"ipv6": 1}}]
    local = [{"slug": "nyc3", "sizes": [], "available": False, "features": {"ipv6": 2.5}}]
    assert cloud_check.compare({"regions": real}, {"regions": local}) == (["regions: same shape"], False)


def test_a_field_only_digitalocean_sends_is_listed_but_does_not_fail():
    real = [{"slug": "ams3", "networks": {"v6": [{"ip_address": "::1"}]}}]
    local = [{"slug": "ams3", "networks": {}}]
    lines, invents = cloud_check.compare({"droplets": real}, {"droplets": local})
    assert lines == ["droplets: DigitalOcean sends, the local API lacks: networks.v6, networks.v6[], "
                     "networks.v6[].ip_address"]
    assert invents is False


def test_what_an_empty_list_holds_on_one_side_is_not_compared():
    real = [{"networks": {"v4": []}, "tags": []}]  # a new droplet: no address yet, no tag
    local = [{"networks": {"v4": [{"ip_address": "192.0.2.1"}]}, "tags": ["web"]}]
    assert cloud_check.compare({"droplets": real}, {"droplets": local}) == (["droplets: same shape"], False)
    local[0]["networks"]["v4"] = "192.0.2.1"
    assert cloud_check.compare({"droplets": real}, {"droplets": local}) == (
        ["droplets: types differ: networks.v4: DigitalOcean array, local string"], True)


def test_a_field_only_the_local_api_sends_fails():
    lines, invents = cloud_check.compare({"sizes": [{"slug": "s"}]}, {"sizes": [{"slug": "s", "gpu": False}]})
    assert lines == ["sizes: the local API sends, DigitalOcean does not: gpu"]
    assert invents is True


def test_a_field_of_another_type_fails_but_null_goes_with_any():
    real = [{"id": 7, "vpc_uuid": None, "size": {"disk": 25}}]
    local = [{"id": "7", "vpc_uuid": "a-vpc", "size": {"disk": None}}]
    lines, invents = cloud_check.compare({"droplets": real}, {"droplets": local})
    assert lines == ["droplets: types differ: id: DigitalOcean number, local string"]
    assert invents is True


def test_an_empty_side_compares_only_the_listing():
    lines, invents = cloud_check.compare({"droplets": []}, {"droplets": [{"id": 1}]})
    assert lines == ["droplets: 0 from DigitalOcean, 1 from the local API: no record on one side, "
                     "only the listing was compared"]
    assert invents is False


def test_without_a_token_it_says_so_and_sends_nothing():
    done = run(CP_DO_API_URL="http://127.0.0.1:9/v2/")  # the discard port: a request would fail loudly
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cloud-check: CP_DO_TOKEN is not set, so nothing was checked.")
    assert done.stderr == ""


# -- against a cloud API, as DigitalOcean would be ---------------------------------------------------------


@pytest.fixture
def real_account(sandbox):
    """The session's local cloud as the "real" account: one droplet of the platform, nothing counted yet."""
    body = {"name": "theirs", "region": "ams3", "size": "s-1vcpu-1gb", "image": "debian-12-x64",
            "tags": ["cloudprovisioner"]}
    created = http("POST", sandbox + "droplets", body, headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    assert created.status == 202, created.body
    assert knob(sandbox, "DELETE", "/_sandbox/stats").status in (200, 204)
    return sandbox


def test_the_same_api_on_both_sides_passes_and_is_only_read(real_account):
    done = run(CP_DO_TOKEN=TEST_TOKEN, CP_DO_API_URL=real_account)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        f"cloud-check: {real_account} against the local cloud API, droplets tagged cloudprovisioner",
        "  account: same shape", "  regions: same shape", "  sizes: same shape", "  images: same shape",
        "  droplets: same shape"]
    counted = json.loads(knob(real_account, "GET", "/_sandbox/stats").body)["requests"]
    assert counted == {"GET /v2/account": 1, "GET /v2/droplets": 1, "GET /v2/images": 1, "GET /v2/regions": 1,
                       "GET /v2/sizes": 1}


def test_configured_regions_sizes_and_images_the_account_lacks_are_named(real_account):
    done = run(CP_DO_TOKEN=TEST_TOKEN, CP_DO_API_URL=real_account, CP_ALLOWED_REGIONS="ams3,mars1",
               CP_ALLOWED_SIZES="s-1vcpu-1gb", CP_ALLOWED_IMAGES="debian-12-x64,plan9-4,beos-5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-2:] == ["  CP_ALLOWED_REGIONS: DigitalOcean does not offer mars1",
                                             "  CP_ALLOWED_IMAGES: DigitalOcean does not offer plan9-4, beos-5"]


def test_a_refused_token_fails_with_the_clouds_answer(real_account):
    done = run(CP_DO_TOKEN="not-" + TEST_TOKEN, CP_DO_API_URL=real_account)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"cloud-check: cannot read {real_account}: the cloud refused (401): ")
    assert "not-" + TEST_TOKEN not in done.stderr


class WithoutRegionAvailability(BaseHTTPRequestHandler):
    """Forwards GETs to the cloud API behind it, leaving `available` out of every region."""

    behind = None

    def do_GET(self):  # noqa: N802 (the standard library's name)
        answer = requests.get(self.behind + self.path, headers={"Authorization": self.headers["Authorization"]},
                              timeout=30)
        body = answer.json()
        for region in body.get("regions", []):
            region.pop("available")
        data = json.dumps(body).encode()
        self.send_response(answer.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_a_field_the_local_api_invents_fails_with_2(real_account):
    handler = type("Handler", (WithoutRegionAvailability,), {"behind": real_account.split("/v2/")[0]})
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        done = run(CP_DO_TOKEN=TEST_TOKEN, CP_DO_API_URL=f"http://127.0.0.1:{proxy.server_port}/v2/")
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert done.returncode == 2, done.stdout + done.stderr
    assert "  regions: the local API sends, DigitalOcean does not: available" in done.stdout.splitlines()
    assert "  sizes: same shape" in done.stdout.splitlines()
