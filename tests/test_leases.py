"""Leases in a table instead of MySQL named locks (which a Galera cluster refuses): one holder at a time,
however many take it at once; an expired lease taken over, and its old holder told so when it renews; and no
named lock left anywhere in the product."""

import io
import re
import threading
import time
from pathlib import Path

import pytest

from cloudprovisioner import leases, monitor, provider
from cloudprovisioner.db import Database
from tests.support import make_config

ROOT = Path(__file__).resolve().parents[1]


def expire(db, name):
    db.update("UPDATE leases SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND WHERE name = %s", (name,))


def test_one_holder_until_it_releases(db, config):
    first = leases.take(db, "job", 60)
    other = Database(config)
    try:
        assert first is not None
        assert leases.take(other, "job", 60) is None
        assert leases.take(other, "another job", 60) is not None
        first.release()
        assert leases.take(other, "job", 60) is not None
    finally:
        other.close()


def test_an_expired_lease_is_taken_over_and_its_old_holder_knows(db, config):
    """A holder that died (or outlived its lease) blocks nobody past the lease's end."""
    stale = leases.take(db, "job", 60)
    expire(db, "job")
    other = Database(config)
    try:
        taken = leases.take(other, "job", 60)
        assert taken is not None
        assert stale.renew() is False
        stale.release()  # releases nothing of the new holder's
        assert leases.take(db, "job", 60) is None
        assert taken.renew() is True
    finally:
        other.close()


def test_a_wait_ends_when_the_holder_releases(db, config):
    held = leases.take(db, "job", 60)
    threading.Timer(0.3, held.release).start()
    other = Database(config)
    try:
        assert leases.take(other, "job", 60, wait=10) is not None
        assert leases.take(other, "job", 60, wait=0.2) is None  # held now, and the wait runs out
    finally:
        other.close()


def test_a_heartbeat_keeps_a_lease_and_a_holder_that_stopped_loses_it(db, config):
    """A 5 s lease kept alive past its length while its holder works (renewed every 1.7 s: a busy machine
    would have to delay three beats running to lose it); once the holder stops (dies), it runs out and another
    takes it."""
    lease = leases.take(db, "long job", 5)
    lease.keep_alive(config)
    other = Database(config)
    try:
        time.sleep(7)  # longer than the lease: only the heartbeat can have kept it
        assert leases.take(other, "long job", 5) is None and not lease.lost
        lease._beating.set()  # as if the holder died: nothing renews it any more
        assert leases.take(other, "long job", 5, wait=20) is not None
    finally:
        other.close()


def test_twenty_takers_at_once_get_one_lease(config):
    barrier, got = threading.Barrier(20), []

    def take():
        db = Database(config)
        try:
            barrier.wait(30)
            got.append(leases.take(db, "race", 60) is not None)
        finally:
            db.close()
    threads = [threading.Thread(target=take) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(got) == [False] * 19 + [True]


def test_a_monitor_run_that_lost_its_lease_stops(values, db, admin):
    """Renewed between steps: a run that outlived its lease, which another run has taken, acts no more."""
    config = make_config(values)
    lost = leases.take(db, monitor.lock_name(config), 60)
    expire(db, monitor.lock_name(config))
    assert leases.take(db, monitor.lock_name(config), 60) is not None  # the other run's
    run = monitor.Run(config, db, provider.Cloud(config, 10), io.StringIO().write, lost)
    with pytest.raises(monitor.Refused, match="lease ran out"):
        run.reconcile()


@pytest.mark.unit
def test_no_named_lock_is_left_in_the_product():
    calls = [f"{path.relative_to(ROOT)}:{number}" for path in sorted((ROOT / "cloudprovisioner").rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"\b(GET_LOCK|RELEASE_LOCK|IS_FREE_LOCK)\s*\(", line)]
    assert calls == []
