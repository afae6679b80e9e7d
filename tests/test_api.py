"""The servers API in-process against the real MariaDB and the sandbox cloud API."""

import time

from cloudprovisioner import monitor
from cloudprovisioner.web import make_app
from tests.support import TEST_TOKEN, Client, assert_problem, http, knob, make_config

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
    assert set(droplet["tags"]) == {"cloudprovisioner", f"cloudprovisioner:{server['id']}"}
    row = db.one("SELECT status, instance_id FROM servers WHERE id = %s", (server["id"],))
    assert row == {"status": "pending", "instance_id": int(server["instance_id"])}


PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMISpa6WtkDYTxGVStxE220Gq7Q6xSakYvH0gBqHz4Uh test@cp"


def test_create_from_an_html_form_with_tags_and_a_key(admin, sandbox):
    key = http("POST", sandbox + "account/keys", {"name": "k", "public_key": PUBLIC_KEY},
               headers={"Authorization": f"Bearer {TEST_TOKEN}"}).json["ssh_key"]
    form = dict(VALID, tags="web,prod", ssh_keys=[str(key["id"]), key["fingerprint"]])
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
    assert got == created
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


def test_cloud_refusing_is_502_with_its_message_and_the_row_in_error(admin, db, sandbox):
    knob(sandbox, "POST", "/_sandbox/faults", {"status": 500, "count": 1, "path_prefix": "/v2/droplets"})
    problem = assert_problem(admin.request("POST", "/servers", VALID), 502)
    assert "unable to give you a response" in problem["detail"]
    row = db.one("SELECT status, status_reason FROM servers")
    assert row["status"] == "error" and "unable to give you a response" in row["status_reason"]


def test_cloud_rate_limit_is_502(admin, db, sandbox):
    knob(sandbox, "POST", "/_sandbox/faults", {"status": 429, "count": 1, "path_prefix": "/v2/droplets"})
    problem = assert_problem(admin.request("POST", "/servers", VALID), 502)
    assert "Rate limit" in problem["detail"]


def test_a_failed_create_leaves_no_droplet_nobody_tracks(admin, values, sandbox, db):
    """The cloud creates the droplet but the answer is lost (slow): the monitor destroys it."""
    values.update(CP_DO_TIMEOUT="1")
    impatient = Client(make_app(make_config(values)), admin.token)
    knob(sandbox, "POST", "/_sandbox/faults", {"delay": 2, "count": 1, "path_prefix": "/v2/droplets",
                                               "method": "POST"})
    problem = assert_problem(impatient.post("/servers", VALID), 502)
    assert "did not answer" in problem["detail"]
    assert count(db, "error") == 1
    time.sleep(1.5)  # the sandbox finishes the slow create
    values.update(CP_DO_TIMEOUT="5")
    assert monitor.run_once(make_config(values)) == 0
    listed = http("GET", f"{sandbox}droplets?tag_name=cloudprovisioner",
                  headers={"Authorization": f"Bearer {TEST_TOKEN}"}).json
    assert listed["droplets"] == []


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


def test_delete_when_the_cloud_fails_is_502_and_changes_nothing(admin, db, sandbox):
    created = admin.request("POST", "/servers", VALID).json
    knob(sandbox, "POST", "/_sandbox/faults", {"status": 503, "count": 1, "path_prefix": "/v2/droplets",
                                               "method": "DELETE"})
    assert_problem(admin.request("DELETE", f"/servers/{created['id']}"), 502)
    assert count(db, "pending") == 1
