"""Registration verified by mail (CP_REGISTRATION=verify, the default): nothing is made until the mailed token comes
back, a new and a taken address get the same answer, the mail says nothing the registrant chose, and the mail
limits (per client address, per recipient) hold, for requests sent at once too (through Apache).

Mail goes through the real SMTP server on loopback (the `smtp` fixture). Defaults unless a test says otherwise:
5 mail-sending requests per client address and 3 mails per recipient per 3,600 s; links valid 86,400 s.
"""

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from cloudprovisioner.db import Database
from cloudprovisioner.web.app import make_app
from tests.support import Client, assert_problem, http, installed_config, installed_settings, make_config

PASSWORD = "correct horse battery"
REGISTRATION = {"tenant_name": "Acme", "name": "Ada", "email": "ada@acme.test", "password": PASSWORD}
PUBLIC_URL = "https://cloud.example.test"
PENDING_DETAIL = ("A mail is on its way to this address: follow it to verify the address, which makes the tenant. "
                  "Then log in.")
SPENT = {"token": "unknown, expired or already used; ask for a new mail"}


@pytest.fixture
def settings(values):
    """The test's settings with CP_REGISTRATION left to its default, and a public URL for the mail's links."""
    settings = {key: value for key, value in values.items() if key != "CP_REGISTRATION"}
    return {**settings, "CP_PUBLIC_URL": PUBLIC_URL}


@pytest.fixture
def verifying(settings):
    return make_app(make_config(settings))


def from_address(app, address):
    """The app as seen by a client at `address`."""
    def at_address(environ, start_response):
        return app({**environ, "REMOTE_ADDR": address}, start_response)
    return at_address


def register(app, address="127.0.0.1", **fields):
    return Client(from_address(app, address)).post("/auth/register", {**REGISTRATION, **fields})


def login(app, email="ada@acme.test", password=PASSWORD):
    return Client(app).post("/auth/login", {"email": email, "password": password})


def mails_to(smtp, email):
    return [mail for mail in smtp.messages if mail["To"] == email]


def text_of(mail):
    """The mail's text with the lines as written (SMTP carries them with CRLF)."""
    return mail.get_content().replace("\r\n", "\n")


def mailed_registration(mail):
    """(the tenant id, the link's token, the code) a verification mail carries."""
    text = text_of(mail)
    tenant_id = re.search(r"^Tenant id: ([0-9a-f-]{36})$", text, re.M).group(1)
    link = re.search(r"^https://cloud\.example\.test/api/verify-email\?token=([A-Za-z0-9_-]{43})$", text, re.M)
    code = re.search(r"^Verification code: ([A-Za-z0-9_-]{43})$", text, re.M).group(1)
    return tenant_id, link.group(1), code


def counts(db):
    return {table: db.one(f"SELECT COUNT(*) AS n FROM {table}")["n"] for table in ("tenants", "users", "registrations")}


# --- nothing until the address is verified ---

def test_a_registration_makes_nothing_until_its_mailed_token_comes_back(verifying, smtp, db):
    answer = register(verifying)

    assert answer.status == 202, answer.body
    assert answer.json == {"email": "ada@acme.test", "verification_expires_in": 86400, "detail": PENDING_DETAIL}
    [mail] = mails_to(smtp, "ada@acme.test")
    assert mail["Subject"] == "Verify your address for CloudProvisioner"
    tenant_id, link_token, code = mailed_registration(mail)
    assert link_token == code
    assert counts(db) == {"tenants": 0, "users": 0, "registrations": 1}
    assert db.one("SELECT token_hash FROM registrations")["token_hash"] != code  # stored as a hash
    assert_problem(login(verifying), 401)

    verified = Client(verifying).post("/verify-email", {"token": code})

    assert verified.status == 201, verified.body
    assert verified.headers["location"] == "/api/me"
    assert verified.json["tenant"] == {"id": tenant_id, "name": "Acme"}
    user = verified.json["user"]
    assert (user["email"], user["role"], user["email_verified"], user["tenant_id"]) == (
        "ada@acme.test", "admin", True, tenant_id)
    assert login(verifying).status == 200
    assert assert_problem(Client(verifying).post("/verify-email", {"token": code}), 422)["errors"] == SPENT
    assert counts(db) == {"tenants": 1, "users": 1, "registrations": 1}


def test_a_token_sent_twice_at_once_makes_one_tenant(verifying, smtp, db):
    register(verifying)
    _tenant_id, _link, code = mailed_registration(mails_to(smtp, "ada@acme.test")[0])
    start = threading.Barrier(6, timeout=60)

    def verify(_):
        start.wait()
        return Client(verifying).post("/verify-email", {"token": code}).status
    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(verify, range(6), timeout=120))

    assert statuses == [201, 422, 422, 422, 422, 422]
    assert counts(db) == {"tenants": 1, "users": 1, "registrations": 1}


def test_the_mailed_link_opens_a_page_whose_button_verifies(verifying, smtp):
    register(verifying)
    _tenant_id, token, _code = mailed_registration(mails_to(smtp, "ada@acme.test")[0])

    page = Client(verifying).get(f"/verify-email?token={token}")

    assert page.status == 200, page.body
    assert page.content_type == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["content-security-policy"] == "default-src 'none'; form-action 'self'; frame-ancestors 'none'"
    assert page.headers["referrer-policy"] == "no-referrer"
    html = page.body.decode()
    assert '<form method="post" action="/api/verify-email">' in html
    assert f'<input type="hidden" name="token" value="{token}">' in html
    # Opening the link (as a mail scanner would) made nothing.
    assert_problem(login(verifying), 401)

    button = Client(verifying).post("/verify-email", {"token": token}, content_type="application/x-www-form-urlencoded")

    assert button.status == 201, button.body
    assert login(verifying).status == 200
    assert assert_problem(Client(verifying).get(f"/verify-email?token={token}"), 422)["errors"] == SPENT


@pytest.mark.parametrize("token", ["short", "x" * 43 + "<", "a" * 42 + "\"", "a" * 44])
def test_a_malformed_token_never_reaches_the_page(verifying, token):
    from urllib.parse import quote
    problem = assert_problem(Client(verifying).get(f"/verify-email?token={quote(token)}"), 422)
    assert problem["errors"] == {"token": "must be the code from the mail (43 letters, digits, '-' and '_')"}


def test_an_expired_token_is_refused(verifying, smtp, db):
    register(verifying)
    _tenant_id, _link, code = mailed_registration(mails_to(smtp, "ada@acme.test")[0])
    db.update("UPDATE registrations SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND")

    assert assert_problem(Client(verifying).post("/verify-email", {"token": code}), 422)["errors"] == SPENT
    assert assert_problem(Client(verifying).get(f"/verify-email?token={code}"), 422)["errors"] == SPENT
    assert counts(db)["users"] == 0


def test_an_address_taken_while_its_registration_waited_is_409(verifying, settings, smtp, db):
    register(verifying, tenant_name="First")
    register(verifying, tenant_name="Second")
    first, second = (mailed_registration(mail)[2] for mail in mails_to(smtp, "ada@acme.test"))

    assert Client(verifying).post("/verify-email", {"token": second}).json["tenant"]["name"] == "Second"
    taken = assert_problem(Client(verifying).post("/verify-email", {"token": first}), 409)

    assert taken["detail"] == "an account with this email already exists"
    assert counts(db) == {"tenants": 1, "users": 1, "registrations": 2}


# --- the same answer for a new and a taken address ---

def test_a_new_and_a_taken_address_get_the_same_answer_and_the_owner_a_mail(verifying, settings, smtp, db):
    opened = make_app(make_config(dict(settings, CP_REGISTRATION="open")))
    assert register(opened).status == 201
    smtp.messages.clear()

    new = register(verifying, email="bob@acme.test", tenant_name="Bob's")
    taken = register(verifying, tenant_name="Hijack", name="Mallory", password="mallory's password")

    assert (new.status, taken.status) == (202, 202)
    assert new.json == dict(taken.json, email="bob@acme.test")
    assert sorted(new.headers) == sorted(taken.headers)
    [note] = mails_to(smtp, "ada@acme.test")
    assert note["Subject"] == "Someone tried to register with your address"
    assert text_of(note) == (
        "Someone tried to register a new tenant on CloudProvisioner with this\n"
        "address, which already has an account. Nothing was changed.\n\n"
        "If it was you: log in with your email and password at POST /api/auth/login,\n"
        "or ask for a password reset at POST /api/password-reset.\n"
        "If it was not you, you can ignore this mail.\n")
    assert counts(db) == {"tenants": 1, "users": 1, "registrations": 1}  # bob's waits; nothing for the taken one
    assert login(verifying).status == 200  # the owner's password is untouched
    assert_problem(login(verifying, password="mallory's password"), 401)


def test_the_mail_carries_nothing_the_registrant_chose(verifying, smtp):
    register(verifying, tenant_name="Urgent: verify at https://evil.example", name="Your Bank")
    [mail] = mails_to(smtp, "ada@acme.test")
    text = text_of(mail)
    assert "evil.example" not in text and "Urgent" not in text and "Bank" not in text
    assert "evil" not in mail["Subject"]


def test_without_a_public_url_the_mail_carries_the_code_and_no_link(values, smtp):
    app = make_app(make_config({key: value for key, value in values.items() if key != "CP_REGISTRATION"}))
    assert register(app).status == 202
    [mail] = mails_to(smtp, "ada@acme.test")
    text = text_of(mail)
    assert "http" not in text
    code = re.search(r"^Verification code: ([A-Za-z0-9_-]{43})$", text, re.M).group(1)
    assert Client(app).post("/verify-email", {"token": code}).status == 201


def test_closed_registration_verifies_nothing_either(verifying, settings, smtp):
    register(verifying)
    _tenant_id, _link, code = mailed_registration(mails_to(smtp, "ada@acme.test")[0])
    closed = make_app(make_config(dict(settings, CP_REGISTRATION="closed")))

    for answer in (Client(closed).post("/verify-email", {"token": code}),
                   Client(closed).get(f"/verify-email?token={code}"), register(closed)):
        assert assert_problem(answer, 403)["detail"] == "registration is closed; ask an administrator"
    assert Client(verifying).post("/verify-email", {"token": code}).status == 201


def test_an_unknown_registration_setting_is_a_configuration_error(settings):
    misconfigured = make_app(make_config(dict(settings, CP_REGISTRATION="yes")))
    assert assert_problem(register(misconfigured), 503)["type"] == "urn:cloudprovisioner:problem:misconfigured"


# --- the mail limits ---

def test_registrations_from_one_address_are_limited(verifying, smtp):
    for n in range(5):
        assert register(verifying, "203.0.113.7", email=f"user{n}@acme.test").status == 202

    refused = register(verifying, "203.0.113.7", email="user5@acme.test")

    problem = assert_problem(refused, 429)
    assert problem["type"] == "urn:cloudprovisioner:problem:too-many-requests"
    assert 3500 < int(refused.headers["retry-after"]) <= 3601
    assert len(smtp.messages) == 5
    assert register(verifying, "198.51.100.9", email="user5@acme.test").status == 202  # another address


def test_mail_to_one_address_is_limited_whoever_asks_and_whether_or_not_it_has_an_account(verifying, settings, smtp):
    opened = make_app(make_config(dict(settings, CP_REGISTRATION="open")))
    assert register(opened, "192.0.2.1").status == 201  # the account: its welcome mail counts too
    smtp.messages.clear()
    assert [register(verifying, f"198.51.100.{n}").status for n in (1, 2)] == [202, 202]

    refused = register(verifying, "198.51.100.3")

    problem = assert_problem(refused, 429)
    assert problem["type"] == "urn:cloudprovisioner:problem:too-much-mail"
    assert problem["detail"].startswith("this address has been sent enough mail for now; try again in ")
    assert len(mails_to(smtp, "ada@acme.test")) == 2
    # A new address is counted alike: three, then 429.
    assert [register(verifying, f"198.51.100.{n}", email="new@acme.test").status for n in (4, 5, 6, 7)] == [
        202, 202, 202, 429]


REGISTRATIONS_AT_ONCE = 12


def test_registrations_sent_at_once_from_one_address_get_at_most_the_limit(apache, fresh_installed, smtp):
    """Through the real Apache (one CGI process each): the limit holds however many arrive together."""
    url = apache.url + "/api/auth/register"
    start = threading.Barrier(REGISTRATIONS_AT_ONCE, timeout=60)

    def attempt(n):
        start.wait()
        return http("POST", url, dict(REGISTRATION, email=f"burst{n}@acme.test"), timeout=90)
    with installed_settings(fresh_installed, CP_REGISTRATION="verify", CP_MAIL_MAX_PER_ADDRESS="5"), \
            ThreadPoolExecutor(REGISTRATIONS_AT_ONCE) as pool:
        answers = list(pool.map(attempt, range(REGISTRATIONS_AT_ONCE), timeout=240))

    assert sorted(answer.status for answer in answers) == [202] * 5 + [429] * 7, [a.body for a in answers]
    db = Database(installed_config(fresh_installed))
    try:
        waiting = db.one("SELECT COUNT(*) AS n FROM registrations")["n"]
        queued = db.one("SELECT COUNT(*) AS n FROM outbox")["n"]
    finally:
        db.close()
    assert (waiting, queued) == (5, 5)
