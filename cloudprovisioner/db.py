"""The one database helper: connect, query, transactions, named locks.

A lost or refused connection becomes a 503 problem, so callers never see
MySQLdb's exceptions. Times are stored as UTC (the session time zone is +00:00).
"""

import MySQLdb
import MySQLdb.cursors

from .errors import Problem

# Client errors that mean "the server is not there (any more)", not "bad SQL":
# 1040 too many connections, 1053 shutdown in progress, 2002/2003 cannot connect,
# 2006 gone away, 2013 lost during query, 4031 disconnected by server (idle).
UNAVAILABLE_CODES = {1040, 1053, 2002, 2003, 2006, 2013, 4031}

SESSION_SETUP = (
    "SET SESSION time_zone = '+00:00', "
    "sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"
)


class DatabaseUnavailable(Problem):
    def __init__(self, reason):
        super().__init__(503, "database-unavailable",
                         "the database is unavailable; try again shortly",
                         headers=[("Retry-After", "5")])
        self.reason = reason


def _translate(exc):
    code = exc.args[0] if exc.args else None
    if isinstance(exc, MySQLdb.OperationalError) and code in UNAVAILABLE_CODES:
        return DatabaseUnavailable(str(exc))
    return None


class Database:
    """One connection, opened on first use; autocommit unless in `transaction()`."""

    def __init__(self, config):
        self.config = config
        self._conn = None

    def _connect(self):
        c = self.config
        params = dict(db=c.db_name, user=c.db_user, password=c.db_password,
                      charset="utf8mb4", autocommit=True, init_command=SESSION_SETUP,
                      connect_timeout=c.db_connect_timeout,
                      read_timeout=c.db_query_timeout, write_timeout=c.db_query_timeout,
                      cursorclass=MySQLdb.cursors.DictCursor)
        if c.db_socket:
            params["unix_socket"] = c.db_socket
        else:
            params.update(host=c.db_host, port=c.db_port)
        try:
            return MySQLdb.connect(**params)
        except MySQLdb.Error as exc:
            raise _translate(exc) or exc from None

    def _cursor(self):
        if self._conn is None:
            self._conn = self._connect()
        return self._conn.cursor()

    def execute(self, sql, args=None):
        """Run one statement; answer its rows (as dicts) and the affected count."""
        try:
            cursor = self._cursor()
            count = cursor.execute(sql, args)
            return list(cursor.fetchall()), count
        except MySQLdb.Error as exc:
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

    def update(self, sql, args=None):
        return self.execute(sql, args)[1]

    def transaction(self):
        """`with db.transaction():` commits at the end, rolls back on any error."""
        return _Transaction(self)

    def _rollback_quietly(self):
        try:
            self._conn.rollback()
        except (MySQLdb.Error, AttributeError):
            self._discard()

    def get_lock(self, name, timeout=0):
        """A named lock held by this connection; it holds across hosts sharing the database."""
        row = self.one("SELECT GET_LOCK(%s, %s) AS got", (name, timeout))
        return bool(row and row["got"] == 1)

    def release_lock(self, name):
        self.query("SELECT RELEASE_LOCK(%s) AS released", (name,))

    def _discard(self):
        try:
            if self._conn is not None:
                self._conn.close()
        except MySQLdb.Error:
            pass
        self._conn = None

    def close(self):
        self._discard()


class _Transaction:
    # A class rather than contextlib.contextmanager: contextlib is one more import per request.
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("START TRANSACTION")
        return self.db

    def __exit__(self, kind, value, trace):
        if kind is None:
            self.db.execute("COMMIT")
        else:
            self.db._rollback_quietly()
        return False
