"""The one database helper: connect, query, transactions (leases, which hold across hosts, are leases.py).

It speaks to mysqlclient's C layer (`MySQLdb._mysql`) directly. The usual
`MySQLdb.connect()` imports connections, cursors and converters (the last
pulls in `decimal`): about 2.5 ms per CGI request, a fifth of a list
request's whole cost. What they would give us is done here instead: `%s`
parameters quoted by the C library's own escaping, and a small table of
converters for the column types our schema uses.

A lost or refused connection becomes `DatabaseUnavailable` (a domain
`Unavailable`), so callers never see MySQLdb's exceptions. Times are stored as UTC (the session time zone is
+00:00) and read back as ISO 8601 strings with a `Z`.
"""

import time

from MySQLdb import Error, IntegrityError, OperationalError, _mysql
from MySQLdb.constants import FIELD_TYPE

from .errors import Busy, Unavailable, no_such

# Client errors that mean "the server is not there (any more)", not "bad SQL":
# 1040 too many connections, 1053 shutdown in progress, 2002/2003 cannot connect,
# 2006 gone away, 2013 lost during query, 4031 disconnected by server (idle).
UNAVAILABLE_CODES = {1040, 1053, 2002, 2003, 2006, 2013, 4031}
DUPLICATE_KEY = 1062
# 1213: InnoDB chose this transaction as a deadlock's victim, or Galera refused its write set because another
# node committed a conflicting one first. Either way nothing of it was kept, and running it again is the cure.
CONFLICT = 1213
ATTEMPTS = 5  # of one transaction (or one statement outside any) that keeps losing to 1213, then WriteConflict

SESSION_SETUP = (
    "SET SESSION time_zone = '+00:00', "
    "sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"
)


def _iso_time(text):
    # "2026-11-23 11:28:46.025639" -> "2026-11-23T11:28:46Z"
    return f"{text[:10]}T{text[11:19]}Z"


# `int` and `str` take _mysql's fast paths in C (str decodes with the connection's utf8mb4).
CONVERTERS = {
    **dict.fromkeys((FIELD_TYPE.TINY, FIELD_TYPE.SHORT, FIELD_TYPE.LONG, FIELD_TYPE.INT24,
                     FIELD_TYPE.LONGLONG), int),
    **dict.fromkeys((FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING, FIELD_TYPE.STRING, FIELD_TYPE.BLOB,
                     FIELD_TYPE.ENUM, FIELD_TYPE.NEWDECIMAL), str),
    FIELD_TYPE.DATETIME: _iso_time,
}


class DatabaseUnavailable(Unavailable):
    def __init__(self, reason):
        super().__init__("the database is unavailable; try again shortly", "database-unavailable",
                         retry_after=5)
        self.reason = reason


def _translate(exc):
    code = exc.args[0] if exc.args else None
    if isinstance(exc, OperationalError) and code in UNAVAILABLE_CODES:
        return DatabaseUnavailable(str(exc))
    return None


class WriteConflict(Busy):
    """A transaction lost to concurrent writes (error 1213) every time it was tried."""

    def __init__(self):
        super().__init__("the database was busy with conflicting changes; try again", retry_after=1)


def _conflict(exc):
    return isinstance(exc, OperationalError) and exc.args and exc.args[0] == CONFLICT


def _pause(attempt):
    """A short, growing, jittered wait before running a conflicting transaction again, so that two that
    keep colliding fall out of step. The clock's low digits are the jitter: `random` would be about 0.8 ms
    more of imports on every CGI request (python -X importtime), for a wait that needs no real randomness."""
    jitter = time.perf_counter_ns() % 1000 / 1000
    time.sleep(jitter * 0.02 * 2 ** attempt)


class Database:
    """One connection, opened on first use; autocommit outside `transaction()`."""

    def __init__(self, config):
        self.config = config
        self._conn = None
        self._in_transaction = False

    def _connect(self):
        c = self.config
        params = dict(database=c.db_name, user=c.db_user, password=c.db_password,
                      charset="utf8mb4", conv=CONVERTERS, init_command=SESSION_SETUP,
                      connect_timeout=c.db_connect_timeout,
                      read_timeout=c.db_query_timeout, write_timeout=c.db_query_timeout)
        if c.db_socket:
            params["unix_socket"] = c.db_socket
        else:
            params.update(host=c.db_host, port=c.db_port)
        conn = _mysql.connect(**params)
        conn.autocommit(True)
        return conn

    def _literal(self, value):
        """One parameter as SQL: quoted and escaped by the C library for the connection's charset."""
        if value is None:
            return b"NULL"
        if isinstance(value, bool):
            return b"1" if value else b"0"
        if isinstance(value, int):
            return b"%d" % value
        if isinstance(value, str):
            return self._conn.string_literal(value.encode("utf-8"))
        raise TypeError(f"cannot pass {type(value).__name__} to SQL")

    def execute(self, sql, args=None):
        """Run one statement; answer its rows (as dicts) and the affected count.

        Parameters are `%s` in `sql` (and a literal % is written %%), as in MySQLdb. Outside a transaction, a
        statement that loses to a conflict (1213) is run again: nothing of it was kept.
        """
        for attempt in range(ATTEMPTS):
            try:
                return self._execute(sql, args)
            except OperationalError as exc:
                if self._in_transaction or not _conflict(exc):
                    raise
                _pause(attempt)
        raise WriteConflict()

    def _execute(self, sql, args):
        try:
            if self._conn is None:
                self._conn = self._connect()
            statement = sql.encode("utf-8")
            if args is not None:
                statement %= tuple(self._literal(arg) for arg in args)
            self._conn.query(statement)
            result = self._conn.store_result()
            rows = list(result.fetch_row(maxrows=0, how=1)) if result is not None else []
            return rows, self._conn.affected_rows()
        except Error as exc:
            problem = _translate(exc)
            if problem is not None:
                self._discard()
                raise problem from None
            raise

    def query(self, sql, args=None):
        return self.execute(sql, args)[0]

    def one(self, sql, args=None):
        rows = self.query(sql, args)
        return rows[0] if rows else None

    def existing(self, what, sql, args=None):
        """The one row a tenant-scoped lookup finds, or NotFound naming `what`: someone else's
        object and a made-up id answer alike."""
        row = self.one(sql, args)
        if row is None:
            raise no_such(what)
        return row

    def page(self, select, where, params, args, newest_first=False):
        """One keyset page of `select` (SELECT ... FROM table) under the `where` conditions, ordered
        by id from `args["cursor"]` on: `args["limit"]` rows and one more, which tells there is a next."""
        if "cursor" in args:
            where, params = [*where, "id < %s" if newest_first else "id > %s"], [*params, args["cursor"]]
        return self.query(f"{select} WHERE {' AND '.join(where)} ORDER BY id{' DESC' if newest_first else ''} "
                          "LIMIT %s", (*params, args["limit"] + 1))

    def tenant_rows(self, table, columns, tenant_id, ids, where=""):
        """{id: row} for those of `ids` that are the tenant's rows of `table` (and meet `where`)."""
        if not ids:
            return {}
        marks = ", ".join(["%s"] * len(ids))
        return {row["id"]: row for row in self.query(
            f"SELECT {columns} FROM {table} WHERE tenant_id = %s{where} AND id IN ({marks})", (tenant_id, *ids))}

    def update(self, sql, args=None):
        return self.execute(sql, args)[1]

    def insert_new(self, sql, args=None):
        """An INSERT that answers False instead of failing when a UNIQUE key already holds the value
        (how two requests racing to make the same named thing are told apart)."""
        try:
            return self.update(sql, args) > 0
        except IntegrityError as exc:
            if exc.args and exc.args[0] == DUPLICATE_KEY:
                return False
            raise

    def again_while_unavailable(self, work, seconds):
        """`work()` run again, on a new connection, while the database is unavailable, for up to `seconds`
        (a restart's worth); then its last DatabaseUnavailable. `work` must be safe to run twice: the
        answer to a COMMIT can be lost after the COMMIT took effect."""
        deadline = time.monotonic() + seconds
        pause = 0.2
        while True:
            try:
                return work()
            except DatabaseUnavailable:
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(2 * pause, 2.0)

    def transaction(self):
        """One unit of work, run again from the top when it loses to a conflict (1213):

            for attempt in db.transaction():
                with attempt:
                    ...

        Each attempt is committed at the end of its `with` and rolled back on any error; after ATTEMPTS
        conflicts, WriteConflict. So the body must be safe to run again: database work and local names only,
        never a cloud call or anything else done outside the database."""
        for attempt in range(ATTEMPTS):
            unit = _Transaction(self)
            yield unit
            if not unit.conflicted:
                return
            _pause(attempt)
        raise WriteConflict()

    def _discard(self):
        try:
            if self._conn is not None:
                self._conn.close()
        except Error:
            pass
        self._conn = None

    def close(self):
        self._discard()



class _Transaction:
    """One attempt of `Database.transaction()`. A class rather than contextlib.contextmanager: contextlib is
    one more import per request."""

    def __init__(self, db):
        self.db = db
        self.conflicted = False

    def __enter__(self):
        self.db.execute("START TRANSACTION")
        self.db._in_transaction = True
        return self.db

    def __exit__(self, kind, value, trace):
        try:
            if kind is None:
                try:
                    self.db.execute("COMMIT")  # Galera certifies the write set here, and may refuse it
                    return False
                except OperationalError as exc:
                    if not _conflict(exc):
                        raise
                    value = exc
            self.conflicted = _conflict(value)
            self._roll_back()
            return self.conflicted  # a conflict is swallowed here: transaction() runs the body again
        finally:
            self.db._in_transaction = False

    def _roll_back(self):
        try:
            self.db.execute("ROLLBACK")
        except (Error, Unavailable):
            self.db._discard()  # a lost connection rolls back by itself
