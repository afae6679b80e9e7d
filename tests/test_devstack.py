"""Tests for devtools.devstack: real MariaDB, Apache and processes.

Base directories come from ``tempfile.mkdtemp(dir="/tmp")`` rather than
pytest's ``tmp_path``: as root, Apache runs CGI as www-data, which cannot
traverse ``/tmp/pytest-of-root`` (mode 0700).
"""

from __future__ import annotations

import base64
import getpass
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import MySQLdb
import pytest

from devtools.devstack import (
    Apache,
    MariaDB,
    Process,
    ServiceError,
    check_traversable,
    free_port,
    port_open,
    wait_for_port,
)

pytestmark = pytest.mark.services  # the launchers start real MariaDB and Apache servers

IS_ROOT = os.geteuid() == 0
APP_DB, APP_USER, APP_PASSWORD = "cp_test", "cp_app", "s3cret'pw\\x"


def _shared_tmpdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="cpds-", dir="/tmp"))
    d.chmod(0o755)
    return d


@pytest.fixture(scope="module")
def stackdir():
    d = _shared_tmpdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def mariadb(stackdir):
    db = MariaDB(stackdir / "db")
    try:
        db.start()
        db.create_app_database(APP_DB, APP_USER, APP_PASSWORD)
        yield db
    finally:
        # kill() if a test left it half-way; stop() is the normal path.
        try:
            db.stop()
        except ServiceError:
            db.kill()


def _connect(db: MariaDB, tcp: bool):
    where = {"host": db.host, "port": db.port} if tcp else {"unix_socket": db.socket}
    return MySQLdb.connect(user=APP_USER, password=APP_PASSWORD, database=APP_DB, **where)


# ------------------------------------------------------------------ helpers


def test_free_port_and_wait_for_port():
    port = free_port()
    assert not port_open("127.0.0.1", port)
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", port, timeout=0.2)


def test_check_traversable_refuses_private_parent(stackdir):
    private = stackdir / "private"
    private.mkdir(mode=0o700)
    try:
        with pytest.raises(PermissionError, match="not traversable"):
            check_traversable(private / "db")
        if IS_ROOT:
            with pytest.raises(PermissionError):
                MariaDB(private / "db")
            MariaDB(private / "db", shared=False)  # explicit opt-out
            assert (private / "db").stat().st_mode & 0o777 == 0o755
    finally:
        shutil.rmtree(private)


# ------------------------------------------------------------------ MariaDB


@pytest.mark.parametrize("tcp", [False, True], ids=["socket", "tcp"])
def test_app_user_connects(mariadb, tcp):
    conn = _connect(mariadb, tcp)
    try:
        cur = conn.cursor()
        cur.execute("SELECT DATABASE(), @@character_set_database, CURRENT_USER()")
        name, charset, user = cur.fetchone()
        assert name == APP_DB
        assert charset == "utf8mb4"
        assert user.startswith(APP_USER + "@")
    finally:
        conn.close()


def test_create_app_database_is_idempotent(mariadb):
    mariadb.create_app_database(APP_DB, APP_USER, APP_PASSWORD)
    out = mariadb.root_sql(f"SHOW GRANTS FOR '{APP_USER}'@'127.0.0.1'")
    assert f"`{APP_DB}`.*" in out


def test_create_app_database_rejects_odd_names(mariadb):
    with pytest.raises(ValueError):
        mariadb.create_app_database("x; DROP DATABASE mysql", "u", "p")


def test_root_sql_error_raises(mariadb):
    with pytest.raises(ServiceError, match="no_such_table"):
        mariadb.root_sql("SELECT * FROM mysql.no_such_table")


def test_start_is_idempotent(mariadb):
    port = mariadb.port
    mariadb.start()
    assert mariadb.port == port and mariadb.running()
    # A second object on the same basedir finds the running server.
    other = MariaDB(mariadb.basedir)
    other.start()
    assert other.port == port


def test_data_survives_kill_and_restart(mariadb):
    conn = _connect(mariadb, tcp=False)
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS t (id INT PRIMARY KEY, v VARCHAR(20))")
    cur.execute("REPLACE INTO t VALUES (1, 'before-kill')")
    conn.commit()
    conn.close()

    mariadb.kill()
    assert not mariadb.running()
    port = mariadb.port
    mariadb.start()  # crash recovery over stale socket and pid files
    assert mariadb.port == port

    conn = _connect(mariadb, tcp=True)
    cur = conn.cursor()
    cur.execute("SELECT v FROM t WHERE id = 1")
    assert cur.fetchone() == ("before-kill",)
    conn.close()

    mariadb.restart()  # clean stop + start
    assert mariadb.running()
    conn = _connect(mariadb, tcp=False)
    conn.cursor().execute("SELECT 1")
    conn.close()


# ------------------------------------------------------------------ Apache

CGI_HEADER = "printf 'Content-Type: text/plain\\r\\n\\r\\n'\n"


@pytest.fixture(scope="module")
def apache(stackdir, mariadb):
    cgi = stackdir / "cgi"
    cgi.mkdir()
    cgi.chmod(0o755)
    scripts = {
        "t.cgi": "id -un\n",
        "auth.cgi": 'printf "%s" "$HTTP_AUTHORIZATION"\n',
        # Proves the MariaDB socket is reachable by the CGI user.
        "db.cgi": (
            f"mariadb --no-defaults --socket={mariadb.socket} --user={APP_USER}"
            f' --password="$DBPW" --batch --skip-column-names'
            f" -e 'SELECT CURRENT_USER()' 2>&1\n"
        ),
    }
    for name, body in scripts.items():
        path = cgi / name
        path.write_text("#!/bin/sh\n" + CGI_HEADER + body)
        path.chmod(0o755)
    site = stackdir / "site.conf"
    site.write_text(
        f"ScriptAlias /t {cgi}/t.cgi\n"
        f"ScriptAlias /auth {cgi}/auth.cgi\n"
        f"ScriptAlias /db {cgi}/db.cgi\n"
        f'SetEnv DBPW "{APP_PASSWORD}"\n'
        f"<Directory {cgi}>\n"
        "    Options +ExecCGI\n"
        "    CGIPassAuth On\n"
        "    Require all granted\n"
        "</Directory>\n"
    )
    server = Apache(stackdir / "apache", free_port(), [site])
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read().decode()


def test_configtest(apache):
    assert "Syntax OK" in apache.configtest()


def test_cgi_runs_as_unprivileged_user(apache):
    status, body = _get(apache.url + "/t")
    assert status == 200
    assert body.strip() == ("www-data" if IS_ROOT else getpass.getuser())


def test_authorization_reaches_cgi(apache):
    token = "Basic " + base64.b64encode(b"alice:pw").decode()
    status, body = _get(apache.url + "/auth", {"Authorization": token})
    assert status == 200
    assert body == token


def test_cgi_reaches_mariadb_socket(apache):
    status, body = _get(apache.url + "/db")
    assert status == 200
    assert body.strip() == f"{APP_USER}@localhost"


def test_root_directory_denied(apache):
    with pytest.raises(urllib.error.HTTPError) as e:
        _get(apache.url + "/")
    assert e.value.code == 403


def test_apache_start_failure_reports_log(stackdir):
    bad = stackdir / "bad.conf"
    bad.write_text("NoSuchDirective on\n")
    server = Apache(stackdir / "apache-bad", 0, [bad])
    assert "NoSuchDirective" in server.configtest()
    with pytest.raises(ServiceError, match="NoSuchDirective"):
        server.start()
    assert not port_open("127.0.0.1", server.port)


def test_apache_stop_closes_port(stackdir):
    server = Apache(stackdir / "apache-stop", 0, [])
    server.start()
    assert port_open("127.0.0.1", server.port) and server.running()
    server.stop()
    assert not port_open("127.0.0.1", server.port)
    assert not server.running()


# ------------------------------------------------------------------ Process

SERVER_PY = """
import signal, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("starting up")
print("sandbox listening on http://127.0.0.1:1234/v2/")
time.sleep(60)
"""


def test_process_ready_line_and_stop(stackdir):
    log = stackdir / "proc.log"
    proc = Process(
        [sys.executable, "-c", SERVER_PY, "normal"],
        None,
        log,
        ready_line_prefix="sandbox listening on ",
    )
    line = proc.start(timeout=10)
    try:
        assert line == "sandbox listening on http://127.0.0.1:1234/v2/"
        assert proc.running()
    finally:
        rc = proc.stop()
    assert rc == -15 and not proc.running()
    assert "starting up" in log.read_text()


def test_process_sigkill_after_ignored_sigterm(stackdir):
    proc = Process(
        [sys.executable, "-c", SERVER_PY, "stubborn"],
        None,
        stackdir / "stubborn.log",
        ready_line_prefix="sandbox listening on ",
    )
    proc.start(timeout=10)
    assert proc.stop(timeout=0.5) == -9


def test_process_early_exit_raises_with_log(stackdir):
    proc = Process(
        [sys.executable, "-c", "print('boom: no port'); raise SystemExit(3)"],
        None,
        stackdir / "early.log",
        ready_line_prefix="sandbox listening on ",
    )
    with pytest.raises(ServiceError, match="boom: no port"):
        proc.start(timeout=10)
