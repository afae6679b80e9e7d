"""API tokens cannot outlive themselves: a token may not make a user or set a password (a person in a login session
does), a disabled user's tokens stay revoked when they are enabled again, and a tenant's admins list and revoke any
of its users' tokens.

The `admin` fixture is Acme's admin (admin@acme.test), logged in; `member(role)` adds and logs in a user of Acme.
"""

from tests.support import Client, assert_problem

SESSION_REQUIRED = "urn:cloudprovisioner:problem:session-required"


def admin_token(admin, app):
    created = admin.post("/tokens", {"name": "ci", "role": "admin"})
    assert created.status == 201, created.body
    return Client(app, token=created.json["token"])


def test_an_admin_api_token_cannot_make_a_user_to_log_in_as(admin, app, db):
    token = admin_token(admin, app)
    users_before = db.query("SELECT id FROM users ORDER BY id")

    answer = token.post("/users", {"name": "Backdoor", "email": "backdoor@acme.test", "role": "admin",
                                   "password": "chosen by the token"})

    problem = assert_problem(answer, 403)
    assert (problem["type"], problem["detail"]) == (
        SESSION_REQUIRED, "an API token cannot create users; log in and do it in your session")
    assert db.query("SELECT id FROM users ORDER BY id") == users_before
    assert_problem(Client(app).post("/auth/login", {"email": "backdoor@acme.test",
                                                    "password": "chosen by the token"}), 401)
    row = db.one("SELECT token_id, result, status FROM audit_log WHERE action = 'accounts.create_user'")
    assert (row["result"], row["status"]) == ("denied", 403) and row["token_id"] is not None
    # The same admin, logged in, still may.
    assert admin.post("/users", {"name": "Bob", "email": "bob@acme.test", "role": "viewer",
                                 "password": "a long passphrase"}).status == 201


def test_an_api_token_cannot_set_a_password(admin, app):
    token = admin_token(admin, app)
    answer = token.post("/me/password", {"current_password": "correct horse battery", "password": "token's choice!"})
    problem = assert_problem(answer, 403)
    assert (problem["type"], problem["detail"]) == (
        SESSION_REQUIRED, "an API token cannot change a password; log in and do it in your session")
    assert Client(app).post("/auth/login", {"email": "admin@acme.test",
                                            "password": "correct horse battery"}).status == 200


def test_an_admin_api_token_cannot_promote_disable_or_delete_users(admin, member, app, db):
    """A leaked admin token plus any account its holder controls must not become lasting admin rights, nor lock
    out the admins who would revoke it: role, disabled and deletes need a person logged in."""
    token = admin_token(admin, app)
    viewer_id = member("viewer").get("/me").json["id"]
    admin_id = admin.get("/me").json["id"]
    for answer, doing in (
            (token.patch(f"/users/{viewer_id}", {"role": "admin"}),
             "change a user's role or disable or enable a user"),
            (token.patch(f"/users/{admin_id}", {"disabled": True}), "change a user's role or disable or enable a user"),
            (token.patch(f"/users/{viewer_id}", {"name": "Promoted", "disabled": False}),
             "change a user's role or disable or enable a user"),
            (token.delete(f"/users/{admin_id}"), "delete users")):
        problem = assert_problem(answer, 403)
        assert (problem["type"], problem["detail"]) == (
            SESSION_REQUIRED, f"an API token cannot {doing}; log in and do it in your session")
    rows = {row["id"]: (row["role"], row["disabled"], row["deleted_at"], row["name"]) for row in db.query(
        "SELECT id, role, disabled, deleted_at, name FROM users WHERE id IN (%s, %s)", (viewer_id, admin_id))}
    assert rows[viewer_id][:3] == ("viewer", 0, None) and rows[admin_id][:3] == ("admin", 0, None)
    assert rows[viewer_id][3] != "Promoted"
    # Renaming outlives nothing: a token may.
    assert token.patch(f"/users/{viewer_id}", {"name": "Renamed"}).status == 200
    # The same admin, logged in, still may do all of it.
    assert admin.patch(f"/users/{viewer_id}", {"role": "operator"}).status == 200
    assert admin.delete(f"/users/{viewer_id}").status == 204


def test_enabling_a_disabled_user_again_brings_back_none_of_their_tokens(admin, member, app):
    operator = member("operator")
    created = operator.post("/tokens", {"name": "ci", "role": "operator"}).json
    token = Client(app, token=created["token"])
    assert token.get("/me").status == 200
    operator_id = operator.get("/me").json["id"]

    assert admin.patch(f"/users/{operator_id}", {"disabled": True}).status == 200
    assert admin.patch(f"/users/{operator_id}", {"disabled": False}).status == 200

    assert_problem(token.get("/me"), 401)
    again = Client(app).login("operator@acme.test", "long enough password")  # the user is back
    assert [(listed["id"], listed["state"]) for listed in again.get("/tokens").json] == [(created["id"], "revoked")]


def test_admins_list_and_revoke_any_users_tokens_in_their_tenant(admin, member, register, app):
    operator = member("operator")
    operator_id = operator.get("/me").json["id"]
    kept = operator.post("/tokens", {"name": "deploy"}).json
    doomed = operator.post("/tokens", {"name": "laptop", "expires_in_days": 30}).json

    listed = admin.get(f"/users/{operator_id}/tokens")

    assert listed.status == 200, listed.body
    assert [(token["id"], token["name"], token["role"], token["state"]) for token in listed.json] == [
        (kept["id"], "deploy", "operator", "active"), (doomed["id"], "laptop", "operator", "active")]
    assert all("token" not in token for token in listed.json)  # never the secret

    assert admin.delete(f"/users/{operator_id}/tokens/{doomed['id']}").status == 204

    assert_problem(Client(app, token=doomed["token"]).get("/me"), 401)
    assert Client(app, token=kept["token"]).get("/me").status == 200
    assert [token["state"] for token in admin.get(f"/users/{operator_id}/tokens").json] == ["active", "revoked"]
    # A token that is not that user's, and another tenant's admin, find nothing.
    admin_id = admin.get("/me").json["id"]
    assert assert_problem(admin.delete(f"/users/{admin_id}/tokens/{kept['id']}"), 404)["detail"] == "no such token"
    globex = register(tenant="Globex", email="admin@globex.test")
    for answer in (globex.get(f"/users/{operator_id}/tokens"),
                   globex.delete(f"/users/{operator_id}/tokens/{kept['id']}")):
        assert assert_problem(answer, 404)["detail"] == "no such user"
    assert Client(app, token=kept["token"]).get("/me").status == 200
