"""Apply the numbered SQL migrations in `sql/` once each, in order.

Safe to run again and from two hosts at once: a named lock serialises runs and
`schema_migrations` records what is applied.
"""

import re
from pathlib import Path

from .db import Database

LOCK_NAME = "cloudprovisioner.migrate"
MIGRATION_LEASE = 3600  # seconds: longer than any migration of a large table should take
FILE_PATTERN = re.compile(r"(\d+)_[a-z0-9_]+\.sql")


def migrations(sql_dir):
    """(version, name, statements) for every migration file, by version."""
    found = []
    for path in sorted(Path(sql_dir).iterdir()):
        match = FILE_PATTERN.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path.name, split_statements(path.read_text())))
    return sorted(found)


def split_statements(sql):
    """Statements end with `;` at the end of a line; `--` lines are comments."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in re.split(r";\s*$", "\n".join(lines), flags=re.M) if part.strip()]


def apply(config, sql_dir, out):
    """Apply what is missing; answer the versions applied now."""
    from . import leases
    db = Database(config)
    lease = None
    try:
        db.update(leases.TABLE)  # the lease below needs its table before any migration has run
        lease = leases.take(db, LOCK_NAME, MIGRATION_LEASE, wait=60)
        if lease is None:
            raise RuntimeError("another migration holds the lease")
        db.update("CREATE TABLE IF NOT EXISTS schema_migrations ("
                  " version INT NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL,"
                  " applied_at DATETIME(6) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
        done = {row["version"] for row in db.query("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, statements in migrations(sql_dir):
            if version in done:
                continue
            for statement in statements:
                db.update(statement)
            db.update("INSERT INTO schema_migrations (version, name, applied_at) "
                      "VALUES (%s, %s, UTC_TIMESTAMP(6))", (version, name))
            out.write(f"applied {name}\n")
            applied.append(version)
        return applied
    finally:
        if lease is not None:
            lease.release()
        db.close()

