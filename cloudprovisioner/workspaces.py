"""Workspaces: named groups of a tenant's servers (a project, a team, an environment).

Every server belongs to exactly one; a server created without one goes to the
tenant's `default` workspace, made on first use. Servers from before
workspaces existed (workspace_id NULL) count as the default workspace's.
Workspaces live only here: the cloud never hears of them.
"""

import re

from .errors import Conflict, no_such
from .ids import new_id
from .validation import NAME_PATTERN, Field, short_name, text, validate

DEFAULT = "default"
COLUMNS = "id, name, description, created_at"


def name_field():
    return short_name()


def represent(row):
    return {"id": row["id"], "name": row["name"], "description": row["description"],
            "default": row["name"] == DEFAULT, "created_at": row["created_at"]}


def listing(ctx, args):
    """One page of the tenant's workspaces (args: limit, cursor)."""
    return ctx.db.page(f"SELECT {COLUMNS} FROM workspaces", ["tenant_id = %s"], [ctx.tenant_id], args)


def create(ctx, fields):
    """A new workspace from `fields` (name, description); Conflict when the name is taken."""
    fields = validate(fields, {"name": Field(name_field(), required=True),
                               "description": Field(text(1000), default="")})
    workspace_id = ctx.target = new_id()
    if not ctx.db.insert_new("INSERT INTO workspaces (id, tenant_id, name, description, created_at) "
                             "VALUES (%s, %s, %s, %s, UTC_TIMESTAMP(6))",
                             (workspace_id, ctx.tenant_id, fields["name"], fields["description"])):
        raise Conflict(f"you already have a workspace called {fields['name']!r}", "workspace-name-taken")
    return ctx.db.one(f"SELECT {COLUMNS} FROM workspaces WHERE id = %s", (workspace_id,))


def summary(ctx, name):
    """The workspace called `name` as shown: its servers' counts by status, and its live servers."""
    from . import server_rows
    db, tenant_id = ctx.db, ctx.tenant_id
    row = find(ctx, name)
    if row is None:
        raise no_such("workspace")
    where, params = member_condition(row)
    counts = {status: 0 for status in server_rows.STATUSES}
    for count in db.query(f"SELECT status, COUNT(*) AS n FROM servers WHERE tenant_id = %s AND {where} "
                          "GROUP BY status", (tenant_id, *params)):
        counts[count["status"]] = count["n"]
    members = db.query(f"SELECT {server_rows.COLUMNS} FROM servers WHERE tenant_id = %s AND {where} "
                       "AND status <> 'deleted' ORDER BY id LIMIT 1000", (tenant_id, *params))
    return represent(row) | {"counts": counts, "servers": [server_rows.represent(member) for member in members]}


def find(ctx, name, make_default=True):
    """The tenant's workspace called `name`, or None; the default one is made on first use (unless
    `make_default` is False: a dry run's look, which writes nothing)."""
    db, tenant_id = ctx.db, ctx.tenant_id
    if not re.fullmatch(NAME_PATTERN, name):
        return None  # the collation would match "SHOP" or "shop " to "shop": no name but an exact one
    row = db.one(f"SELECT {COLUMNS} FROM workspaces WHERE tenant_id = %s AND name = %s", (tenant_id, name))
    if row is None and name == DEFAULT and make_default:
        db.insert_new("INSERT INTO workspaces (id, tenant_id, name, description, created_at) "
                      "VALUES (%s, %s, %s, 'servers created without a workspace', UTC_TIMESTAMP(6))",
                      (new_id(), tenant_id, DEFAULT))
        row = db.one(f"SELECT {COLUMNS} FROM workspaces WHERE tenant_id = %s AND name = %s", (tenant_id, name))
    return row


def member_condition(row):
    """SQL (and its parameters) selecting a workspace's servers, the default's older ones included."""
    if row["name"] == DEFAULT:
        return "(workspace_id = %s OR workspace_id IS NULL)", (row["id"],)
    return "workspace_id = %s", (row["id"],)
