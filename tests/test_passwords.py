"""Password change (POST /api/me/password) and reset by mail (POST /api/password-reset, .../confirm): the current
password required and its guesses limited, other sessions ended; a reset's code mailed only to an account's
address, under one answer for every address, working once and for an hour, ending every session and verifying
the address; a code sent many times at once (through Apache) works once.

Mail goes through the real SMTP server on loopback (the `smtp` fixture). The `admin` fixture registered
admin@acme.test (open registration, so its address is not verified) with PASSWORD and logged in.
"""

import re
import threading
from concurrent.futures import ThreadPoolExecutor

from cloudprovisioner import accounts, mailer
from cloudprovisioner.db import Database
from tests.support import Client, assert_problem, http, installed_config, run_cron_job

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"
RESET_ANSWER = {"detail": "If an account has this address, a mail with a reset code is on its way to it; the code "
                          "works once, within 1 hour."}
SPENT = {"token": "unknown, expired or already used; ask for a new mail"}


def from_address(app, address):
    def at_address(environ, start_response):
        return app({**environ, "REMOTE_ADDR": address}, start_response)
    return at_address


def login(app, password, email="admin@acme.test"):
    return Client(app).post("/auth/login", {"email": email, "password": password})


def ask_reset(app, email="admin@acme.test", address="127.0.0.1"):
    return Client(from_address(app, address)).post("/password-reset", {"email": email})


def reset_code(mail):
    return re.search(r"^Reset code: ([A-Za-z0-9_-]{43})\r?$", mail.get_content(), re.M).group(1)


# --- change ---

def test_changing_the_password_ends_every_other_session_and_keeps_this_one(admin, app):
    other = Client(app).login("admin@acme.test", PASSWORD)

    changed = admin.post("/me/password", {"current_password": PASSWORD, "password": NEW_PASSWORD})

    assert changed.status == 204, changed.body
    assert_problem(other.get("/me"), 401)
    assert_problem(Client(app).post("/auth/refresh", {"refresh_token": other.refresh_token}), 401)
    assert admin.get("/me").status == 200
    assert Client(app).post("/auth/refresh", {"refresh_token": admin.refresh_token}).status == 200
    assert_problem(login(app, PASSWORD), 401)
    assert login(app, NEW_PASSWORD).status == 200


def test_a_wrong_current_password_changes_nothing_and_guesses_are_limited(admin, app):
    for _ in range(5):  # CP_LOGIN_MAX_FAILURES
        wrong = admin.post("/me/password", {"current_password": "not my password", "password": NEW_PASSWORD})
        assert assert_problem(wrong, 422)["errors"] == {"current_password": "is not your current password"}

    blocked = admin.post("/me/password", {"current_password": PASSWORD, "password": NEW_PASSWORD})

    assert assert_problem(blocked, 429)["detail"].startswith("too many wrong current passwords; try again in ")
    assert 800 < int(blocked.headers["retry-after"]) <= 901
    assert login(app, PASSWORD).status == 200  # logins are counted apart, and the password is unchanged


def test_the_new_password_follows_the_password_rules(admin):
    problem = assert_problem(admin.post("/me/password", {"current_password": PASSWORD, "password": "short"}), 422)
    assert problem["errors"] == {"password": "must be at least 10 characters"}


# --- reset by mail ---

def test_a_reset_sets_the_password_ends_every_session_and_verifies_the_address(admin, app, config, db, smtp):
    assert admin.get("/me").json["email_verified"] is False
    api_token = Client(app, token=admin.post("/tokens", {"name": "ci", "role": "viewer"}).json["token"])
    assert api_token.get("/me").status == 200
    smtp.messages.clear()

    known, unknown = ask_reset(app), ask_reset(app, "nobody@acme.test")

    assert (known.status, unknown.status) == (202, 202)
    assert known.json == unknown.json == RESET_ANSWER
    assert smtp.messages == []  # the mail job sends it, so that no answer takes longer for a real account
    assert mailer.deliver(config, db) == (1, 0)
    [mail] = smtp.messages
    assert (mail["To"], mail["Subject"]) == ("admin@acme.test", "Reset your CloudProvisioner password")
    code = reset_code(mail)
    assert db.one("SELECT token_hash FROM password_resets")["token_hash"] != code  # stored as a hash

    confirmed = Client(app).post("/password-reset/confirm", {"token": code, "password": NEW_PASSWORD})

    assert confirmed.status == 204, confirmed.body
    assert_problem(admin.get("/me"), 401)  # every session ended, the one it was asked from too
    assert_problem(api_token.get("/me"), 401)  # and every API token: someone else may have minted them
    assert_problem(Client(app).post("/auth/refresh", {"refresh_token": admin.refresh_token}), 401)
    assert_problem(login(app, PASSWORD), 401)
    renewed = Client(app).login("admin@acme.test", NEW_PASSWORD)
    assert renewed.get("/me").json["email_verified"] is True
    again = Client(app).post("/password-reset/confirm", {"token": code, "password": "yet another passphrase"})
    assert assert_problem(again, 422)["errors"] == SPENT


def test_a_reset_code_expires_and_a_used_one_ends_the_others(admin, app, config, db, smtp):
    smtp.messages.clear()
    ask_reset(app), ask_reset(app)
    mailer.deliver(config, db)
    first, second = (reset_code(mail) for mail in smtp.messages)
    db.update("UPDATE password_resets SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND")
    expired = Client(app).post("/password-reset/confirm", {"token": first, "password": NEW_PASSWORD})
    assert assert_problem(expired, 422)["errors"] == SPENT
    assert login(app, PASSWORD).status == 200

    db.update("UPDATE password_resets SET expires_at = UTC_TIMESTAMP(6) + INTERVAL 1 HOUR")
    assert Client(app).post("/password-reset/confirm", {"token": first, "password": NEW_PASSWORD}).status == 204
    other = Client(app).post("/password-reset/confirm", {"token": second, "password": "yet another passphrase"})
    assert assert_problem(other, 422)["errors"] == SPENT
    assert login(app, NEW_PASSWORD).status == 200


def test_resets_are_limited_per_address_and_per_email(admin, app, db):
    db.update("DELETE FROM login_throttle")  # the admin's registration mailed its address once already
    # Per recipient, whoever asks: three mails, then 429, for an address with an account and one without alike.
    for email in ("admin@acme.test", "nobody@acme.test"):
        statuses = [ask_reset(app, email, f"198.51.100.{n}").status for n in range(4)]
        assert statuses == [202, 202, 202, 429], email
    # Per client address: five, then 429.
    statuses = [ask_reset(app, f"user{n}@acme.test", "203.0.113.7").status for n in range(6)]
    assert statuses == [202] * 5 + [429]
    refused = ask_reset(app, "user9@acme.test", "203.0.113.7")
    assert assert_problem(refused, 429)["type"] == "urn:cloudprovisioner:problem:too-many-requests"


CONFIRMS_AT_ONCE = 8


def test_a_reset_code_sent_many_times_at_once_works_once(apache, fresh_installed, smtp):
    """Through the real Apache (one CGI process each): however many confirms arrive together, one sets its
    password."""
    api = apache.url + "/api"
    email = "reset@acme.test"
    registered = http("POST", api + "/auth/register", {"tenant_name": "Reset", "name": "Rey", "email": email,
                                                       "password": PASSWORD}, timeout=60)
    assert registered.status == 201, registered.body
    assert http("POST", api + "/password-reset", {"email": email}, timeout=60).status == 202
    job = run_cron_job(fresh_installed, "send_mail")
    assert job.returncode == 0, job.stdout + job.stderr
    code = reset_code([mail for mail in smtp.messages if mail["To"] == email][-1])
    passwords = [f"new passphrase number {n}" for n in range(CONFIRMS_AT_ONCE)]
    start = threading.Barrier(CONFIRMS_AT_ONCE, timeout=60)

    def confirm(password):
        start.wait()
        return http("POST", api + "/password-reset/confirm", {"token": code, "password": password}, timeout=90)
    with ThreadPoolExecutor(CONFIRMS_AT_ONCE) as pool:
        answers = list(pool.map(confirm, passwords, timeout=240))

    assert sorted(answer.status for answer in answers) == [204] + [422] * (CONFIRMS_AT_ONCE - 1)
    config = installed_config(fresh_installed)
    db = Database(config)
    try:
        stored = db.one("SELECT password_hash FROM users WHERE email = %s", (email,))["password_hash"]
    finally:
        db.close()
    winner = passwords[[answer.status for answer in answers].index(204)]
    assert [accounts.check_password(config, password, stored) for password in passwords] == [
        password == winner for password in passwords]
