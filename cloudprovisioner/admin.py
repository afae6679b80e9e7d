"""Administration commands (`cloudprovisioner-admin`): the schema, the signing secret, the first admin."""

import argparse
import getpass
import os
import secrets
import sys

from . import config as configuration
from . import migrate
from .errors import Problem

SECRET_KEY = "CP_JWT_SECRET"


def ensure_secret(path):
    """Write a random CP_JWT_SECRET into the env file unless a long enough one is there.

    The file keeps its mode and group (python-dotenv rewrites it through a new file).
    """
    from dotenv import dotenv_values, set_key

    from .auth import MIN_SECRET_LENGTH
    if len(dotenv_values(path).get(SECRET_KEY) or "") >= MIN_SECRET_LENGTH:
        return False
    before = os.stat(path)
    set_key(path, SECRET_KEY, secrets.token_urlsafe(48), quote_mode="never")
    os.chmod(path, before.st_mode & 0o7777)
    if os.geteuid() == 0:
        os.chown(path, before.st_uid, before.st_gid)
    return True


def read_password(path):
    """From a file (its first line), or asked for twice on the terminal; never from the command line."""
    if path:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().rstrip("\r\n")
    first = getpass.getpass("Password for the new admin: ")
    if first != getpass.getpass("Again: "):
        raise SystemExit("cloudprovisioner-admin: the passwords differ")
    return first


def create_admin(config, args):
    """The first platform admin: a tenant of its own, role admin, flagged platform_admin.

    Servers made before tenants existed (tenant_id NULL) are adopted by this tenant.
    """
    from .accounts import create_tenant, email_field, password_rule
    from .db import Database
    from .validation import Field, text, validate
    fields = validate({"email": args.email, "name": args.name, "password": read_password(args.password_file)},
                      {"email": email_field(), "name": Field(text(255, allow_empty=False), required=True),
                       "password": Field(password_rule(config), required=True)})
    db = Database(config)
    try:
        tenant_id, user_id = create_tenant(config, db, args.tenant, fields, platform_admin=True)
        adopted = db.update("UPDATE servers SET tenant_id = %s WHERE tenant_id IS NULL", (tenant_id,))
    finally:
        db.close()
    print(f"created platform admin {fields['email']} (user {user_id}) in tenant {args.tenant} ({tenant_id})")
    if adopted:
        print(f"{adopted} servers from before tenants now belong to tenant {tenant_id}")


def main(argv=None, sql_dir=None):
    parser = argparse.ArgumentParser(prog="cloudprovisioner-admin")
    parser.add_argument("--config", help="the env file (default: $CLOUDPROVISIONER_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)
    migrate_parser = commands.add_parser("migrate", help="apply the SQL migrations not yet applied")
    migrate_parser.add_argument("--sql-dir", default=sql_dir, required=sql_dir is None)
    commands.add_parser("ensure-secret", help=f"generate {SECRET_KEY} in the env file if it is missing")
    admin_parser = commands.add_parser("create-admin", help="create the first platform admin")
    admin_parser.add_argument("--email", required=True)
    admin_parser.add_argument("--name", required=True)
    admin_parser.add_argument("--tenant", default="platform", help="the admin's tenant (default: platform)")
    admin_parser.add_argument("--password-file", help="read the password from this file instead of asking")
    args = parser.parse_args(argv)
    try:
        if args.command == "ensure-secret":
            path = args.config or os.environ.get(configuration.CONFIG_PATH_VARIABLE)
            if ensure_secret(path):
                print(f"generated {SECRET_KEY} in {path}")
            return 0
        config = configuration.load(path=args.config)
        if args.command == "migrate":
            if not migrate.apply(config, args.sql_dir, sys.stdout):
                print("schema is up to date")
        else:
            create_admin(config, args)
    except (configuration.ConfigError, Problem, RuntimeError) as exc:
        sys.stderr.write(f"cloudprovisioner-admin: {exc}\n")
        for field, reason in (getattr(exc, "errors", None) or {}).items():
            sys.stderr.write(f"  {field}: {reason}\n")
        return 1
    return 0
