"""Configuration: one env file (python-dotenv format) plus environment overrides.

The file's path comes from CLOUDPROVISIONER_CONFIG (Apache `SetEnv`, the cron
line's `--config`). Keys all start with `CP_` so that nothing a client can set
in CGI (`HTTP_*`, `CONTENT_*`) can ever override them.

We parse the file ourselves instead of importing python-dotenv: that import
costs ~15 ms (measured: see parse_env_file), paid by every CGI request.
tests/test_config.py checks that this parser reads the shipped example exactly
as python-dotenv does.
"""

import os

CONFIG_PATH_VARIABLE = "CLOUDPROVISIONER_CONFIG"
PREFIX = "CP_"

# Every key, its default and its type. `None` means "no default: must be set".
DEFAULTS = {
    "CP_DB_HOST": "localhost",
    "CP_DB_PORT": 3306,
    "CP_DB_SOCKET": "",
    "CP_DB_NAME": "cloudprovisioner",
    "CP_DB_USER": "cloudprovisioner",
    "CP_DB_PASSWORD": None,
    "CP_DB_CONNECT_TIMEOUT": 3,
    "CP_DB_QUERY_TIMEOUT": 10,
    "CP_DO_TOKEN": None,
    "CP_DO_API_URL": "https://api.digitalocean.com/v2/",
    "CP_DO_TIMEOUT": 10,
    "CP_CLOUD_BUDGET": 20,
    "CP_MONITOR_CLOUD_BUDGET": 120,
    "CP_RATELIMIT_FLOOR": 100,
    "CP_IDEMPOTENCY_TTL": 86400,
    "CP_CORS_ORIGINS": "",
    "CP_METRICS_TOKEN": "",
    "CP_MONITOR_MAX_AGE": 300,
    "CP_CREATE_GRACE": 180,
    "CP_PLATFORM_TAG": "cloudprovisioner",
    "CP_INSTALL_ID": None,
    "CP_ALLOWED_REGIONS": "nyc3,ams3,fra1,sfo3",
    "CP_ALLOWED_SIZES": "s-1vcpu-512mb-10gb,s-1vcpu-1gb,s-1vcpu-2gb",
    "CP_ALLOWED_IMAGES": "ubuntu-24-04-x64,ubuntu-22-04-x64,debian-12-x64",
    "CP_VPC_POOL": "172.16.0.0/12",
    "CP_VPC_DEFAULT_PREFIX": 20,
    "CP_DEFAULT_FIREWALL_PORTS": "22,80",
    "CP_TENANT_CLOUD_RATE": 10,
    "CP_TENANT_CLOUD_BURST": 60,
    "CP_TENANT_MAX_VPCS": 10,
    "CP_TENANT_MAX_FIREWALLS": 20,
    "CP_SIZES_MAX_AGE": 3600,
    "CP_SERVER_MAX_TTL": 0,
    "CP_SERVER_REQUIRE_TTL": "no",
    "CP_EXPIRY_WARNING": 86400,
    "CP_QUOTA_MAX_SERVERS": 25,
    "CP_QUOTA_MAX_VCPUS": 50,
    "CP_QUOTA_MAX_MEMORY_MB": 102400,
    "CP_QUOTA_MONTHLY_BUDGET": 500,
    "CP_VMCP_KEY_SECRET": None,
    "CP_VMCP_PLATFORM_KEY": "",
    "CP_MAX_BODY_BYTES": 262144,
    "CP_PAGE_SIZE": 50,
    "CP_PENDING_TIMEOUT": 900,
    "CP_ORPHAN_GRACE": 600,
    "CP_ORPHAN_POWER_OFF": "no",
    "CP_MONITOR_MAX_DESTROY": 5,
    "CP_MONITOR_MAX_DESTROY_PERCENT": 10,
    "CP_MONITOR_LOCK": "cloudprovisioner.monitor",
    "CP_JWT_SECRET": None,
    "CP_ACCESS_TOKEN_TTL": 900,
    "CP_REFRESH_TOKEN_TTL": 1209600,
    "CP_SESSION_MAX_AGE": 2592000,
    "CP_BCRYPT_COST": 12,
    "CP_PASSWORD_MIN_LENGTH": 10,
    "CP_REGISTRATION": "verify",
    "CP_PUBLIC_URL": "",
    "CP_VERIFICATION_TTL": 86400,
    "CP_PASSWORD_RESET_TTL": 3600,
    "CP_MAIL_MAX_PER_ADDRESS": 5,
    "CP_MAIL_MAX_PER_RECIPIENT": 3,
    "CP_MAIL_LIMIT_WINDOW": 3600,
    "CP_LOGIN_MAX_FAILURES": 5,
    "CP_LOGIN_MAX_FAILURES_PER_ADDRESS": 20,
    "CP_LOGIN_MAX_FAILURES_PER_ACCOUNT": 50,
    "CP_LOGIN_WINDOW": 900,
    "CP_LOGIN_BLOCK": 900,
    "CP_LOGIN_BLOCK_MAX": 86400,
    "CP_LOGIN_KNOWN_ADDRESS_AGE": 7776000,
    "CP_SMTP_HOST": "localhost",
    "CP_SMTP_PORT": 25,
    "CP_SMTP_SECURITY": "none",
    "CP_SMTP_USER": "",
    "CP_SMTP_PASSWORD": "",
    "CP_SMTP_TIMEOUT": 10,
    "CP_MAIL_FROM": "CloudProvisioner <cloudprovisioner@localhost>",
}


class ConfigError(Exception):
    """The configuration is missing, unreadable or has a bad value."""


def parse_env_file(text):
    """Parse python-dotenv's format: KEY=VALUE lines, `export`, quotes, comments.

    Variable expansion (`${X}`) is not supported; the example file says so.

    Hand-written instead of dotenv.dotenv_values(), since every CGI request reads the file. Measured
    2026-11-29 on the 2-core test host (dev venv, median of 15 runs, load average ~3 from other jobs):
    importing python-dotenv costs ~14-16 ms (dotenv.parser ~6 ms, logging ~5 ms); a whole
    `python -c "import dotenv"` takes ~38 ms against ~20 ms for `python -c pass`. Re-measure with
    (cumulative column, microseconds):
        .venv/bin/python -X importtime -c "import dotenv" 2>&1 | tail -1
    """
    values = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise ConfigError(f"line {number}: expected KEY=VALUE")
        values[key] = _unquote(value.strip(), number)
    return values


def _unquote(value, number):
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.find(quote, 1)
        while quote == '"' and end > 0 and value[end - 1] == "\\":
            end = value.find(quote, end + 1)
        if end < 0:
            raise ConfigError(f"line {number}: unterminated quote")
        inner = value[1:end]
        if quote == '"':
            inner = (inner.replace("\\n", "\n").replace('\\"', '"')
                     .replace("\\\\", "\\"))
        return inner
    # Unquoted: a ' #' starts a comment, as in python-dotenv.
    hash_at = value.find(" #")
    return (value if hash_at < 0 else value[:hash_at]).strip()


class Config:
    """Typed, read-only view of the settings."""

    def __init__(self, values):
        self._values = values

    def get(self, key):
        default = DEFAULTS[key]
        raw = self._values.get(key)
        if raw is None or raw == "":
            if default is None:
                raise ConfigError(f"{key} is not set")
            return default
        if isinstance(default, int):
            try:
                return int(raw)
            except ValueError:
                raise ConfigError(f"{key} must be a whole number, not {raw!r}") from None
        return raw

    def get_list(self, key):
        return [item.strip() for item in self.get(key).split(",") if item.strip()]

    def __getattr__(self, name):
        # config.db_host -> CP_DB_HOST
        key = PREFIX + name.upper()
        if key not in DEFAULTS:
            raise AttributeError(name)
        return self.get(key)


def load(environ=None, path=None):
    """Read the env file named by CLOUDPROVISIONER_CONFIG, then apply `CP_*` overrides."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_PATH_VARIABLE)
    values = {}
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                values = parse_env_file(handle.read())
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    unknown = sorted(key for key in values if key not in DEFAULTS)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {', '.join(unknown)}")
    values.update({k: v for k, v in environ.items() if k in DEFAULTS})
    return Config(values)


def load_for_command(name, description, argv=None):
    """The config of a cron entry point: `--config PATH` (or CLOUDPROVISIONER_CONFIG).

    A bad config ends the command with status 1 and one line on stderr.
    """
    import argparse
    import sys
    parser = argparse.ArgumentParser(prog=name, description=description)
    parser.add_argument("--config", help=f"the env file (default: ${CONFIG_PATH_VARIABLE})")
    args = parser.parse_args(argv)
    try:
        return load(path=args.config)
    except ConfigError as exc:
        sys.stderr.write(f"{name}: configuration error: {exc}\n")
        raise SystemExit(1) from None
