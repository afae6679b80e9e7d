"""Users an admin adds, when addresses are verified (CP_REGISTRATION=verify, the default, or closed): the address
is invited by mail, the user is made only when its owner sends the code back with a password of their own, and an
address that already has an account, in any tenant, gets the same answer and a note to its owner.

Before this, `POST /api/users` answered 409 `email-taken` for an address with an account anywhere, so any admin
(anyone may register a tenant) could ask whether an address had an account; and it made the user at once with a
password the admin chose, so an admin could take an address that was not theirs.
"""

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from cloudprovisioner.web.app import make_app
from tests.support import Client, assert_problem, make_config

PASSWORD = "correct horse battery"
INVITEE_PASSWORD = "the invitee's own one"
PUBLIC_URL = "https://cloud.example.test"
DETAIL = ("A mail is on its way to this address: the user is made when its owner accepts the invitation with a "
          "password of their own.")
SPENT = {"token": "unknown, expired or already used; ask for a new mail"}
BOB = {"name": "Bob", "email": "bob@acme.test", "role": "operator"}


@pytest.fixture
def settings(values):
    return {**values, "CP_REGISTRATION": "verify", "CP_PUBLIC_URL": PUBLIC_URL}


def app_with(settings, **changes):
    return make_app(make_config({**settings, **changes}))


@pytest.fixture
def verifying(settings):
    return app_with(settings)


def tenant_admin(settings, verifying, email="admin@acme.test", tenant="Acme"):
    """A tenant made while registration is open (no mail round trip), its admin logged in on `verifying`."""
    made = Client(app_with(settings, CP_REGISTRATION="open")).post(
        "/auth/register", {"tenant_name": tenant, "name": "Ada", "email": email, "password": PASSWORD})
    assert made.status == 201, made.body
    return Client(verifying).login(email, PASSWORD)


@pytest.fixture
def admin(settings, verifying, smtp):
    client = tenant_admin(settings, verifying)
    smtp.messages.clear()
    return client


def mails_to(smtp, email):
    return [mail for mail in smtp.messages if mail["To"] == email]


def invitation_code(smtp, email="bob@acme.test"):
    [mail] = mails_to(smtp, email)
    assert mail["Subject"] == "You are invited to CloudProvisioner"
    text = mail.get_content().replace("\r\n", "\n")
    assert f"{PUBLIC_URL}/api/invitations/accept" in text
    return re.search(r"^Invitation code: ([A-Za-z0-9_-]{43})$", text, re.M).group(1)


def accept(app, code, password=INVITEE_PASSWORD):
    return Client(app).post("/invitations/accept", {"token": code, "password": password})


def users(db):
    return db.one("SELECT COUNT(*) AS n FROM users")["n"]


def test_an_invited_user_is_made_when_the_code_comes_back_with_their_password(verifying, admin, smtp, db):
    invited = admin.post("/users", BOB)

    assert invited.status == 202, invited.body
    assert invited.json == {"email": "bob@acme.test", "invitation_expires_in": 86400, "detail": DETAIL}
    code = invitation_code(smtp)
    assert users(db) == 1  # the admin only, until the invitee answers
    assert db.one("SELECT token_hash FROM invitations")["token_hash"] != code  # stored as a hash
    assert_problem(Client(verifying).post("/auth/login", {"email": "bob@acme.test", "password": INVITEE_PASSWORD}),
                   401)

    accepted = accept(verifying, code)

    assert accepted.status == 201, accepted.body
    assert accepted.headers["location"] == "/api/me"
    user = accepted.json
    assert (user["email"], user["name"], user["role"], user["email_verified"]) == (
        "bob@acme.test", "Bob", "operator", True)
    me = Client(verifying).login("bob@acme.test", INVITEE_PASSWORD).get("/me").json
    assert me["tenant_id"] == admin.get("/me").json["tenant_id"]
    assert [row["email"] for row in admin.get("/users").json] == ["admin@acme.test", "bob@acme.test"]
    assert assert_problem(accept(verifying, code), 422)["errors"] == SPENT


def test_a_taken_address_gets_the_same_answer_and_its_owner_a_note(settings, verifying, admin, smtp, db):
    tenant_admin(settings, verifying, email="carol@other.test", tenant="Other")
    smtp.messages.clear()

    new = admin.post("/users", BOB)
    taken = admin.post("/users", {**BOB, "email": "carol@other.test", "role": "admin"})

    assert (new.status, taken.status) == (202, 202)
    assert new.json == dict(taken.json, email="bob@acme.test")
    assert sorted(new.headers) == sorted(taken.headers)
    [note] = mails_to(smtp, "carol@other.test")
    assert note["Subject"] == "Someone tried to add your address to a CloudProvisioner tenant"
    assert "Invitation code" not in note.get_content()
    assert db.one("SELECT COUNT(*) AS n FROM invitations WHERE email = 'carol@other.test'")["n"] == 0
    carol = db.one("SELECT tenant_id, role FROM users WHERE email = 'carol@other.test'")
    assert carol["tenant_id"] != admin.get("/me").json["tenant_id"]


def test_the_admin_does_not_choose_the_password(admin, db):
    problem = assert_problem(admin.post("/users", {**BOB, "password": "chosen by the admin"}), 422)
    assert problem["errors"] == {"password": "the invited user chooses their own password when they accept; "
                                             "leave it out"}
    assert db.one("SELECT COUNT(*) AS n FROM invitations")["n"] == 0


@pytest.mark.parametrize("change", [{"role": "developer"}, {"disabled": True}, "delete"])
def test_an_invitation_ends_with_its_inviters_admin_rights(settings, verifying, admin, smtp, db, change):
    """An invitation carries no more authority than whoever sent it still has."""
    other = tenant_admin(settings, verifying, email="second@acme.test", tenant="Second")  # a tenant of its own
    assert other.post("/users", BOB).status == 202
    code = invitation_code(smtp)
    other_id = other.get("/me").json["id"]
    tenant_id = other.get("/me").json["tenant_id"]
    # The inviter's tenant gets another admin, who takes the inviter's rights away.
    db.update("INSERT INTO users (id, tenant_id, email, name, password_hash, role, created_at, updated_at) "
              "SELECT '01zzzzzzzzzzzzzzzzzzzzzzzz', tenant_id, 'boss@second.test', 'Boss', password_hash, 'admin', "
              "created_at, updated_at FROM users WHERE id = %s", (other_id,))
    boss = Client(verifying).login("boss@second.test", PASSWORD)
    if change == "delete":
        assert boss.delete(f"/users/{other_id}").status == 204
    else:
        assert boss.patch(f"/users/{other_id}", change).status == 200

    assert assert_problem(accept(verifying, code), 422)["errors"] == SPENT
    assert db.one("SELECT COUNT(*) AS n FROM users WHERE email = 'bob@acme.test' AND tenant_id = %s",
                  (tenant_id,))["n"] == 0


def test_an_address_taken_while_its_invitation_waited_is_409(settings, verifying, admin, smtp, db):
    assert admin.post("/users", BOB).status == 202
    code = invitation_code(smtp)
    tenant_admin(settings, verifying, email="bob@acme.test", tenant="Bob's own")

    taken = assert_problem(accept(verifying, code), 409)

    assert taken["detail"] == "an account with this email already exists"


def test_a_code_sent_twice_at_once_makes_one_user(verifying, admin, smtp, db):
    assert admin.post("/users", BOB).status == 202
    code = invitation_code(smtp)
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(pool.map(lambda _: accept(verifying, code).status, range(6), timeout=120))
    assert statuses == [201] + [422] * 5
    assert users(db) == 2


def test_invitations_count_against_the_mail_limits(admin, smtp):
    """Three mails per recipient per window by default: an admin cannot use invitations to flood an address."""
    answers = [admin.post("/users", BOB).status for _ in range(4)]
    assert answers == [202, 202, 202, 429]
    assert len(mails_to(smtp, "bob@acme.test")) == 3


def test_invitations_work_while_registration_is_closed(settings, admin, smtp):
    closed = app_with(settings, CP_REGISTRATION="closed")
    admin = Client(closed, admin.token)
    assert admin.post("/users", BOB).status == 202
    assert accept(closed, invitation_code(smtp)).status == 201
    assert_problem(Client(closed).post("/auth/register", {}), 403)


def test_an_api_token_cannot_invite(admin):
    token = admin.post("/tokens", {"name": "ci", "role": "admin"}).json["token"]
    problem = assert_problem(Client(admin.app, token).post("/users", BOB), 403)
    assert problem["type"].endswith(":session-required")


def test_with_open_registration_an_admin_still_makes_users_at_once(settings, admin, db):
    opened = Client(app_with(settings, CP_REGISTRATION="open"), admin.token)
    made = opened.post("/users", {**BOB, "password": "long enough password"})
    assert made.status == 201 and made.json["email_verified"] is False
    assert_problem(opened.post("/users", {**BOB, "password": "long enough password"}), 409)
