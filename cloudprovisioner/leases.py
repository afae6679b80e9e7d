"""Leases in a table: a name held by one holder until it is released or expires, so that something happens
once across processes and hosts (the monitor's run, the mail job, a VPC range, a tenant's first network).

Why not MySQL's named locks (`GET_LOCK`): a MariaDB Galera cluster refuses them, and where they work they
hold on one server only. A lease is a row: taken by one conditional statement (an expired lease is taken
over, so a holder that died blocks nobody for longer than its lease), renewed while held, released at the
end. On Galera two nodes that take the same lease at once cannot both commit: the loser's write set is
refused (1213), `db` runs the statement again, and it finds the lease held.

A lease outlives a crash of its holder by its length: a kill -9 in the middle keeps others waiting (or
skipping) until then, where a named lock ended with the connection. Lengths are chosen to outlast the work.
"""

import os
import time

from .errors import Unavailable

TABLE = ("CREATE TABLE IF NOT EXISTS leases (name VARCHAR(191) NOT NULL, holder CHAR(24) NOT NULL, "
         "expires_at DATETIME(6) NOT NULL, PRIMARY KEY (name)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 "
         "COLLATE=utf8mb4_bin")


class Lease:
    """A lease this process holds; `renew()` says whether it still does."""

    def __init__(self, db, name, holder, seconds):
        self.db, self.name, self.holder, self.seconds = db, name, holder, seconds
        self.lost = False  # set by the heartbeat when someone else has the lease now
        self._beating = None

    def keep_alive(self, config):
        """Renew the lease every third of its length from a thread of its own, on a connection of its own,
        until it is released: a holder that dies stops renewing, so its lease runs out within its length,
        while one busy in a long call keeps it. For a lease held longer than a request (the monitor's)."""
        import threading

        from .db import Database
        stop = self._beating = threading.Event()

        def beat():
            db = Database(config)
            try:
                while not stop.wait(self.seconds / 3):
                    try:
                        if not Lease(db, self.name, self.holder, self.seconds).renew():
                            self.lost = True
                            return
                    except Unavailable:
                        continue  # the database away: the lease runs out if it stays away that long
            finally:
                db.close()
        threading.Thread(target=beat, name=f"lease {self.name}", daemon=True).start()

    def renew(self):
        """Hold it `seconds` more from now; False when it expired and someone else took it meanwhile."""
        return self.db.update("UPDATE leases SET expires_at = UTC_TIMESTAMP(6) + INTERVAL %s SECOND "
                              "WHERE name = %s AND holder = %s", (self.seconds, self.name, self.holder)) > 0

    def release(self):
        """Give it up (answers whether it did). With the database gone meanwhile, it expires by itself."""
        if self._beating is not None:
            self._beating.set()
        try:
            return self.db.update("DELETE FROM leases WHERE name = %s AND holder = %s", (self.name, self.holder)) > 0
        except Unavailable:
            return False


def take(db, name, seconds, wait=0):
    """The lease `name` for `seconds`, or None when another holder has it and `wait` seconds of asking
    again did not change that."""
    holder = os.urandom(12).hex()
    deadline = time.monotonic() + wait
    pause = 0.05
    while True:
        if _take(db, name, holder, seconds):
            return Lease(db, name, holder, seconds)
        if time.monotonic() + pause > deadline:
            return None
        time.sleep(pause)
        pause = min(2 * pause, 0.5)


def _take(db, name, holder, seconds):
    """One try: take the lease over if it expired, or make it if there is none; each a single statement,
    so that of two tries at once one wins."""
    if db.update("UPDATE leases SET holder = %s, expires_at = UTC_TIMESTAMP(6) + INTERVAL %s SECOND "
                 "WHERE name = %s AND expires_at <= UTC_TIMESTAMP(6)", (holder, seconds, name)):
        return True
    return db.insert_new("INSERT INTO leases (name, holder, expires_at) "
                         "VALUES (%s, %s, UTC_TIMESTAMP(6) + INTERVAL %s SECOND)", (name, holder, seconds))


class held:  # noqa: N801 (used as a context manager, like a function)
    """`with leases.held(db, name, seconds, wait, refusal):` the lease for the block, or `refusal()` raised
    when it cannot be had. A class rather than contextlib.contextmanager: contextlib is one more import per
    request."""

    def __init__(self, db, name, seconds, wait, refusal):
        self.db, self.name, self.seconds, self.wait, self.refusal = db, name, seconds, wait, refusal

    def __enter__(self):
        self.lease = take(self.db, self.name, self.seconds, self.wait)
        if self.lease is None:
            raise self.refusal()
        return self.lease

    def __exit__(self, *exc):
        self.lease.release()
        return False
