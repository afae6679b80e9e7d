"""Administration commands (`cloudprovisioner-admin`): the schema, the secrets and the installation id,
the first admin, and what the monitor holds for a person (orphans, the circuit breaker)."""

import argparse
import getpass
import os
import secrets
import sys

from . import config as configuration
from . import migrate
from .errors import DomainError

SECRET_KEYS = ("CP_JWT_SECRET", "CP_VMCP_KEY_SECRET")
INSTALL_ID = "CP_INSTALL_ID"
PLATFORM_KEY = "CP_VMCP_PLATFORM_KEY"
PLATFORM_KEY_FILE = "vmcp-platform-key.pem"


def ensure_secret(path):
    """Fill in what a fresh install lacks; answer what was made. Random CP_JWT_SECRET and
    CP_VMCP_KEY_SECRET unless long enough ones are there, an installation id (CP_INSTALL_ID) unless
    one is there (never replaced: the cloud's objects carry it), and, unless CP_VMCP_PLATFORM_KEY names
    one, a platform VMCP signing key in a file beside the env file, readable like the env file.

    The env file keeps its mode and group (python-dotenv rewrites it through a new file).
    """
    from dotenv import dotenv_values, set_key

    from .auth import MIN_SECRET_LENGTH
    values, made = dotenv_values(path), []
    before = os.stat(path)
    for key in SECRET_KEYS:
        if len(values.get(key) or "") < MIN_SECRET_LENGTH:
            set_key(path, key, secrets.token_urlsafe(48), quote_mode="never")
            made.append(key)
    if not values.get(INSTALL_ID):
        set_key(path, INSTALL_ID, secrets.token_hex(6), quote_mode="never")
        made.append(INSTALL_ID)
    if not values.get(PLATFORM_KEY):
        key_path = os.path.join(os.path.dirname(os.path.abspath(path)), PLATFORM_KEY_FILE)
        if not os.path.exists(key_path):
            _write_platform_key(key_path, before)
            made.append(key_path)
        set_key(path, PLATFORM_KEY, key_path, quote_mode="never")
        made.append(PLATFORM_KEY)
    os.chmod(path, before.st_mode & 0o7777)
    if os.geteuid() == 0:
        os.chown(path, before.st_uid, before.st_gid)
    return made


def _write_platform_key(key_path, like):
    from . import vmcpkeys
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(vmcpkeys.private_pem(vmcpkeys.generate(2048)))
    if os.geteuid() == 0:
        os.chown(key_path, like.st_uid, like.st_gid)


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


def platform_admin(config, args):
    """Make an existing user a platform admin (or, with --revoke, no longer one): the metrics of every tenant
    and the orphans the monitor holds. Registration and tenant admins can never set the flag."""
    from .accounts import set_platform_admin
    from .db import Database
    db = Database(config)
    try:
        user = set_platform_admin(db, args.email, not args.revoke)
    finally:
        db.close()
    print(f"{user['email']} (user {user['id']}, tenant {user['tenant_id']}) is "
          f"{'no longer ' if args.revoke else ''}a platform admin")
    if user["role"] != "admin" and not args.revoke:
        print(f"their role is {user['role']}: platform permissions also need the admin role")
    return 0


def _context(config):
    """The platform's own context for one command: the database, and the cloud (on first use) under the
    monitor's budget, as the monitor would act."""
    from contextlib import closing

    from .context import Context
    return closing(Context(config, cloud_budget=config.monitor_cloud_budget))


def _confirmed(prompt):
    """A person typed yes; no terminal (cron, a pipe) is a no: --yes says it in a script."""
    try:
        return input(prompt).strip() == "yes"
    except EOFError:
        print("\nno answer (no terminal?); give --yes to confirm without asking")
        return False


def show_orphans(config, args):
    from . import orphans
    with _context(config) as ctx:
        rows = orphans.listing(ctx)
        breaker = ctx.db.one("SELECT value FROM service_state WHERE name = 'monitor.breaker'")
    if breaker:
        print(f"the monitor's {breaker['value']}")
    if not rows:
        print("no orphans: every cloud object of this installation is explained by a live row")
    for row in rows:
        approved = " (approved)" if row["approved_at"] else ""
        print(f"{row['kind']} {row['cloud_id']} {row['name'] or '-'} row={row['row_id'] or '-'} "
              f"{row['verdict']}{approved} since {row['first_seen_at']}: {row['reason']}")
    return 0


def confirm_destroy(config, args):
    """Show what the circuit breaker holds, and approve exactly that when the admin says yes."""
    from . import orphans
    with _context(config) as ctx:
        shown = [row for row in orphans.listing(ctx, "breaker") if not row["approved_at"]]
        if not shown:
            print("the circuit breaker holds nothing")
            return 0
        print(f"the monitor held back destroying these {len(shown)} objects:")
        for row in shown:
            print(f"  {row['kind']} {row['cloud_id']} {row['name'] or '-'}: {row['reason']}")
        if not args.yes and not _confirmed(f"destroy these {len(shown)}? type yes: "):
            print("nothing approved")
            return 1
        approved = orphans.approve(ctx, shown)
    print(f"approved {approved}; the monitor's next run destroys them")
    return 0


def adopt(config, args):
    from . import orphans
    with _context(config) as ctx:
        server_id = orphans.adopt(ctx, args.droplet_id, args.tenant)
    print(f"droplet {args.droplet_id} is server {server_id} again")
    return 0


def destroy(config, args):
    from . import orphans
    with _context(config) as ctx:
        orphans.find(ctx, args.kind, args.cloud_id)
        if not args.yes and not _confirmed(f"destroy {args.kind} {args.cloud_id}? type yes: "):
            print("nothing destroyed")
            return 1
        orphans.destroy(ctx, args.kind, args.cloud_id)
    print(f"destroyed {args.kind} {args.cloud_id}")
    return 0


ORPHAN_COMMANDS = {"orphans": show_orphans, "confirm-destroy": confirm_destroy, "adopt": adopt, "destroy": destroy}


def main(argv=None, sql_dir=None):
    parser = argparse.ArgumentParser(prog="cloudprovisioner-admin")
    parser.add_argument("--config", help="the env file (default: $CLOUDPROVISIONER_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)
    migrate_parser = commands.add_parser("migrate", help="apply the SQL migrations not yet applied")
    migrate_parser.add_argument("--sql-dir", default=sql_dir, required=sql_dir is None)
    commands.add_parser("ensure-secret", help=f"generate {', '.join(SECRET_KEYS)} and a platform VMCP key "
                                              "if they are missing")
    admin_parser = commands.add_parser("create-admin", help="create the first platform admin")
    admin_parser.add_argument("--email", required=True)
    admin_parser.add_argument("--name", required=True)
    admin_parser.add_argument("--tenant", default="platform", help="the admin's tenant (default: platform)")
    admin_parser.add_argument("--password-file", help="read the password from this file instead of asking")
    platform_parser = commands.add_parser("platform-admin", help="make an existing user a platform admin")
    platform_parser.add_argument("email")
    platform_parser.add_argument("--revoke", action="store_true", help="take the flag away instead")
    commands.add_parser("orphans", help="list the cloud objects of this installation the monitor holds for a person")
    confirm_parser = commands.add_parser("confirm-destroy", help="show what the circuit breaker held back, "
                                                                 "and let the monitor destroy it")
    confirm_parser.add_argument("--yes", action="store_true", help="do not ask")
    adopt_parser = commands.add_parser("adopt", help="bring a held droplet back under the server row it names")
    adopt_parser.add_argument("droplet_id")
    adopt_parser.add_argument("--tenant", help="the tenant id, when the droplet names none or another")
    destroy_parser = commands.add_parser("destroy", help="destroy one held orphan by hand")
    destroy_parser.add_argument("kind", choices=("droplet", "vpc", "firewall"))
    destroy_parser.add_argument("cloud_id")
    destroy_parser.add_argument("--yes", action="store_true", help="do not ask")
    args = parser.parse_args(argv)
    try:
        if args.command == "ensure-secret":
            path = args.config or os.getenv(configuration.CONFIG_PATH_VARIABLE)
            for made in ensure_secret(path):
                print(f"generated {made} ({path})")
            return 0
        config = configuration.load(path=args.config)
        if args.command in ORPHAN_COMMANDS:
            return ORPHAN_COMMANDS[args.command](config, args)
        if args.command == "platform-admin":
            return platform_admin(config, args)
        if args.command == "migrate":
            if not migrate.apply(config, args.sql_dir, sys.stdout):
                print("schema is up to date")
        else:
            create_admin(config, args)
    except (configuration.ConfigError, DomainError, RuntimeError) as exc:
        sys.stderr.write(f"cloudprovisioner-admin: {exc}\n")
        for field, reason in (getattr(exc, "errors", None) or {}).items():
            sys.stderr.write(f"  {field}: {reason}\n")
        return 1
    return 0
