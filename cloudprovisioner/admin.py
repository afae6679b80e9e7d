"""Administration commands: `cloudprovisioner-admin migrate`."""

import argparse
import sys

from . import config as configuration
from . import migrate
from .errors import Problem


def main(argv=None, sql_dir=None):
    parser = argparse.ArgumentParser(prog="cloudprovisioner-admin")
    parser.add_argument("--config", help="the env file (default: $CLOUDPROVISIONER_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)
    migrate_parser = commands.add_parser("migrate", help="apply the SQL migrations not yet applied")
    migrate_parser.add_argument("--sql-dir", default=sql_dir, required=sql_dir is None)
    args = parser.parse_args(argv)
    try:
        config = configuration.load(path=args.config)
        applied = migrate.apply(config, args.sql_dir, sys.stdout)
    except (configuration.ConfigError, Problem, RuntimeError) as exc:
        sys.stderr.write(f"cloudprovisioner-admin: {exc}\n")
        return 1
    if not applied:
        print("schema is up to date")
    return 0
