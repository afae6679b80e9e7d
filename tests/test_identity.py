"""Identity rules against the real MariaDB and a real SMTP server on loopback:
registration, welcome mail and its outbox, login, throttling, refresh rotation,
logout, token verification, API tokens, user management, audit, bootstrap."""

import base64
import json
import os
import re
import time

import jwt
import pytest

from cloudprovisioner import accounts, auth, mailer, sessions
from cloudprovisioner import admin as admin_commands
from cloudprovisioner.db import Database
from cloudprovisioner.errors import Unauthenticated
from cloudprovisioner.web.app import make_app
from devtools.devstack import free_port
from tests.support import TEST_SECRET, Client, assert_problem, make_config

PASSWORD = "correct horse battery"
REGISTRATION = {"tenant_name": "Acme", "name": "Ada", "email": "Ada@Acme.test", "password": PASSWORD}


def login(app, email="admin@acme.test", password=PASSWORD):
    return Client(app).post("/auth/login", {"email": email, "password": password})


# --- registration and the welcome mail ---

def test_register_makes_a_tenant_and_its_admin_and_mails_the_tenant_id(app, smtp, db):
    answer = Client(app).post("/auth/register", REGISTRATION)
    assert answer.status == 201, answer.body
    tenant, user = answer.json["tenant"], answer.json["user"]
    assert len(tenant["id"]) == 36 and tenant["name"] == "Acme"
    assert user["role"] == "admin" and user["email"] == "ada@acme.test"
    [mail] = smtp.messages
    assert mail["To"] == "ada@acme.test" and tenant["id"] in mail.get_content()
    assert db.one("SELECT sent_at IS NOT NULL AS sent FROM outbox")["sent"] == 1
    stored = db.one("SELECT password_hash FROM users")["password_hash"]
    assert stored.startswith("$2b$04$") and PASSWORD not in stored


def test_emails_are_unique_whatever_their_case(app):
    assert Client(app).post("/auth/register", REGISTRATION).status == 201
    again = dict(REGISTRATION, email="ADA@acme.TEST", tenant_name="Other")
    assert_problem(Client(app).post("/auth/register", again), 409)


@pytest.mark.parametrize("password, reason", [
    ("short", "at least 10 characters"),
    ("x" * 73, "at most 72 bytes"),
    ("é" * 37, "at most 72 bytes"),  # 37 characters, 74 bytes
])
def test_bad_passwords_are_422_with_a_reason(app, password, reason):
    problem = assert_problem(Client(app).post("/auth/register", dict(REGISTRATION, password=password)), 422)
    assert reason in problem["errors"]["password"]


def test_registration_can_be_closed(values):
    closed = make_app(make_config(dict(values, CP_REGISTRATION="closed")))
    assert_problem(Client(closed).post("/auth/register", REGISTRATION), 403)


def test_mail_server_down_loses_nothing(values, smtp, db):
    down = make_app(make_config(dict(values, CP_SMTP_PORT=str(free_port()))))
    assert Client(down).post("/auth/register", REGISTRATION).status == 201
    assert smtp.messages == []
    waiting = db.one("SELECT attempts, sent_at, last_error FROM outbox")
    assert waiting["attempts"] == 1 and waiting["sent_at"] is None and waiting["last_error"]
    db.update("UPDATE outbox SET next_attempt_at = UTC_TIMESTAMP(6)")  # skip the back-off wait
    env = os.environ.copy()
    try:
        os.environ.update(values)
        assert mailer.main([]) == 0
    finally:
        os.environ.clear()
        os.environ.update(env)
    assert len(smtp.messages) == 1 and "Tenant id:" in smtp.messages[0].get_content()
    assert db.one("SELECT sent_at IS NOT NULL AS sent FROM outbox")["sent"] == 1


# --- one email address, one recipient ---

@pytest.fixture
def envelopes(smtp, monkeypatch):
    """The envelope recipients (RCPT TO) of each message the SMTP server takes during the test."""
    seen = []
    take = smtp.handle_DATA

    async def handle_data(server, session, envelope):
        seen.append(list(envelope.rcpt_tos))
        return await take(server, session, envelope)
    monkeypatch.setattr(smtp, "handle_DATA", handle_data)  # read by each new SMTP connection
    return seen


def test_a_comma_in_the_registration_email_is_422_and_mails_nobody(app, smtp, envelopes, db):
    problem = assert_problem(Client(app).post("/auth/register", dict(REGISTRATION, email="postmaster,x@example.com")),
                             422)
    assert problem["errors"] == {"email": "must be one email address (name@example.com), without a display name"}
    assert (smtp.messages, envelopes) == ([], [])
    assert db.one("SELECT COUNT(*) AS n FROM users")["n"] == 0


@pytest.mark.parametrize("email", [
    "postmaster;x@example.com", "Ada <ada@acme.test>", "<ada@acme.test>", "ada @acme.test", "ada@acme.test ",
    "ada@acme.test\r\nBcc: x@example.com", "ada\x00@acme.test", '"a,b"@acme.test', "ada@[127.0.0.1]",
    "ada@acme", "ada..x@acme.test", "x" * 65 + "@acme.test",
])
def test_only_one_plain_address_is_an_email(app, email):
    problem = assert_problem(Client(app).post("/auth/register", dict(REGISTRATION, email=email)), 422)
    assert set(problem["errors"]) == {"email"}


def test_the_welcome_mail_has_one_envelope_recipient(app, smtp, envelopes):
    email = "o'brien+cp@mail.acme-corp.test"
    assert Client(app).post("/auth/register", dict(REGISTRATION, email=email)).status == 201
    assert envelopes == [[email]]
    assert [mail["To"] for mail in smtp.messages] == [email]


def test_queued_mail_to_more_than_one_address_is_never_sent(config, smtp, envelopes, db):
    # As a registration before this check could have left it in the outbox.
    db.update("INSERT INTO outbox (recipient, subject, body, created_at, next_attempt_at) VALUES "
              "('postmaster,x@example.com', 'Welcome', 'Tenant id: 1', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))")
    assert mailer.deliver(config, db) == (0, 1)
    assert (smtp.messages, envelopes) == ([], [])
    row = db.one("SELECT sent_at, attempts, last_error, next_attempt_at FROM outbox")
    assert (row["sent_at"], row["attempts"], row["last_error"], row["next_attempt_at"]) == \
        (None, 1, "the recipient is not one email address", "9999-12-31T00:00:00Z")
    with pytest.raises(ValueError):
        mailer.enqueue(db, "postmaster,x@example.com", "Welcome", "Tenant id: 1")


# --- login, throttling, refresh, logout ---

def test_login_answers_tokens_and_me_shows_who_you_are(admin):
    me = admin.get("/me").json
    assert me["email"] == "admin@acme.test" and me["role"] == "admin"
    assert me["tenant"]["name"] == "Acme" and me["authenticated_by"]["type"] == "session"
    claims = jwt.decode(admin.token, TEST_SECRET, algorithms=["HS256"])
    assert set(claims) >= {"sub", "tenant", "role", "iat", "exp", "typ", "sid"}
    assert claims["typ"] == "access" and claims["exp"] - claims["iat"] == 900


def test_unknown_email_and_wrong_password_answer_the_same(admin, app, monkeypatch):
    checked = []
    import bcrypt
    real_check = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, hashed: checked.append(hashed[:7]) or real_check(pw, hashed))
    wrong = login(app, password="wrong password!")
    unknown = login(app, email="nobody@acme.test")
    assert wrong.status == unknown.status == 401
    same = ("type", "title", "status", "detail")
    assert [wrong.json[k] for k in same] == [unknown.json[k] for k in same]
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"]
    # An unknown account still costs one bcrypt check at the configured cost: the time does not tell.
    assert checked == [b"$2b$04$", b"$2b$04$"]


def test_an_overlong_password_at_login_is_a_plain_401(admin, app):
    assert_problem(login(app, password="x" * 200), 401)


def test_repeated_failures_for_one_account_are_throttled(admin, app, db):
    for _ in range(5):
        assert login(app, password="wrong password!").status == 401
    blocked = login(app)  # even the right password now waits
    assert_problem(blocked, 429)
    assert 800 < int(blocked.headers["retry-after"]) <= 901
    db.update("UPDATE login_throttle SET blocked_until = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND")
    assert login(app).status == 200


def test_repeated_failures_from_one_address_are_throttled(admin, app):
    for number in range(20):
        login(app, email=f"guess{number}@acme.test")
    assert_problem(login(app), 429)


def test_refresh_rotates_and_a_replayed_refresh_token_revokes_the_session(admin, app):
    first = admin.refresh_token
    rotated = Client(app).post("/auth/refresh", {"refresh_token": first})
    assert rotated.status == 200 and rotated.json["refresh_token"] != first
    newer = Client(app, rotated.json["access_token"])
    assert newer.get("/me").status == 200
    replay = Client(app).post("/auth/refresh", {"refresh_token": first})
    assert "already used" in assert_problem(replay, 401)["detail"]
    # The whole family is gone: the newer refresh token and every access token of the session.
    assert_problem(Client(app).post("/auth/refresh", {"refresh_token": rotated.json["refresh_token"]}), 401)
    assert_problem(newer.get("/me"), 401)
    assert_problem(admin.get("/me"), 401)


def test_logout_ends_the_session(admin, app):
    assert admin.post("/auth/logout", b"", content_type="application/json").status == 204
    assert_problem(admin.get("/me"), 401)
    assert_problem(Client(app).post("/auth/refresh", {"refresh_token": admin.refresh_token}), 401)


def test_logout_with_a_refresh_token(admin, app):
    assert Client(app).post("/auth/logout", {"refresh_token": admin.refresh_token}).status == 204
    assert_problem(admin.get("/me"), 401)


# --- access token verification: ours against PyJWT ---

def forge(claims, key=TEST_SECRET, algorithm="HS256"):
    return jwt.encode(claims, key, algorithm=algorithm)


def b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def good_claims(admin):
    return jwt.decode(admin.token, TEST_SECRET, algorithms=["HS256"])


@pytest.mark.filterwarnings("ignore:The HMAC key")  # HS512 with our 50-byte test key: the point is refusal
@pytest.mark.parametrize("case", ["wrong key", "expired", "alg none", "wrong type", "tampered", "no sid",
                                  "garbage", "HS512", "future iat"])
def test_bad_access_tokens_are_401_with_a_challenge(admin, app, case):
    claims = good_claims(admin)
    now = int(time.time())
    token = {
        "wrong key": lambda: forge(claims, key="another-secret-that-is-long-enough-0123456789"),
        "expired": lambda: forge(dict(claims, exp=now - 1)),
        "alg none": lambda: f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.",
        "wrong type": lambda: forge(dict(claims, typ="refresh")),
        "tampered": lambda: admin.token.split(".")[0] + "." + b64(dict(claims, role="admin", tenant="x")) + "."
        + admin.token.split(".")[2],
        "no sid": lambda: forge({k: v for k, v in claims.items() if k != "sid"}),
        "garbage": lambda: "not.a.token",
        "HS512": lambda: forge(claims, algorithm="HS512"),
        "future iat": lambda: forge(dict(claims, iat=now + 3600)),
    }[case]()
    answer = Client(app, token).get("/me")
    assert_problem(answer, 401)
    assert answer.headers["www-authenticate"].startswith('Bearer realm="cloudprovisioner", error="invalid_token"')


def test_our_verifier_accepts_exactly_what_pyjwt_accepts(admin):
    claims = good_claims(admin)
    key = TEST_SECRET.encode()
    assert auth.verify_jwt(admin.token, key, "access") == jwt.decode(admin.token, key, algorithms=["HS256"])
    for token in (forge(dict(claims, exp=int(time.time()) - 5)), forge(claims, key="x" * 40)):
        with pytest.raises(jwt.InvalidTokenError):
            jwt.decode(token, key, algorithms=["HS256"])
        with pytest.raises(Unauthenticated):  # a 401
            auth.verify_jwt(token, key, "access")


# The boundaries, with the clock given: a token is dead in its `exp` second (RFC 7519 4.1.4: "on or after"),
# and its `iat` may lie at most 60 seconds (auth's clock skew) in our future.
NOW = 1_800_000_000
CLAIMS = {"sub": "u" * 26, "tenant": "t" * 26, "role": "viewer", "typ": "access", "sid": "s" * 26,
          "iat": NOW - 900, "exp": NOW + 900}


def verify_at(now, **claims):
    """verify_jwt, at the clock `now`, on a token of CLAIMS (changed by `claims`) signed with the test key."""
    return auth.verify_jwt(forge(dict(CLAIMS, **claims)), TEST_SECRET.encode(), "access", now=now)


def test_a_token_is_refused_in_its_expiry_second_and_accepted_the_second_before():
    with pytest.raises(Unauthenticated, match="^token expired$"):
        verify_at(NOW, exp=NOW)
    assert verify_at(NOW, exp=NOW + 1) == dict(CLAIMS, exp=NOW + 1)
    with pytest.raises(Unauthenticated, match="^token expired$"):
        verify_at(NOW, exp=NOW - 1)


def test_a_token_issued_up_to_60_seconds_in_our_future_is_accepted_and_no_further():
    assert verify_at(NOW, iat=NOW + 60) == dict(CLAIMS, iat=NOW + 60)
    with pytest.raises(Unauthenticated, match="^token issued in the future$"):
        verify_at(NOW, iat=NOW + 61)


def test_a_token_for_another_tenant_claim_is_refused(admin, app):
    claims = dict(good_claims(admin), tenant="00000000-0000-0000-0000-000000000000")
    assert_problem(Client(app, forge(claims)).get("/servers"), 401)


def test_other_authorization_schemes_are_401(admin, app):
    answer = call_with_header(app, "Basic YWRtaW46YWRtaW4=")
    assert_problem(answer, 401)
    assert "error=" not in answer.headers["www-authenticate"]


def call_with_header(app, value):
    from tests.support import call
    return call(app, "GET", "/me", headers={"Authorization": value})


# --- API tokens ---

def test_api_tokens_are_shown_once_stored_hashed_and_work_as_bearer(admin, app, db):
    made = admin.post("/tokens", {"name": "ci", "role": "viewer", "expires_in_days": 30})
    assert made.status == 201, made.body
    secret = made.json["token"]
    assert secret.startswith("cpt_") and made.json["state"] == "active" and made.json["expires_at"]
    assert all("token" not in item for item in admin.get("/tokens").json)
    assert secret not in json.dumps(db.query("SELECT * FROM api_tokens"))
    ci = Client(app, secret)
    me = ci.get("/me").json
    assert me["role"] == "viewer" and me["authenticated_by"] == {"type": "api_token", "token_id": made.json["id"]}
    assert_problem(ci.post("/servers", {"name": "x", "region": "nyc3", "size": "s-1vcpu-1gb",
                                        "image": "ubuntu-24-04-x64"}), 403)


def test_an_api_token_role_cannot_exceed_its_creator(member):
    operator = member("operator")
    problem = assert_problem(operator.post("/tokens", {"name": "too strong", "role": "admin"}), 422)
    assert "no higher than your own role" in problem["errors"]["role"]
    assert operator.post("/tokens", {"name": "ok"}).json["role"] == "operator"


def test_revoked_and_expired_api_tokens_are_401(admin, app, db):
    made = admin.post("/tokens", {"name": "ci"}).json
    ci = Client(app, made["token"])
    assert ci.get("/me").status == 200
    db.update("UPDATE api_tokens SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND")
    assert "expired" in assert_problem(ci.get("/me"), 401)["detail"]
    db.update("UPDATE api_tokens SET expires_at = NULL")
    assert admin.delete(f"/tokens/{made['id']}").status == 204
    assert_problem(ci.get("/me"), 401)
    assert admin.get("/tokens").json[0]["state"] == "revoked"


def test_an_api_token_cannot_mint_more_tokens(admin, app):
    ci = Client(app, admin.post("/tokens", {"name": "ci"}).json["token"])
    assert_problem(ci.post("/tokens", {"name": "more"}), 403)


# --- user management ---

def test_admins_manage_users_and_keep_one_admin(admin, member, app):
    viewer = member("viewer")
    users = admin.get("/users").json
    assert {u["role"] for u in users} == {"admin", "viewer"}
    viewer_id = viewer.get("/me").json["id"]
    assert admin.patch(f"/users/{viewer_id}", {"role": "developer", "name": "Dev"}).json["role"] == "developer"
    me = admin.get("/me").json["id"]
    assert_problem(admin.patch(f"/users/{me}", {"role": "viewer"}), 409)
    assert_problem(admin.delete(f"/users/{me}"), 409)
    assert admin.delete(f"/users/{viewer_id}").status == 204
    assert_problem(viewer.get("/me"), 401)
    assert [u["role"] for u in admin.get("/users").json] == ["admin"]
    # The email is free again.
    again = admin.post("/users", {"name": "V", "email": "viewer@acme.test", "role": "viewer",
                                  "password": "long enough password"})
    assert again.status == 201


def test_disabling_a_user_ends_their_sessions_at_once(admin, member):
    operator = member("operator")
    operator_id = operator.get("/me").json["id"]
    assert admin.patch(f"/users/{operator_id}", {"disabled": True}).json["disabled"] is True
    assert_problem(operator.get("/me"), 401)
    assert_problem(login(admin.app, "operator@acme.test", "long enough password"), 401)


# --- audit ---

def test_state_changes_and_logins_are_audited(admin, app, db):
    server = admin.post("/servers", {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb",
                                     "image": "ubuntu-24-04-x64"}, headers={"X-Request-Id": "req-12345678"})
    login(app, password="wrong password!")
    entries = admin.get("/audit").json
    actions = [(e["action"], e["result"], e["status"]) for e in entries]
    assert actions[:2] == [("sessions.login", "denied", 401), ("servers.create_server", "ok", 202)]
    created = entries[1]
    assert created["target"] == server.json["id"] and created["request_id"] == "req-12345678"
    assert created["user_id"] == admin.get("/me").json["id"] and created["client_addr"] == "127.0.0.1"
    assert ("sessions.login", "ok", 200) in actions and ("accounts.register", "ok", 201) in actions
    only = admin.get("/audit?action=servers.create_server").json
    assert [e["action"] for e in only] == ["servers.create_server"]
    page = admin.get("/audit?limit=1")
    assert len(page.json) == 1 and 'rel="next"' in page.headers["link"]
    assert admin.get("/audit?since=2999-01-01T00:00:00Z").json == []
    assert_problem(admin.get("/audit?since=yesterday"), 422)


# --- bootstrap: no default users, an admin from a command, the secret from install ---

def test_a_fresh_database_has_no_users(db):
    assert db.one("SELECT COUNT(*) AS n FROM users")["n"] == 0


def test_create_admin_reads_the_password_from_a_file_and_adopts_old_servers(values, db, tmp_path, capsys):
    db.update("INSERT INTO servers (id, owner, name, region, size, image, tags, status, created_at, updated_at) "
              "VALUES ('0000000000000000000000000a', '', 'old', 'nyc3', 's', 'i', '[]', 'ready', "
              "UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))")
    env = tmp_path / "cp.env"
    env.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    password = tmp_path / "pw"
    password.write_text(PASSWORD + "\n")
    code = admin_commands.main(["--config", str(env), "create-admin", "--email", "Root@Example.test",
                                "--name", "Root", "--password-file", str(password)], sql_dir="unused")
    assert code == 0
    user = db.one("SELECT tenant_id, role, platform_admin FROM users WHERE email = 'root@example.test'")
    assert user["role"] == "admin" and user["platform_admin"] == 1
    assert db.one("SELECT tenant_id FROM servers")["tenant_id"] == user["tenant_id"]
    assert "1 servers from before tenants" in capsys.readouterr().out
    assert login(make_app(make_config(values)), "root@example.test").status == 200


def test_create_admin_refuses_a_weak_password(values, tmp_path, capsys):
    env = tmp_path / "cp.env"
    env.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    password = tmp_path / "pw"
    password.write_text("short\n")
    code = admin_commands.main(["--config", str(env), "create-admin", "--email", "a@b.test", "--name", "A",
                                "--password-file", str(password)], sql_dir="unused")
    assert code == 1 and "at least 10 characters" in capsys.readouterr().err


def test_ensure_secret_writes_what_is_missing_once_and_keeps_the_file_mode(tmp_path):
    env = tmp_path / "cp.env"
    env.write_text("CP_DB_NAME=x\nCP_JWT_SECRET=\n")
    env.chmod(0o640)
    key_file = tmp_path / "vmcp-platform-key.pem"
    assert admin_commands.ensure_secret(str(env)) == ["CP_JWT_SECRET", "CP_VMCP_KEY_SECRET", "CP_INSTALL_ID",
                                                      str(key_file), "CP_VMCP_PLATFORM_KEY"]
    install_id = configuration_value(env, "CP_INSTALL_ID")
    assert re.fullmatch(r"[a-z0-9]{12}", install_id)
    secret = configuration_value(env, "CP_JWT_SECRET")
    assert len(secret) >= 32 and oct(env.stat().st_mode & 0o777) == "0o640"
    assert len(configuration_value(env, "CP_VMCP_KEY_SECRET")) >= 32
    assert configuration_value(env, "CP_VMCP_PLATFORM_KEY") == str(key_file)
    assert oct(key_file.stat().st_mode & 0o777) == "0o640"
    assert key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert "CP_DB_NAME=x" in env.read_text()
    assert admin_commands.ensure_secret(str(env)) == []
    assert configuration_value(env, "CP_JWT_SECRET") == secret
    assert configuration_value(env, "CP_INSTALL_ID") == install_id  # never replaced: the cloud's objects carry it


def configuration_value(path, key):
    from cloudprovisioner.config import parse_env_file
    return parse_env_file(path.read_text())[key]


def test_helpers_agree(values):
    """Guards for the pieces other tests rely on."""
    config = make_config(values)
    assert accounts.check_password(config, "x", None) is False
    user = {"id": "u" * 26, "tenant_id": "t", "role": "viewer"}
    token = sessions.access_token(config, user, "s" * 26)
    assert auth.verify_jwt(token, TEST_SECRET.encode(), "access")["sub"] == "u" * 26
    assert Database(config).one("SELECT 1 AS one")["one"] == 1
