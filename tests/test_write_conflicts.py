"""Writes that collide: a transaction MariaDB picks as a deadlock's victim (or whose write set Galera refuses;
both are error 1213) runs again from the top instead of becoming a 500.

Concurrent deletes and creates of one tenant's firewalls deadlocked on the operations table's index (a
DELETE's UPDATE of open operations against another request's INSERT of one): a 500 for one of them, seen in
the two-installation test under load, and at once with eight requests in parallel here.
"""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from MySQLdb import OperationalError

from cloudprovisioner import db as database
from cloudprovisioner.web.app import make_app
from tests.support import UNLIMITED_TENANTS, Client, make_config

RULES = [{"protocol": "tcp", "ports": "22", "sources": {"addresses": ["10.0.0.0/8"]}}]


def test_parallel_firewall_deletes_and_creates_of_one_tenant_all_succeed(values, register, db):
    values.update(UNLIMITED_TENANTS)
    app = make_app(make_config(values))
    admin = Client(app, register().token)
    made = []
    for n in range(30):
        answer = admin.post("/firewalls", {"name": f"first-{n}", "inbound_rules": RULES})
        assert answer.status == 202, answer.body
        made.append(answer.json["id"])

    def work(n):
        if n % 2:
            return admin.delete(f"/firewalls/{made[n // 2]}")
        return admin.post("/firewalls", {"name": f"second-{n}", "inbound_rules": RULES})
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(work, range(60), timeout=300))
    assert [answer.body for answer in answers if answer.status != 202] == []
    assert db.one("SELECT COUNT(*) AS n FROM firewalls WHERE status = 'deleting' OR status = 'deleted'")["n"] == 30
    assert db.one("SELECT COUNT(*) AS n FROM operations WHERE kind = 'firewall.delete'")["n"] == 30


def conflict():
    return OperationalError(1213, "Deadlock found when trying to get lock; try restarting transaction")


def tenant_rows(db, name):
    return db.one("SELECT COUNT(*) AS n FROM tenants WHERE name = %s", (name,))["n"]


def test_a_transaction_that_loses_a_conflict_runs_again_and_keeps_one_result(db, monkeypatch):
    monkeypatch.setattr(database, "_pause", lambda attempt: None)
    runs = 0
    for attempt in db.transaction():
        with attempt:
            runs += 1
            db.update("INSERT INTO tenants (id, name, created_at) VALUES (%s, 'conflicted', UTC_TIMESTAMP(6))",
                      (str(uuid.uuid4()),))
            if runs < 3:
                raise conflict()  # as MariaDB answers a deadlock's victim: what it wrote is rolled back
    assert runs == 3
    assert tenant_rows(db, "conflicted") == 1


def test_one_that_always_loses_is_a_write_conflict_and_keeps_nothing(db, monkeypatch):
    monkeypatch.setattr(database, "_pause", lambda attempt: None)
    runs = 0
    with pytest.raises(database.WriteConflict) as refused:
        for attempt in db.transaction():
            with attempt:
                runs += 1
                db.update("INSERT INTO tenants (id, name, created_at) VALUES (%s, 'lost', UTC_TIMESTAMP(6))",
                          (str(uuid.uuid4()),))
                raise conflict()
    assert runs == database.ATTEMPTS
    assert tenant_rows(db, "lost") == 0
    assert refused.value.retry_after == 1 and refused.value.slug == "busy"


def test_any_other_error_is_not_run_again(db):
    runs = 0
    with pytest.raises(OperationalError, match="Lock wait timeout"):
        for attempt in db.transaction():
            with attempt:
                runs += 1
                db.update("INSERT INTO tenants (id, name, created_at) VALUES (%s, 'failed', UTC_TIMESTAMP(6))",
                          (str(uuid.uuid4()),))
                raise OperationalError(1205, "Lock wait timeout exceeded; try restarting transaction")
    assert runs == 1 and tenant_rows(db, "failed") == 0


def test_a_statement_outside_a_transaction_that_loses_runs_again(db, monkeypatch):
    monkeypatch.setattr(database, "_pause", lambda attempt: None)
    real, runs = database.Database._execute, []

    def loses_twice(self, sql, args):
        runs.append(sql)
        if len(runs) <= 2:
            raise conflict()
        return real(self, sql, args)
    monkeypatch.setattr(database.Database, "_execute", loses_twice)
    db.update("INSERT INTO tenants (id, name, created_at) VALUES (%s, 'alone', UTC_TIMESTAMP(6))", (str(uuid.uuid4()),))
    assert len(runs) == 3 and tenant_rows(db, "alone") == 1
