"""Real services for the tests: a private MariaDB and the sandbox cloud API on loopback.

They start once per session, under a /tmp folder www-data can traverse (the
end-to-end tests run CGI as www-data), and every test starts from an empty
servers table and an empty cloud.
"""

import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from cloudprovisioner import migrate
from cloudprovisioner.db import Database
from cloudprovisioner.devstack import MariaDB, Process
from cloudprovisioner.web import make_app
from tests.support import TEST_SECRET, TEST_TOKEN, Client, MailServer, knob, make_config

ROOT = Path(__file__).resolve().parents[1]
# Children before parents, so foreign keys never object.
EVERY_TABLE = ("servers", "audit_log", "login_throttle", "outbox", "api_tokens", "refresh_tokens", "sessions",
               "users", "tenants")


@pytest.fixture(scope="session")
def stack_dir():
    path = Path(tempfile.mkdtemp(prefix="cp-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb(stack_dir):
    server = MariaDB(stack_dir / "db")
    server.start()
    server.db_password = secrets.token_urlsafe(18)
    server.create_app_database("cp_test", "cp_app", server.db_password)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sandbox(stack_dir):
    """The local cloud API; its URL. Droplets turn active after one second."""
    process = Process([sys.executable, "-m", "cloudprovisioner.sandbox", "--port", "0",
                       "--state", stack_dir / "sandbox.sqlite3", "--activate-after", "1",
                       "--token", TEST_TOKEN], None, stack_dir / "sandbox.log",
                      ready_line_prefix="sandbox listening on ")
    line = process.start()
    yield line.split()[-1]
    process.stop()


@pytest.fixture(scope="session")
def smtp():
    """A real SMTP server on loopback (aiosmtpd); `.messages` holds what it received."""
    server = MailServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def base_values(mariadb, sandbox, smtp):
    return {
        "CP_DB_SOCKET": mariadb.socket, "CP_DB_NAME": "cp_test", "CP_DB_USER": "cp_app",
        "CP_DB_PASSWORD": mariadb.db_password, "CP_DO_TOKEN": TEST_TOKEN,
        "CP_DO_API_URL": sandbox, "CP_DO_TIMEOUT": "5", "CP_JWT_SECRET": TEST_SECRET,
        "CP_BCRYPT_COST": "4", "CP_SMTP_HOST": "127.0.0.1", "CP_SMTP_PORT": str(smtp.port),
        "CP_SMTP_TIMEOUT": "3",
    }


@pytest.fixture(scope="session")
def schema(base_values):
    with open(os.devnull, "w") as quiet:
        migrate.apply(make_config(base_values), ROOT / "sql", quiet)


@pytest.fixture
def values(base_values, schema, sandbox, smtp):
    """Settings for one test, on an empty table and an empty cloud; edit before use."""
    db = Database(make_config(base_values))
    for table in EVERY_TABLE:
        db.update(f"DELETE FROM {table}")
    db.close()
    smtp.messages.clear()
    knob(sandbox, "POST", "/_sandbox/reset")
    knob(sandbox, "DELETE", "/_sandbox/faults")
    knob(sandbox, "POST", "/_sandbox/config", {"activate_after": 1})
    return dict(base_values)


@pytest.fixture
def config(values):
    return make_config(values)


@pytest.fixture
def app(config):
    return make_app(config)


@pytest.fixture
def db(config):
    database = Database(config)
    yield database
    database.close()


@pytest.fixture
def register(app):
    """Register a tenant through the API and log its admin in: a Client acting as that admin."""
    def register(tenant="Acme", email="admin@acme.test", password="correct horse battery"):
        answer = Client(app).post("/auth/register", {"tenant_name": tenant, "name": "Ada Admin",
                                                     "email": email, "password": password})
        assert answer.status == 201, answer.body
        return Client(app).login(email, password)
    return register


@pytest.fixture
def admin(register):
    return register()


@pytest.fixture
def member(admin):
    """Create a user with a role in the admin's tenant and log in: a Client acting as them."""
    def member(role, email=None):
        email = email or f"{role}@acme.test"
        answer = admin.post("/users", {"name": role.title(), "email": email, "role": role,
                                       "password": "long enough password"})
        assert answer.status == 201, answer.body
        return Client(admin.app).login(email, "long enough password")
    return member
