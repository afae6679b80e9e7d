"""The login limits: attempts counted before the password is checked, per (address, account) pair, per
address and, from addresses the account never logged in from, per account; blocks that double.

The concurrent guesses go through the real Apache (one CGI process each, as an attacker sends them);
the rest in-process, where each caller's address is chosen (REMOTE_ADDR) to be another client's.
Defaults unless a test says otherwise: 5 per pair, 20 per address, 50 per account, blocks of 900 s
doubling up to 86,400 s, counts forgotten after 900 s without an attempt.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from cloudprovisioner.db import Database
from cloudprovisioner.web.app import make_app
from tests.support import Client, assert_problem, http, installed_config, make_config

PASSWORD = "correct horse battery"  # the `admin` fixture's
WRONG = "wrong password!"


def from_address(app, address):
    """The app as seen by a client at `address`."""
    def at_address(environ, start_response):
        return app({**environ, "REMOTE_ADDR": address}, start_response)
    return at_address


def login(app, address, password, email="admin@acme.test"):
    return Client(from_address(app, address)).post("/auth/login", {"email": email, "password": password})


def retry_after(answer):
    assert_problem(answer, 429)
    return int(answer.headers["retry-after"])


def end_blocks(db):
    """Every block over now, as if its time had passed (the counts stay)."""
    db.update("UPDATE login_throttle SET blocked_until = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND "
              "WHERE blocked_until IS NOT NULL")


# --- 1. guesses sent at once, through Apache ----------------------------------------------------------------

GUESSES = 24


@pytest.fixture
def account(fresh_installed, apache, smtp):
    """A tenant's admin registered over HTTP on the installed service; its email."""
    email = "limits@limits.test"
    registered = http("POST", apache.url + "/api/auth/register",
                      {"tenant_name": "Limits", "name": "Lim", "email": email, "password": PASSWORD}, timeout=60)
    assert registered.status == 201, (registered.body, apache.error_log())
    return email


def test_guesses_sent_at_once_get_at_most_the_limit_checked(apache, fresh_installed, account):
    url = apache.url + "/api/auth/login"
    start = threading.Barrier(GUESSES, timeout=60)

    def guess(_):
        start.wait()
        return http("POST", url, {"email": account, "password": WRONG}, timeout=90)
    with ThreadPoolExecutor(GUESSES) as pool:
        answers = list(pool.map(guess, range(GUESSES), timeout=180))

    statuses = sorted(answer.status for answer in answers)
    assert statuses == [401] * 5 + [429] * 19, statuses
    for answer in answers:
        if answer.status == 429:
            assert 0 < retry_after(answer) <= 901
    # The right password, during the block, is not even checked.
    right = http("POST", url, {"email": account, "password": PASSWORD}, timeout=60)
    assert 0 < retry_after(right) <= 901

    db = Database(installed_config(fresh_installed))
    try:
        audited = db.query("SELECT status, result, COUNT(*) AS n FROM audit_log WHERE action = 'sessions.login' "
                           "AND target = %s GROUP BY status, result ORDER BY status", (account,))
    finally:
        db.close()
    assert [(row["status"], row["result"], row["n"]) for row in audited] == [(401, "denied", 5), (429, "denied", 20)]


def test_guesses_sent_at_once_get_at_most_the_limit_of_passwords_checked(admin, app, monkeypatch):
    """In-process, where the checks themselves can be counted: refusing the sixth guess after checking it
    would answer alike, but would still spend a bcrypt check (and the attacker's work) on it."""
    import bcrypt
    checked = []
    real_check = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda password, hashed: checked.append(password) or
                        real_check(password, hashed))
    start = threading.Barrier(GUESSES, timeout=60)

    def guess(_):
        start.wait()
        return login(app, "203.0.113.7", WRONG).status
    with ThreadPoolExecutor(GUESSES) as pool:
        statuses = sorted(pool.map(guess, range(GUESSES), timeout=120))
    assert statuses == [401] * 5 + [429] * 19
    assert checked == [WRONG.encode()] * 5


# --- 3. nobody can lock a user out from elsewhere -------------------------------------------------------------

def test_failures_from_one_address_do_not_lock_the_owner_out_elsewhere(admin, app):
    for _ in range(5):
        assert_problem(login(app, "203.0.113.7", WRONG), 401)
    assert 800 < retry_after(login(app, "203.0.113.7", PASSWORD)) <= 901
    # The owner, at an address of their own, known or new:
    assert login(app, "127.0.0.1", PASSWORD).status == 200
    assert login(app, "198.51.100.9", PASSWORD).status == 200
    # ... and the stranger's pair is still blocked.
    assert 800 < retry_after(login(app, "203.0.113.7", WRONG)) <= 901


def test_each_further_failure_after_a_block_doubles_it_up_to_the_cap(values, admin, db):
    app = make_app(make_config(dict(values, CP_LOGIN_BLOCK_MAX="2000")))
    for _ in range(5):
        assert_problem(login(app, "203.0.113.7", WRONG), 401)
    assert 800 < retry_after(login(app, "203.0.113.7", WRONG)) <= 901
    for low, high in ((1700, 1801), (1900, 2001), (1900, 2001)):  # 1,800 s, then 3,600 s capped at 2,000 s
        end_blocks(db)
        assert_problem(login(app, "203.0.113.7", WRONG), 401)  # one more guess, checked, and blocked at once
        assert low < retry_after(login(app, "203.0.113.7", PASSWORD)) <= high


def test_a_quiet_pair_starts_again_from_nothing(admin, app, db):
    for _ in range(5):
        assert_problem(login(app, "203.0.113.7", WRONG), 401)
    end_blocks(db)
    db.update("UPDATE login_throttle SET last_at = last_at - INTERVAL 901 SECOND, "
              "blocked_until = blocked_until - INTERVAL 901 SECOND")  # 900 s of quiet after the block
    for _ in range(5):
        assert_problem(login(app, "203.0.113.7", WRONG), 401)
    assert 800 < retry_after(login(app, "203.0.113.7", WRONG)) <= 901


def test_a_success_gives_its_attempt_back(admin, app):
    for _ in range(4):
        assert_problem(login(app, "203.0.113.7", WRONG), 401)
    assert login(app, "203.0.113.7", PASSWORD).status == 200  # the pair starts afresh
    for _ in range(5):
        assert_problem(login(app, "203.0.113.7", WRONG), 401)
    assert_problem(login(app, "203.0.113.7", WRONG), 429)


def test_one_address_trying_many_accounts_is_blocked_and_a_success_there_counts_for_nothing(admin, app):
    for number in range(19):
        assert_problem(login(app, "203.0.113.7", WRONG, email=f"guess{number}@acme.test"), 401)
    assert login(app, "203.0.113.7", PASSWORD).status == 200
    assert_problem(login(app, "203.0.113.7", WRONG, email="guess19@acme.test"), 401)  # the 20th failure
    assert 800 < retry_after(login(app, "203.0.113.7", PASSWORD)) <= 901
    assert login(app, "198.51.100.9", PASSWORD).status == 200  # another address is not concerned


def test_the_account_ceiling_spares_addresses_the_account_logged_in_from(values, admin):
    app = make_app(make_config(dict(values, CP_LOGIN_MAX_FAILURES_PER_ACCOUNT="3")))
    for address in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        assert_problem(login(app, address, WRONG), 401)
    # Guesses spread over addresses meet the ceiling, even with the right password, at any new address:
    assert 800 < retry_after(login(app, "203.0.113.4", WRONG)) <= 901
    assert 800 < retry_after(login(app, "198.51.100.9", PASSWORD)) <= 901
    # The owner's own address (the `admin` fixture logged in from 127.0.0.1) is spared.
    assert login(app, "127.0.0.1", PASSWORD).status == 200


def test_the_account_ceiling_can_be_turned_off(values, admin):
    app = make_app(make_config(dict(values, CP_LOGIN_MAX_FAILURES_PER_ACCOUNT="0")))
    for host in range(1, 12):  # 55 failures, over the default ceiling of 50
        for _ in range(5):
            assert_problem(login(app, f"203.0.113.{host}", WRONG), 401)
    assert login(app, "198.51.100.9", PASSWORD).status == 200
