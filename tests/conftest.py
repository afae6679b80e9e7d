"""Real services for the tests: a private MariaDB and the sandbox cloud API on loopback.

They start once per session, under a /tmp folder www-data can traverse (the
end-to-end tests run CGI as www-data). Every test that takes `values` starts
from empty tables and an empty cloud; and every module starts, and ends, on an
empty cloud and an empty installed service (`fresh_state_per_module`), so no
module sees what an earlier one left behind, whatever order they run in
(`make test` runs them in random order: pytest-randomly).
"""

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cloudprovisioner import migrate
from cloudprovisioner.config import parse_env_file
from cloudprovisioner.db import Database
from cloudprovisioner.web.app import make_app
from devtools.devstack import Apache, MariaDB, Process
from tests.support import (
    TEST_INSTALL_ID,
    TEST_SECRET,
    TEST_TOKEN,
    Client,
    MailServer,
    configure_install,
    empty_database,
    installed_config,
    make_config,
    make_install,
    reset_sandbox,
)

ROOT = Path(__file__).resolve().parents[1]


# Fixtures that start a real service: a test that uses none of them (even through other fixtures) is a
# `unit` test, runnable alone with `make test-unit` in seconds, and run first by `make test`.
SERVICES = {"mariadb", "sandbox", "smtp", "installed", "apache"}


def pytest_collection_modifyitems(config, items):
    # pytest-randomly shuffles the items before this runs (its hook wraps every other one), and the sort is
    # stable: the unit tests still come first, each tier in the shuffled order.
    for item in items:
        if not SERVICES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("services"):
            item.add_marker(pytest.mark.unit)
    items.sort(key=lambda item: item.get_closest_marker("unit") is None)  # stable: unit tests first


# The shared services started so far in this session, by fixture name: what `fresh_state_per_module` cleans.
RUNNING = {}


@pytest.fixture(scope="module", autouse=True)
def fresh_state_per_module():
    """Each module starts on an empty cloud and an empty installed service (database `cp_e2e`), and leaves
    them so. Both are shared by the whole session: without this, what one module made (a VPC in the cloud,
    a server row whose droplet a reset took away) is in the next module's way, e.g. a VPC range its service
    never made but the cloud refuses to overlap. Only services already running are touched: one started
    later in the module starts empty. (The `values` fixture does the same for each test of the in-process
    tier, on `cp_test`.)"""
    clean_shared_state()
    yield
    clean_shared_state()


def clean_shared_state():
    if "sandbox" in RUNNING:
        reset_sandbox(RUNNING["sandbox"])
    if "installed" in RUNNING:
        empty_database(installed_config(RUNNING["installed"]))


@pytest.fixture
def fresh_installed(installed, sandbox):
    """The installed service on an empty database and an empty cloud, for one test (its prefix)."""
    clean_shared_state()
    return installed


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
    process = Process([sys.executable, "-m", "docloud", "--port", "0",
                       "--state", stack_dir / "sandbox.sqlite3", "--activate-after", "1",
                       "--token", TEST_TOKEN], None, stack_dir / "sandbox.log",
                      ready_line_prefix="sandbox listening on ", cwd=ROOT)
    line = process.start()
    RUNNING["sandbox"] = line.split()[-1]
    yield RUNNING["sandbox"]
    del RUNNING["sandbox"]
    process.stop()


@pytest.fixture(scope="session")
def smtp():
    """A real SMTP server on loopback (aiosmtpd); `.messages` holds what it received."""
    server = MailServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def platform_vmcp_key(stack_dir):
    """The platform's VMCP signing key, made by openssl as a sysadmin would."""
    path = stack_dir / "vmcp-platform-key.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path)],
                   check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def base_values(mariadb, sandbox, smtp, platform_vmcp_key):
    return {
        "CP_VMCP_KEY_SECRET": "vmcp-test-secret-" + "x" * 32, "CP_VMCP_PLATFORM_KEY": str(platform_vmcp_key),
        "CP_DB_SOCKET": mariadb.socket, "CP_DB_NAME": "cp_test", "CP_DB_USER": "cp_app",
        "CP_DB_PASSWORD": mariadb.db_password, "CP_DO_TOKEN": TEST_TOKEN,
        "CP_DO_API_URL": sandbox, "CP_DO_TIMEOUT": "5", "CP_JWT_SECRET": TEST_SECRET,
        "CP_BCRYPT_COST": "4", "CP_SMTP_HOST": "127.0.0.1", "CP_SMTP_PORT": str(smtp.port),
        "CP_SMTP_TIMEOUT": "3", "CP_INSTALL_ID": TEST_INSTALL_ID,
        # Registered accounts log in at once; the tests of verification by mail set CP_REGISTRATION=verify.
        "CP_REGISTRATION": "open",
    }


@pytest.fixture(scope="session")
def schema(base_values):
    with open(os.devnull, "w") as quiet:
        migrate.apply(make_config(base_values), ROOT / "sql", quiet)


@pytest.fixture
def values(base_values, schema, sandbox, smtp):
    """Settings for one test, on an empty table and an empty cloud; edit before use."""
    empty_database(make_config(base_values))
    smtp.messages.clear()
    reset_sandbox(sandbox)
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


# -- the installed service behind a real Apache (end-to-end and fault tests) --------------------------------

@pytest.fixture(scope="session")
def installed(stack_dir, mariadb, sandbox, smtp):
    """`make install` into a scratch prefix, configured for the test services, database `cp_e2e` migrated."""
    prefix = stack_dir / "install"
    make_install(ROOT, prefix)
    env_file = prefix / "etc" / "cloudprovisioner.env"
    # make install generated the signing secret, readable by the web server's group only.
    assert len(parse_env_file(env_file.read_text())["CP_JWT_SECRET"]) >= 32
    assert oct(env_file.stat().st_mode & 0o777) == "0o640"
    configure_install(prefix, mariadb, sandbox, smtp, "cp_e2e")
    migrate = [str(prefix / "bin" / "cloudprovisioner-admin"), "--config", str(env_file), "migrate"]
    assert "applied 001_servers.sql" in subprocess.run(migrate, check=True, capture_output=True,
                                                       text=True).stdout
    assert "up to date" in subprocess.run(migrate, check=True, capture_output=True, text=True).stdout
    RUNNING["installed"] = prefix
    yield prefix
    del RUNNING["installed"]


@pytest.fixture(scope="session")
def apache(stack_dir, installed):
    """A real Apache running the installed site config (CGI as www-data when we are root)."""
    server = Apache(stack_dir / "apache", 0, [installed / "apache" / "cloudprovisioner.conf"])
    server.start()
    yield server
    server.stop()
