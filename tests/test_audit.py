"""The audit log's rows for deletes: a successful DELETE is a state change like any POST, so it leaves a
row naming what it removed. The expected actions, results and statuses are written out here, not read
from the application's list of audited methods, so a method left out of that list fails these tests."""

VALID = {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}


def audit_rows(db, action):
    return db.query("SELECT tenant_id, user_id, action, target, result, status FROM audit_log "
                    "WHERE action = %s ORDER BY id", (action,))


def test_a_server_delete_leaves_an_ok_row_naming_the_server(admin, db):
    server = admin.post("/servers", VALID).json
    answer = admin.delete(f"/servers/{server['id']}", headers={"X-Request-Id": "delete-web-1-0001"})
    assert answer.status == 202, answer.body
    me = admin.get("/me").json
    assert audit_rows(db, "servers.delete_server") == [
        {"tenant_id": me["tenant_id"], "user_id": me["id"], "action": "servers.delete_server",
         "target": server["id"], "result": "ok", "status": 202}]
    shown = admin.get("/audit?action=servers.delete_server").json
    assert [(e["action"], e["target"], e["result"], e["status"], e["request_id"]) for e in shown] == [
        ("servers.delete_server", server["id"], "ok", 202, "delete-web-1-0001")]


def test_deletes_answered_204_are_audited_too(admin, db):
    token = admin.post("/tokens", {"name": "ci"}).json
    assert admin.delete(f"/tokens/{token['id']}").status == 204
    viewer = admin.post("/users", {"name": "Vic Viewer", "email": "viewer@acme.test", "role": "viewer",
                                   "password": "long enough password"}).json
    assert admin.delete(f"/users/{viewer['id']}").status == 204
    assert [(row["target"], row["result"], row["status"]) for row in audit_rows(db, "apitokens.delete_token")] == [
        (token["id"], "ok", 204)]
    assert [(row["target"], row["result"], row["status"]) for row in audit_rows(db, "accounts.delete_user")] == [
        (viewer["id"], "ok", 204)]
