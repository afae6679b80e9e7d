"""The DB helper against the real MariaDB: parameters are quoted safely, types come back right."""

import pytest

from cloudprovisioner.db import Database, DatabaseUnavailable
from cloudprovisioner.errors import Unavailable
from cloudprovisioner.web.responses import problem_for
from tests.support import make_config

NASTY = ["it's", 'say "hi"', "back\\slash", "50% off %s", "é漢字🙂", "'; DROP TABLE servers; --", "\x00nul"]


@pytest.mark.parametrize("text", NASTY)
def test_strings_round_trip_unchanged(db, text):
    assert db.one("SELECT %s AS v", (text,))["v"] == text


def test_numbers_null_and_times(db):
    row = db.one("SELECT %s AS n, %s AS nothing, %s AS yes, "
                 "CAST('2026-01-02 03:04:05.5' AS DATETIME(6)) AS t, COUNT(*) AS c FROM servers",
                 (2**40, None, True))
    assert row == {"n": 2**40, "nothing": None, "yes": 1, "t": "2026-01-02T03:04:05Z", "c": 0}


def test_update_counts_affected_rows(db):
    assert db.update("UPDATE servers SET owner = 'x' WHERE id = %s", ("nope",)) == 0


def test_unsupported_parameter_type_is_refused(db):
    with pytest.raises(TypeError):
        db.one("SELECT %s", (1.5,))


def test_sql_errors_are_not_disguised_as_unavailability(db):
    from MySQLdb import ProgrammingError
    with pytest.raises(ProgrammingError):
        db.query("SELECT * FROM no_such_table")


def test_unreachable_server_is_database_unavailable(values):
    db = Database(make_config(dict(values, CP_DB_SOCKET="/nonexistent.sock")))
    with pytest.raises(DatabaseUnavailable) as caught:
        db.query("SELECT 1")
    assert isinstance(caught.value, Unavailable) and caught.value.slug == "database-unavailable"
    assert problem_for(caught.value).status == 503 and caught.value.retry_after == 5  # what a request answers


def test_the_session_is_utc_and_strict(db):
    row = db.one("SELECT @@session.time_zone AS tz, @@session.sql_mode AS mode")
    assert row["tz"] == "+00:00" and "STRICT_ALL_TABLES" in row["mode"]
