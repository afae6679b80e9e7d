"""The servers API in-process against the real MariaDB and the sandbox cloud API."""

import time

import pytest

from cloudprovisioner import monitor
from cloudprovisioner.web.app import make_app
from tests.support import TEST_INSTALL_ID, TEST_TOKEN, Client, assert_problem, http, knob, make_config

VALID = {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64",
         "description": "a web server"}


def cloud_droplet(sandbox, droplet_id):
    return http("GET", f"{sandbox}droplets/{droplet_id}", headers={"Authorization": f"Bearer {TEST_TOKEN}"})


def count(db, status=None):
    sql, args = "SELECT COUNT(*) AS n FROM servers", ()
    if status:
        sql, args = sql + " WHERE status = %s", (status,)
    return db.one(sql, args)["n"]


def test_create_writes_the_row_creates_a_tagged_droplet_and_answers_202(admin, db, sandbox):
    answer = admin.request("POST", "/servers", VALID)
    assert answer.status == 202, answer.body
    server = answer.json
    assert answer.headers["location"] == f"/api/servers/{server['id']}"
    assert server["status"] == "pending" and server["public_ip"] == "" and server["ready_at"] is None
    assert {k: server[k] for k in VALID} == VALID
    assert server["owner"] == admin.get("/me").json["id"]
    droplet = cloud_droplet(sandbox, server["instance_id"]).json["droplet"]
    assert droplet["name"] == "web-1" and droplet["size_slug"] == "s-1vcpu-1gb"
    [firewall] = server["firewall_ids"]  # the tenant's default firewall, attached by its tag
    ours = f"cloudprovisioner:{TEST_INSTALL_ID}"  # this installation's, then the row's, its tenant's, its firewall's
    tenant = admin.get("/me").json["tenant_id"]
    assert set(droplet["tags"]) == {ours, f"{ours}:{server['id']}", f"{ours}:tenant:{tenant}", f"{ours}:fw:{firewall}"}
    row = db.one("SELECT status, instance_id FROM servers WHERE id = %s", (server["id"],))
    assert row == {"status": "pending", "instance_id": int(server["instance_id"])}


PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMISpa6WtkDYTxGVStxE220Gq7Q6xSakYvH0gBqHz4Uh test@cp"


def test_create_from_an_html_form_with_tags_and_a_key(admin, sandbox):
    key = admin.request("POST", "/ssh-keys", {"name": "k", "public_key": PUBLIC_KEY}).json
    form = dict(VALID, tags="web,prod", ssh_keys=[key["id"]])
    answer = admin.request("POST", "/servers", form, "application/x-www-form-urlencoded")
    assert answer.status == 202, answer.body
    assert answer.json["tags"] == ["web", "prod"]
    droplet = cloud_droplet(sandbox, answer.json["instance_id"]).json["droplet"]
    assert {"web", "prod"} <= set(droplet["tags"])


def test_list_get_and_status(admin):
    created = admin.request("POST", "/servers", VALID).json
    listed = admin.request("GET", "/servers")
    assert listed.status == 200 and listed.content_type == "application/json"
    assert [s["id"] for s in listed.json] == [created["id"]]
    got = admin.request("GET", f"/servers/{created['id']}").json
    operation = created.pop("operation")
    assert created.pop("estimated_monthly") == 6.0  # a create's answer only: the size's monthly price
    assert got == created
    assert operation["kind"] == "server.create" and operation["status"] == "running"
    status = admin.request("GET", f"/servers/{created['id']}/status").json
    assert status == {"id": created["id"], "status": "pending", "status_reason": "", "public_ip": "",
                      "private_ip": "", "ready_at": None}


def test_unknown_server_is_404_everywhere(admin):
    for method, path in (("GET", "/servers/nope"), ("GET", "/servers/nope/status"),
                         ("DELETE", "/servers/nope")):
        assert_problem(admin.request(method, path), 404)


def test_pages_follow_link_headers_in_a_stable_order(admin, db):
    ids = [admin.request("POST", "/servers", dict(VALID, name=f"web-{i}")).json["id"] for i in range(7)]
    seen, url, pages = [], "/servers?limit=3", 0
    while url:
        answer = admin.request("GET", url)
        pages += 1
        seen += [s["id"] for s in answer.json]
        link = answer.headers.get("link")
        url = link[link.index("</api") + 5:link.index(">")] if link else None
    assert seen == sorted(ids) and pages == 3
    assert 'rel="next"' in admin.request("GET", "/servers?limit=3").headers["link"]


def test_status_filter_and_deleted_left_out_unless_asked(admin, db):
    keep = admin.request("POST", "/servers", VALID).json["id"]
    gone = admin.request("POST", "/servers", dict(VALID, name="web-2")).json["id"]
    db.update("UPDATE servers SET status = 'deleted' WHERE id = %s", (gone,))
    assert [s["id"] for s in admin.request("GET", "/servers").json] == [keep]
    assert [s["id"] for s in admin.request("GET", "/servers?status=deleted").json] == [gone]
    assert {s["id"] for s in admin.request("GET", "/servers?include_deleted=true").json} == {keep, gone}
    assert admin.request("GET", "/servers?status=ready").json == []


def fault(sandbox, **rule):
    knob(sandbox, "POST", "/_sandbox/faults", {"path_prefix": "/v2/droplets", **rule})


def tagged(sandbox, server_id):
    answer = http("GET", f"{sandbox}droplets?tag_name=cloudprovisioner:{TEST_INSTALL_ID}:{server_id}",
                  headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    return [droplet["id"] for droplet in answer.json["droplets"]]


def impatient_client(admin, values, **settings):
    return Client(make_app(make_config(dict(values, **settings))), admin.token)


def test_a_passing_cloud_failure_is_retried_and_makes_one_droplet(admin, sandbox):
    fault(sandbox, status=500, count=2, method="POST")
    answer = admin.post("/servers", VALID)
    assert answer.status == 202, answer.body
    requests = knob(sandbox, "GET", "/_sandbox/stats").json["requests"]
    assert requests["POST /v2/droplets"] == 3  # two failures, then the create
    assert requests["GET /v2/droplets"] == 2  # before each retry: was it made after all?
    assert tagged(sandbox, answer.json["id"]) == [int(answer.json["instance_id"])]


def test_a_cloud_that_keeps_failing_is_502_with_retry_after_and_the_row_in_error(admin, values, db, sandbox):
    fault(sandbox, status=500, count=1000)
    problem = assert_problem(answer := impatient_client(admin, values, CP_CLOUD_BUDGET="2").post("/servers", VALID),
                             502)
    assert "unable to give you a response" in problem["detail"] and int(answer.headers["retry-after"]) > 0
    row = db.one("SELECT id, status, status_reason FROM servers")
    assert row["status"] == "error" and "unable to give you a response" in row["status_reason"]
    operation = admin.get(f"/operations?target={row['id']}").json[0]
    assert operation["status"] == "failed" and "unable" in operation["error"]


def test_a_rate_limit_is_waited_out_within_the_budget(admin, sandbox):
    fault(sandbox, status=429, count=1, retry_after=1)
    started = time.monotonic()
    assert admin.post("/servers", VALID).status == 202
    assert time.monotonic() - started >= 1  # it honoured retry-after


def test_a_rate_limit_beyond_the_budget_is_503_with_the_clouds_retry_after(admin, sandbox, db):
    fault(sandbox, status=429, count=1, retry_after=300)
    answer = admin.post("/servers", VALID)
    problem = assert_problem(answer, 503)
    assert "Rate limit" in problem["detail"] and answer.headers["retry-after"] == "300"
    assert count(db, "error") == 1


def test_a_slow_create_is_never_left_doubled(admin, values, sandbox, db):
    """The cloud makes the droplet, but too late to answer: the retry makes a second; the monitor keeps one."""
    impatient = impatient_client(admin, values, CP_DO_TIMEOUT="1")
    fault(sandbox, delay=2, count=1, method="POST")
    answer = impatient.post("/servers", VALID)
    assert answer.status == 202, answer.body
    time.sleep(2)  # the sandbox finishes the slow create too
    server_id = answer.json["id"]
    assert len(tagged(sandbox, server_id)) == 2
    assert monitor.run_once(make_config(values)) == 0
    row = db.one("SELECT instance_id FROM servers WHERE id = %s", (server_id,))
    assert tagged(sandbox, server_id) == [row["instance_id"]]


def test_a_cloud_that_never_answers_leaves_no_droplet_nobody_tracks(admin, values, sandbox, db):
    """Every try times out (the cloud makes each droplet later): the row is error, the monitor clears them all."""
    impatient = impatient_client(admin, values, CP_DO_TIMEOUT="1", CP_CLOUD_BUDGET="3")
    # These few droplets are all the installation has: the circuit breaker's share would hold them.
    values["CP_MONITOR_MAX_DESTROY_PERCENT"] = "100"
    # Each create lands 5 s after it was sent: after the request's 3 s budget, so no retry of the request
    # can find one and adopt it (at 3 s the test raced that retry, and now and then lost).
    fault(sandbox, delay=5, count=10, method="POST")
    problem = assert_problem(impatient.post("/servers", VALID), 502)
    assert "did not answer" in problem["detail"]
    assert count(db, "error") == 1
    time.sleep(5)  # the sandbox finishes the slow creates
    server_id = db.one("SELECT id FROM servers")["id"]
    assert tagged(sandbox, server_id)  # one per attempt that reached the cloud
    assert monitor.run_once(make_config(values)) == 0
    assert tagged(sandbox, server_id) == []


def test_bad_input_loses_nothing_already_stored(admin, db):
    admin.request("POST", "/servers", VALID)
    before = db.query("SELECT * FROM servers")
    form = "application/x-www-form-urlencoded"
    for body, content_type in ((b"{", "application/json"), (b"name=%ZZ&x", form),
                               (b"{}", "application/json"), (b'{"name": 1}', "application/json")):
        assert admin.request("POST", "/servers", body, content_type).status in (400, 422)
    assert db.query("SELECT * FROM servers") == before


def test_delete_destroys_the_droplet_and_marks_deleting(admin, db, sandbox):
    created = admin.request("POST", "/servers", VALID).json
    answer = admin.request("DELETE", f"/servers/{created['id']}")
    assert answer.status == 202 and answer.json["status"] == "deleting"
    assert cloud_droplet(sandbox, created["instance_id"]).status == 404
    again = admin.request("DELETE", f"/servers/{created['id']}")
    assert again.status == 202 and again.json["status"] == "deleting"


def test_delete_when_the_cloud_keeps_failing_is_502_and_changes_nothing(admin, values, db, sandbox):
    created = admin.request("POST", "/servers", VALID).json
    fault(sandbox, status=503, count=1000, method="DELETE")
    answer = impatient_client(admin, values, CP_CLOUD_BUDGET="2").delete(f"/servers/{created['id']}")
    assert_problem(answer, 502)
    assert answer.headers["retry-after"]
    assert count(db, "pending") == 1


def cloud_requests(sandbox):
    return knob(sandbox, "GET", "/_sandbox/stats").json["requests"]


def assert_nothing_made(db, sandbox):
    """No server row, no operation, no default network of the tenant's, and the cloud asked to make nothing."""
    for table in ("servers", "operations", "vpcs", "firewalls"):
        assert db.one(f"SELECT COUNT(*) AS n FROM {table}")["n"] == 0, table
    assert [call for call in cloud_requests(sandbox) if not call.startswith("GET ")] == []
    droplets = http("GET", f"{sandbox}droplets", headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    assert droplets.json["droplets"] == []


# The test configuration leaves CP_ALLOWED_REGIONS, _SIZES and _IMAGES at their defaults; each value below is
# one the local cloud offers (as DigitalOcean does) that those lists leave out.
NOT_ALLOWED = [("region", "lon1", "nyc3, ams3, fra1, sfo3"),
               ("size", "s-2vcpu-2gb", "s-1vcpu-512mb-10gb, s-1vcpu-1gb, s-1vcpu-2gb"),
               ("image", "rockylinux-9-x64", "ubuntu-24-04-x64, ubuntu-22-04-x64, debian-12-x64")]


@pytest.mark.parametrize(("field", "value", "offered"), NOT_ALLOWED, ids=[field for field, _, _ in NOT_ALLOWED])
def test_a_real_cloud_offer_the_installation_does_not_allow_is_422_and_makes_nothing(admin, db, sandbox, field,
                                                                                       value, offered):
    """The allowed lists are the installation's choice, narrower than the cloud's: a value the cloud would
    take must still be refused here, before any row, network or droplet is made."""
    listed = http("GET", f"{sandbox}{field}s?per_page=200", headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    assert value in [item["slug"] for item in listed.json[f"{field}s"]]  # the cloud offers it
    knob(sandbox, "DELETE", "/_sandbox/stats")
    problem = assert_problem(admin.post("/servers", dict(VALID, **{field: value})), 422)
    assert problem["errors"] == {field: f"{field} {value!r} is not offered; choose one of: {offered}"}
    assert_nothing_made(db, sandbox)


def test_user_data_the_platforms_parts_push_over_64_kib_is_422_before_anything_is_written(admin, db, sandbox):
    """The cloud takes 64 KiB of user data; the platform's own cloud-config parts (about 1.4 KB) go in
    the same document. A user part under the limit alone but over it once merged is the user's to shorten:
    a 422 naming user_data, and nothing written or asked of the cloud (not a 502 with the row in error)."""
    script = "#!/bin/sh\n" + "echo 0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab\n" * 990
    assert len(script.encode()) == 65_350  # under 65,536 by itself
    knob(sandbox, "DELETE", "/_sandbox/stats")
    problem = assert_problem(admin.post("/servers", dict(VALID, user_data=script)), 422)
    assert list(problem["errors"]) == ["user_data"]
    assert "too large once the platform's cloud-config is added" in problem["errors"]["user_data"]
    assert_nothing_made(db, sandbox)


def test_user_data_that_stays_under_64_kib_once_merged_is_taken(admin, sandbox):
    """The other side of the test above: it is the merged size that is refused, not large user data as such."""
    script = "#!/bin/sh\n" + "echo 0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab\n" * 900
    answer = admin.post("/servers", dict(VALID, user_data=script))
    assert answer.status == 202, answer.body
    facts = knob(sandbox, "GET", f"/_sandbox/droplets/{answer.json['instance_id']}").json
    assert script in facts["user_data"] and len(facts["user_data"].encode()) <= 65_536
