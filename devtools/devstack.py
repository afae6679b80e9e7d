"""Throwaway real services for tests, the demo and the benchmark.

Everything here starts private instances on loopback, each confined to its own
base directory: a MariaDB server, an Apache 2.4 (Debian's binary with a
generated config) and generic background processes such as the sandbox cloud
API (``python -m docloud``).  Nothing touches the system MariaDB or /etc/apache2.

A development tool beside the product: cloudprovisioner never imports it.
Standard library only.

Permissions: when we run as root, Apache runs CGI scripts as ``www-data``.
Those scripts must reach the MariaDB socket and Apache's own cgid socket, so
every base directory is made mode 0755 and, as root, every parent of it must
be traversable by others (``o+x``).  A directory under ``/tmp`` made with
``tempfile.mkdtemp(dir="/tmp")`` works; pytest's ``tmp_path`` does not
(``/tmp/pytest-of-root`` is 0700).  Unix socket paths are limited to 107
bytes, so keep base directories short.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

__all__ = [
    "Apache",
    "MariaDB",
    "Process",
    "ServiceError",
    "check_traversable",
    "free_port",
    "wait_for_port",
]

LOOPBACK = "127.0.0.1"


class ServiceError(RuntimeError):
    """A service failed to start or stop; the message carries its log tail."""


# ---------------------------------------------------------------- helpers


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free right now on ``host``.

    The kernel picks it; there is a small window before the caller binds it,
    which is acceptable for tests on a private machine.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    """Wait until host:port accepts connections; raise TimeoutError if not."""
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f} s")
        time.sleep(0.05)


def _wait_port_closed(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while port_open(host, port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no {path})"
    return "\n".join(text.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_root() -> bool:
    return os.geteuid() == 0


def check_traversable(path: Path) -> None:
    """Raise PermissionError unless other users can reach ``path``.

    Only matters when we are root (CGI then runs as www-data).  We refuse
    rather than chmod parents we do not own: a silently opened-up home
    directory is worse than a clear error.
    """
    path = Path(path).resolve()
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            raise PermissionError(
                f"{parent} is not traversable by other users (mode "
                f"{parent.stat().st_mode & 0o777:o}); CGI scripts running as "
                f"www-data could not reach {path}. Use a directory under /tmp "
                "(tempfile.mkdtemp(dir='/tmp')) or pass shared=False."
            )


def _prepare_basedir(basedir: Path, shared: bool) -> Path:
    basedir = Path(basedir).resolve()
    basedir.mkdir(parents=True, exist_ok=True)
    basedir.chmod(0o755)
    if shared and _is_root():
        check_traversable(basedir)
    return basedir


def _terminate(proc: subprocess.Popen | None, pid: int | None, sig: int, timeout: float) -> bool:
    """Send ``sig`` and wait up to ``timeout`` for the process to go.

    Uses the Popen handle when we own the child (so it is reaped, not left a
    zombie), else polls the bare pid (a server started by another process).
    """
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    if pid is None or not _pid_alive(pid):
        return True
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ---------------------------------------------------------------- MariaDB


class MariaDB:
    """A private MariaDB server living entirely in ``basedir``.

    Layout: ``data/`` (datadir), ``mysqld.sock``, ``mysqld.pid``,
    ``error.log``.  Root has no password (``--auth-root-authentication-
    method=normal``) and is reached over the socket only: this is a test
    server bound to 127.0.0.1, never a deployment.
    """

    host = LOOPBACK

    def __init__(self, basedir: Path, *, shared: bool = True) -> None:
        self.basedir = _prepare_basedir(basedir, shared)
        self.datadir = self.basedir / "data"
        self.socket = str(self.basedir / "mysqld.sock")
        self.pidfile = self.basedir / "mysqld.pid"
        self.logfile = self.basedir / "error.log"
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None

    # -- lifecycle

    def running(self) -> bool:
        """True if the socket answers with a server greeting."""
        return self._greeting_ok()

    def start(self, timeout: float = 60.0) -> None:
        if self.running():
            # Started earlier (maybe by another process): learn its port.
            self.port = int(self.root_sql("SELECT @@port").strip())
            return
        if not self.datadir.is_dir() or not any(self.datadir.iterdir()):
            self._install()
        if self.port is None:
            # Keep the port across restarts so clients' settings stay valid.
            self.port = free_port()
        argv = [
            "mariadbd",
            "--no-defaults",  # never read /etc/mysql/*: that is the system instance's
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            f"--pid-file={self.pidfile}",
            f"--log-error={self.logfile}",
            "--innodb-buffer-pool-size=64M",
            # Test speed over durability: commits reach the OS at once but are
            # fsynced once a second, so kill -9 loses nothing; only a machine
            # crash could, which a throwaway server does not care about.
            "--innodb-flush-log-at-trx-commit=2",
            "--skip-name-resolve",  # no DNS on loopback; hosts are IPs
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--max-connections=200",
        ]
        if _is_root():
            argv.append("--user=root")  # mariadbd refuses to run as root otherwise
        # Own session: a Ctrl-C in the test terminal must not kill the server
        # half-way; fixtures stop it.
        with open(self.basedir / "mariadbd.out", "ab") as out:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self._greeting_ok():
            if self._proc.poll() is not None:
                raise ServiceError(f"mariadbd exited with {self._proc.returncode}:\n{_tail(self.logfile)}")
            if time.monotonic() > deadline:
                self.kill()
                raise ServiceError(f"mariadbd not ready after {timeout:.0f} s:\n{_tail(self.logfile)}")
            time.sleep(0.05)

    def stop(self, timeout: float = 60.0) -> None:
        """Clean shutdown (SIGTERM makes mariadbd flush and exit), then wait."""
        pid = _read_pid(self.pidfile)
        if not _terminate(self._proc, pid, signal.SIGTERM, timeout):
            raise ServiceError(f"mariadbd did not stop in {timeout:.0f} s:\n{_tail(self.logfile)}")
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: a crash, for recovery tests.

        The stale socket is left as a crash leaves it (mariadbd replaces it on
        the next start); the stale pid file is removed so a later stop() cannot
        signal an unrelated process that reused the pid.
        """
        _terminate(self._proc, _read_pid(self.pidfile), signal.SIGKILL, 10)
        self.pidfile.unlink(missing_ok=True)
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def error_log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- SQL

    def root_sql(self, sql: str) -> str:
        """Run ``sql`` (one or more statements) as root over the socket.

        Uses the ``mariadb`` CLI so this module needs no driver.  Returns the
        batch-mode output (tab-separated, no column names).
        """
        result = subprocess.run(
            [
                "mariadb",
                "--no-defaults",
                "--protocol=socket",
                f"--socket={self.socket}",
                "--user=root",
                "--batch",
                "--skip-column-names",
            ],
            input=sql,
            capture_output=True,
            check=False,  # we raise our own error with stderr
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise ServiceError(f"mariadb client failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def create_app_database(self, name: str, user: str, password: str) -> None:
        """Create database ``name`` and ``user`` with all privileges on it.

        The user exists for both 'localhost' (socket) and '127.0.0.1' (TCP):
        MariaDB matches them separately.  Idempotent; re-running resets the
        password.
        """
        _check_identifier(name)
        _check_identifier(user)
        pw = _sql_string(password)
        stmts = [
            (f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;")
        ]
        for host in ("localhost", "127.0.0.1"):
            account = f"'{user}'@'{host}'"
            stmts += [
                f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {pw};",
                f"ALTER USER {account} IDENTIFIED BY {pw};",
                f"GRANT ALL PRIVILEGES ON `{name}`.* TO {account};",
            ]
        self.root_sql("\n".join(stmts))

    # -- internals

    def _install(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        argv = [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={self.datadir}",
            # Passwordless root on the socket regardless of the OS user, so
            # root_sql works as root and as a normal user alike.
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]
        if _is_root():
            argv.append("--user=root")
        log = self.basedir / "install.log"
        with open(log, "wb") as out:
            rc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                timeout=120,
                check=False,
            ).returncode
        if rc != 0:
            # Leave an empty datadir so the next start retries the install.
            shutil.rmtree(self.datadir, ignore_errors=True)
            raise ServiceError(f"mariadb-install-db failed ({rc}):\n{_tail(log)}")

    def _greeting_ok(self) -> bool:
        """Connect to the socket and read the handshake packet.

        The server creates the socket only once it accepts connections, and
        the first packet is a protocol-10 greeting (0xff would be an error
        such as too many connections).  Cheaper than spawning the client.
        """
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(self.socket)
                header = s.recv(5)
        except OSError:
            return False
        return len(header) == 5 and header[4] == 10


def _check_identifier(value: str) -> None:
    # We interpolate names into SQL, so allow only plain identifiers.
    if not value or len(value) > 64 or not all(c.isascii() and (c.isalnum() or c == "_") for c in value):
        raise ValueError(f"not a plain SQL identifier: {value!r}")


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ---------------------------------------------------------------- Apache

APACHE_BIN = "/usr/sbin/apache2"
APACHE_MODULES_DIR = Path("/usr/lib/apache2/modules")
APACHE_MODULES = (
    "mpm_event",
    "unixd",  # User/Group
    "authz_core",
    "authz_host",
    "cgid",  # mod_cgi is for prefork; cgid works with threaded MPMs
    "alias",  # ScriptAlias
    "env",  # SetEnv: the config-file path reaches the CGI scripts
    "mime",
    "log_config",
    "dir",
    "headers",
    "setenvif",
    "reqtimeout",  # on in Debian's default; the shipped site config sets its limits (RequestReadTimeout)
)


class Apache:
    """A private Apache 2.4 with a generated config in ``basedir``.

    ``includes`` are the project's site configs, included after the server
    setup.  As root, children (and so CGI scripts) run as ``user`` (default
    www-data), like a Debian deployment.  ``port=0`` picks a free port.
    """

    def __init__(
        self,
        basedir: Path,
        port: int,
        includes: list[Path],
        user: str | None = None,
        *,
        extra_modules: tuple[str, ...] = (),
        shared: bool = True,
    ) -> None:
        self.basedir = _prepare_basedir(basedir, shared)
        self.port = port or free_port()
        self.includes = [Path(p).resolve() for p in includes]
        self.user = (user or "www-data") if _is_root() else None
        self.modules = APACHE_MODULES + tuple(m for m in extra_modules if m not in APACHE_MODULES)
        self.conf = self.basedir / "httpd.conf"
        self.pidfile = self.basedir / "apache2.pid"
        self.logfile = self.basedir / "error.log"
        self.access_log = self.basedir / "access.log"
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._proc: subprocess.Popen | None = None

    def write_config(self) -> Path:
        """(Re)generate httpd.conf; start() and configtest() call it."""
        b = self.basedir
        run = b / "run"
        htdocs = b / "htdocs"
        for d in (run, htdocs):
            d.mkdir(exist_ok=True)
            d.chmod(0o755)
        lines = [
            "# Generated by devtools.devstack; do not edit.",
            f'ServerRoot "{b}"',
            f'DefaultRuntimeDir "{run}"',
            f'PidFile "{self.pidfile}"',
            f"Mutex file:{run} default",
            f"Listen {LOOPBACK}:{self.port}",
            f"ServerName {LOOPBACK}",
            "",
            # Debian compiles unixd and log_config in, and loading a built-in
            # module is a fatal error: load each only if it is not there yet.
            *(
                f"<IfModule !{m}_module>\n"
                f"    LoadModule {m}_module {APACHE_MODULES_DIR}/mod_{m}.so\n"
                "</IfModule>"
                for m in self.modules
            ),
            "",
        ]
        if self.user:
            lines += [f"User {self.user}", f"Group {self.user}", ""]
        lines += [
            f'ErrorLog "{self.logfile}"',
            "LogLevel warn",
            # The request log's format is the one named cloudprovisioner, as apache/cloudprovisioner.conf has
            # a deployment's virtual host log the site: that file defines it (later, so its definition wins);
            # this one stands in for sites that do not.
            'LogFormat "%h %l %u %t \\"%r\\" %>s %b %D" cloudprovisioner',
            f'ScriptSock "{run}/cgid.sock"',
            "TypesConfig /etc/mime.types",
            "",
            "# Sized for a 2-core benchmark box: 2 x 25 threads.",
            "StartServers 2",
            "ThreadsPerChild 25",
            "MaxRequestWorkers 50",
            "MinSpareThreads 25",
            "MaxSpareThreads 50",
            "MaxConnectionsPerChild 0",
            "Timeout 30",
            "KeepAlive On",
            # graceful-stop waits for in-flight requests; cap it so stop() ends.
            "GracefulShutdownTimeout 5",
            "HostnameLookups Off",
            "ServerTokens Prod",
            "ServerSignature Off",
            # No TraceEnable here: the shipped site config must bring it (TRACE's default is on).
            "",
            "<Directory />",
            "    AllowOverride None",
            "    Require all denied",
            "</Directory>",
            f'DocumentRoot "{htdocs}"',
            # Empty, and denied to clients, but not to Apache's own look-ups: CGI looks up each PATH_INFO as a
            # URL for PATH_TRANSLATED, and a denied DocumentRoot logs AH01630 for every such look-up.
            f'<Directory "{htdocs}">',
            "    Options None",
            "    Require expr %{IS_SUBREQ} == 'true'",
            "</Directory>",
            # No read timeouts unless a site config sets them (mod_reqtimeout has defaults of its own once
            # loaded, as Debian's reqtimeout.conf has): the shipped site config must bring its own limits.
            "RequestReadTimeout header=0 body=0",
            "",
            *(f'Include "{p}"' for p in self.includes),
            "",
            f'CustomLog "{self.access_log}" cloudprovisioner',
            "",
        ]
        self.conf.write_text("\n".join(lines))
        return self.conf

    def configtest(self) -> str:
        """Return the output of ``apache2 -t`` ("Syntax OK" when fine)."""
        self.write_config()
        result = self._ctl("-t")
        return (result.stdout + result.stderr).strip()

    def running(self) -> bool:
        pid = _read_pid(self.pidfile)
        return pid is not None and _pid_alive(pid) and port_open(LOOPBACK, self.port)

    def start(self, timeout: float = 30.0) -> None:
        if self.running():
            return
        self.write_config()
        # Truncate so a failure report shows this run's errors only.
        self.logfile.write_text("")
        # -DFOREGROUND keeps the parent as our child: we get its exit status
        # if it dies at startup and need no systemd or apache2ctl.  Debian's
        # APACHE_RUN_* variables are only needed by /etc/apache2/apache2.conf.
        with open(self.basedir / "apache2.out", "ab") as out:
            self._proc = subprocess.Popen(
                [APACHE_BIN, "-f", str(self.conf), "-DFOREGROUND"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=self._env(),
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        # The port opens before the pid file is written: wait for both, or running() can be briefly False.
        while not (port_open(LOOPBACK, self.port) and _read_pid(self.pidfile)):
            if self._proc.poll() is not None:
                raise ServiceError(f"apache2 exited with {self._proc.returncode}:\n{self._failure_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"apache2 not listening after {timeout:.0f} s:\n{self._failure_text()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGWINCH = ``-k graceful-stop``), then SIGKILL."""
        pid = _read_pid(self.pidfile) or (self._proc.pid if self._proc else None)
        if not _terminate(self._proc, pid, signal.SIGWINCH, timeout):
            _terminate(self._proc, pid, signal.SIGKILL, 5)
        if pid is not None:
            # Workers can outlive a parent that was killed (or that ignored SIGWINCH because
            # it came before its handlers were set): end the whole process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        # Worker children exit with the parent; wait for the port as well so
        # the next start() on the same port cannot race them.
        _wait_port_closed(LOOPBACK, self.port, 10)
        self._proc = None

    def error_log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("LANG", "C")
        return env

    def _ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [APACHE_BIN, "-f", str(self.conf), *args],
            capture_output=True,
            text=True,
            env=self._env(),
            timeout=30,
            check=False,  # callers read the output
        )

    def _failure_text(self) -> str:
        # Config errors go to stderr (apache2.out) before ErrorLog is open.
        return _tail(self.basedir / "apache2.out") + "\n" + _tail(self.logfile)


# ---------------------------------------------------------------- Process


class Process:
    """A background subprocess with its stdout+stderr in ``logfile``.

    With ``ready_line_prefix``, start() waits for a line starting with it
    (e.g. the sandbox's ``sandbox listening on http://HOST:PORT/v2/``) and
    returns that line.  Output goes to a file, not a pipe, so a chatty child
    can never block on a full pipe nobody reads.

    ``env`` is the child's complete environment (None inherits ours);
    PYTHONUNBUFFERED=1 is added so Python children print the ready line
    promptly.  ``cwd`` is the child's working directory (None: ours), e.g. the
    repository root for ``python -m docloud``, which is not installed.
    """

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str] | None,
        logfile: Path,
        ready_line_prefix: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.cwd = cwd
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.logfile = Path(logfile)
        self.ready_line_prefix = ready_line_prefix
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> str | None:
        """Start the child; return the ready line (None without a prefix)."""
        if self.running():
            raise ServiceError(f"already running: {self.argv}")
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        start_offset = self.logfile.stat().st_size if self.logfile.exists() else 0
        with open(self.logfile, "ab") as out:
            # Own process group, so stop() also reaches grandchildren.
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        if self.ready_line_prefix is None:
            return None
        deadline = time.monotonic() + timeout
        while True:
            line = self._find_ready_line(start_offset)
            if line is not None:
                return line
            if self._proc.poll() is not None:
                raise ServiceError(
                    f"{self.argv[0]} exited with {self._proc.returncode} before "
                    f"printing {self.ready_line_prefix!r}:\n{_tail(self.logfile)}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise ServiceError(
                    f"{self.argv[0]} did not print {self.ready_line_prefix!r} "
                    f"in {timeout:.0f} s:\n{_tail(self.logfile)}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL after ``timeout``; return the exit code."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._proc.wait()
        return self._proc.returncode

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._signal_group(signal.SIGKILL)
            self._proc.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self._proc.pid, sig)

    def _find_ready_line(self, offset: int) -> str | None:
        try:
            with open(self.logfile, "rb") as f:
                f.seek(offset)
                data = f.read()
        except OSError:
            return None
        # Only complete lines: a half-written one could be cut mid-URL.
        for raw in data.split(b"\n")[:-1]:
            line = raw.decode(errors="replace").rstrip("\r")
            if line.startswith(self.ready_line_prefix):
                return line
        return None
