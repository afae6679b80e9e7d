"""Helpers shared by the tests: a WSGI client, an HTTP client, and the sandbox's knobs."""

import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from wsgiref.util import setup_testing_defaults

from cloudprovisioner import config as configuration

TEST_TOKEN = "test-token"
TEST_INSTALL_ID = "testinstall01"
TEST_SECRET = "test-signing-secret-that-is-long-enough-0123456789"


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {name.lower(): value for name, value in headers}
        self.body = body

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def content_type(self):
        return self.headers.get("content-type", "")


def encode(body, content_type):
    if body is None:
        return b"", None
    if isinstance(body, bytes):
        return body, content_type
    if content_type == "application/x-www-form-urlencoded":
        from urllib.parse import urlencode
        return urlencode(body, doseq=True).encode(), content_type
    return json.dumps(body).encode(), content_type or "application/json"


def call(app, method, path, body=None, content_type=None, headers=None, script_name="/api"):
    """Drive the WSGI app in-process the way CGIHandler would, through wsgiref's validator: an answer
    that breaks the WSGI rules (a status or header of the wrong type, a body that is not bytes, a
    `wsgi.input` read the wrong way, an iterable never closed) fails the test that made it."""
    from wsgiref.validate import validator
    data, content_type = encode(body, content_type)
    path, _, query = path.partition("?")
    environ = {"REQUEST_METHOD": method, "SCRIPT_NAME": script_name, "PATH_INFO": path, "REMOTE_ADDR": "127.0.0.1",
               "QUERY_STRING": query, "wsgi.input": io.BytesIO(data), "wsgi.errors": sys.stderr}
    if data or method in ("POST", "PUT", "PATCH"):
        environ["CONTENT_LENGTH"] = str(len(data))
    if content_type:
        environ["CONTENT_TYPE"] = content_type
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    setup_testing_defaults(environ)
    started = {}

    def start_response(status, response_headers):
        started["status"] = int(status.split()[0])
        started["headers"] = response_headers
    answer = validator(app)(environ, start_response)
    try:
        body_bytes = b"".join(answer)
    finally:
        answer.close()
    return Answer(started["status"], started["headers"], body_bytes)


def http(method, url, body=None, content_type=None, headers=None, timeout=30):
    """A real HTTP request; any status is an answer, not an exception."""
    data, content_type = encode(body, content_type)
    request = urllib.request.Request(url, data=data if body is not None else None, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, response.getheaders(), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers.items(), error.read())


def knob(sandbox_url, method, path, body=None):
    """Turn one of the sandbox's knobs (`/_sandbox/...`)."""
    root = sandbox_url.split("/v2/")[0]
    return http(method, root + path, body)


def make_config(values):
    return configuration.Config(dict(values))


# What the local cloud is set to between tests: droplets turn active after a second, the full hourly quota.
SANDBOX_DEFAULTS = {"activate_after": 1, "ratelimit_limit": 5000, "ratelimit_remaining": 5000}
# Every table of the service, children before parents, so foreign keys never object.
EVERY_TABLE = ("leases", "tenant_quotas", "cloud_sizes", "tenant_buckets", "account_keys_added", "orphans",
               "account_vpcs", "counters", "service_state",
               "idempotency_keys", "operations", "servers", "firewalls", "vpcs",
               "workspaces", "ssh_keys", "vmcp_configs", "vmcp_keys", "audit_log",
               "login_throttle", "outbox", "registrations", "password_resets", "invitations", "api_tokens",
               "refresh_tokens", "sessions", "users", "tenants")


def reset_sandbox(sandbox_url):
    """The local cloud as a fresh account has it (its default VPCs only), no fault rules, SANDBOX_DEFAULTS."""
    for method, path, body in (("POST", "/_sandbox/reset", None), ("DELETE", "/_sandbox/faults", None),
                               ("POST", "/_sandbox/config", SANDBOX_DEFAULTS)):
        answer = knob(sandbox_url, method, path, body)
        assert answer.status in (200, 204), (path, answer.body)


def empty_database(config):
    """Every row of the service gone (the schema and its migrations stay)."""
    from cloudprovisioner.db import Database
    db = Database(config)
    try:
        for table in EVERY_TABLE:
            db.update(f"DELETE FROM {table}")
    finally:
        db.close()


def installed_config(prefix):
    """The configuration an installed service runs with: its env file."""
    return configuration.load(environ={}, path=prefix / "etc" / "cloudprovisioner.env")


def assert_problem(answer, status):
    assert answer.status == status, answer.body
    assert answer.content_type == "application/problem+json"
    problem = answer.json
    assert problem["status"] == status
    assert problem["title"] and problem["detail"] and problem["type"]
    assert b"Traceback" not in answer.body
    return problem


class Client:
    """Calls the in-process app as one caller: `login()` keeps the tokens for later calls."""

    def __init__(self, app, token=None):
        self.app = app
        self.token = token
        self.refresh_token = None

    def login(self, email, password):
        answer = self.post("/auth/login", {"email": email, "password": password})
        assert answer.status == 200, answer.body
        self.token, self.refresh_token = answer.json["access_token"], answer.json["refresh_token"]
        return self

    def request(self, method, path, body=None, content_type=None, headers=None):
        headers = dict(headers or {})
        if self.token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.token}"
        return call(self.app, method, path, body, content_type, headers)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


class MailServer:
    """aiosmtpd on a free loopback port, keeping each message it receives."""

    def __init__(self):
        self.messages = []
        self.controller = None
        self.port = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        from email import message_from_bytes, policy
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def start(self):
        from aiosmtpd.controller import Controller

        from devtools.devstack import free_port
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        self.controller.stop()


def make_install(source, prefix):
    """`make install` from the tree `source` into a scratch prefix, its config, Apache and cron files inside it."""
    dirs = {"PREFIX": prefix, "CONFDIR": prefix / "etc", "APACHE_CONFDIR": prefix / "apache",
            "CRONDIR": prefix / "cron.d"}
    done = subprocess.run(["make", "-C", str(source), "install", *(f"{k}={v}" for k, v in dirs.items())],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr


UNLIMITED_TENANTS = {"CP_TENANT_CLOUD_RATE": "0", "CP_TENANT_MAX_VPCS": "1000", "CP_TENANT_MAX_FIREWALLS": "1000",
                     "CP_QUOTA_MAX_SERVERS": "100000", "CP_QUOTA_MAX_VCPUS": "100000",
                     "CP_QUOTA_MAX_MEMORY_MB": "100000000", "CP_QUOTA_MONTHLY_BUDGET": "10000000"}


def configure_install(prefix, mariadb, sandbox_url, smtp, database):
    """Point an installed env file at the test services, with a database (and user) of its own; answers
    the env file. Everything `make install` generated (secrets, the installation id) is kept."""
    import secrets
    password = secrets.token_urlsafe(18)
    mariadb.create_app_database(database, database, password)
    env_file = prefix / "etc" / "cloudprovisioner.env"
    settings = {"CP_DB_SOCKET": mariadb.socket, "CP_DB_NAME": database, "CP_DB_USER": database,
                "CP_DB_PASSWORD": password, "CP_DO_TOKEN": TEST_TOKEN, "CP_DO_API_URL": sandbox_url,
                "CP_MAX_BODY_BYTES": "100000", "CP_SMTP_HOST": "127.0.0.1", "CP_SMTP_PORT": str(smtp.port),
                "CP_REGISTRATION": "open"}
    # Modules act as one tenant for many requests; the tests of the tenant limits set their own. An older
    # release (tests/test_upgrade.py) knows no such keys, and refuses unknown ones.
    settings.update({key: value for key, value in UNLIMITED_TENANTS.items() if f"\n{key}=" in env_file.read_text()})
    lines = [line for line in env_file.read_text().splitlines() if line.split("=")[0] not in settings]
    env_file.write_text("\n".join(lines + [f"{k}={v}" for k, v in settings.items()]) + "\n")
    return env_file


def run_cron_job(prefix, script, timeout=120):
    """Run a job's line from the installed cron file as cron would: its user, its command."""
    line = next(line for line in (prefix / "cron.d" / "cloudprovisioner").read_text().splitlines()
                if line.startswith("* * * * *") and script in line)
    fields = line.split(None, 6)
    user, command = fields[5], fields[6]
    argv = ["sh", "-c", command]
    if os.geteuid() == 0:
        argv = ["/usr/sbin/runuser", "-u", user, "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=timeout)


class installed_settings:  # noqa: N801 (used as a context manager, like a function)
    """Temporarily change lines of an installed env file (the CGI scripts and cron jobs read it per run)."""

    def __init__(self, prefix, **overrides):
        self.path = prefix / "etc" / "cloudprovisioner.env"
        self.overrides = overrides

    def __enter__(self):
        self.original = self.path.read_text()
        lines = [line for line in self.original.splitlines() if line.split("=")[0] not in self.overrides]
        self.path.write_text("\n".join(lines + [f"{k}={v}" for k, v in self.overrides.items()]) + "\n")
        return self.path

    def __exit__(self, *exc):
        self.path.write_text(self.original)
        return False


def new_public_key(kind="ed25519", comment="test@cp"):
    """A fresh OpenSSH public key line, made by the real ssh-keygen (the private half is thrown away)."""
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "key")
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", path], check=True)
        with open(path + ".pub") as public:
            return public.read().strip()


def wait_for(condition, what, timeout=10.0):
    """Poll until `condition()` is truthy; answer that value (an AssertionError after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Background(threading.Thread):
    """Run a call in a thread; `finish()` joins it and answers its result (or raises its error)."""

    def __init__(self, function, *args, **kwargs):
        super().__init__(daemon=True)
        self.call = (function, args, kwargs)
        self.result = self.error = None
        self.start()

    def run(self):
        function, args, kwargs = self.call
        try:
            self.result = function(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 (handed to finish())
            self.error = exc

    def finish(self, timeout=60):
        self.join(timeout)
        assert not self.is_alive(), f"{self.call[0].__name__} still running after {timeout} s"
        if self.error is not None:
            raise self.error
        return self.result
