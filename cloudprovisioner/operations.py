"""Operations: every action that completes later, with its status and outcome.

A create, a delete and a power action (and a firewall's or VPC's create,
update or delete, see desired_state.py) each write an operation row in the
same transaction as the change that starts it. The monitor moves them on
(running -> succeeded or failed) in the same transaction as the server row,
so the two always agree. Status: pending (not yet accepted by the cloud),
running, succeeded, failed, cancelled.
"""

import json

from .errors import Conflict
from .ids import new_id
from .validation import Field, one_of, text

KINDS = ("server.create", "server.delete", "server.expire", "server.reboot", "server.power_off", "server.power_on",
         "firewall.create", "firewall.update", "firewall.delete", "vpc.create", "vpc.delete")
STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")
COLUMNS = "id, kind, target_type, target_id, status, user_id, token_id, result, error, created_at, updated_at"


def start(db, principal, kind, target_id, status="pending", cloud_action_id=None, target_type="server"):
    """A new operation by the caller on a server (or firewall, VPC); answers its id."""
    operation_id = new_id()
    db.update("INSERT INTO operations (id, tenant_id, user_id, token_id, kind, target_type, target_id, status, "
              "cloud_action_id, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
              "UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
              (operation_id, principal.tenant_id, principal.user_id, principal.token_id, kind, target_type,
               target_id, status, cloud_action_id))
    return operation_id


def finish_open(db, target_id, kind, status, error="", result=None):
    """Move the target's open operations of one kind to `status`; answers how many moved."""
    return db.update("UPDATE operations SET status = %s, error = %s, result = %s, updated_at = UTC_TIMESTAMP(6) "
                     "WHERE target_id = %s AND kind = %s AND status IN ('pending', 'running')",
                     (status, error[:1000], json.dumps(result) if result is not None else None, target_id, kind))


def mark(db, operation_id, status, error=""):
    db.update("UPDATE operations SET status = %s, error = %s, updated_at = UTC_TIMESTAMP(6) WHERE id = %s",
              (status, error[:1000], operation_id))


def represent(row):
    return {"id": row["id"], "kind": row["kind"], "target": {"type": row["target_type"], "id": row["target_id"]},
            "status": row["status"], "result": json.loads(row["result"]) if row["result"] else None,
            "error": row["error"], "requested_by": {"user_id": row["user_id"], "token_id": row["token_id"]},
            "created_at": row["created_at"], "updated_at": row["updated_at"]}


def load(db, tenant_id, operation_id, lock=False):
    return db.existing("operation", f"SELECT {COLUMNS} FROM operations WHERE id = %s AND tenant_id = %s"
                       + (" FOR UPDATE" if lock else ""), (operation_id, tenant_id))


def list_schema():
    """The list's own filters (the web layer adds the page's limit and cursor)."""
    return {
        "status": Field(one_of(STATUSES, "status")),
        "kind": Field(one_of(KINDS, "kind")),
        "target": Field(text(26, r"[0-9a-z]{26}", "must be a server, firewall or VPC id")),
    }


def listing(ctx, args):
    """One page of the tenant's operations, newest first; filters status, kind, target."""
    where, params = ["tenant_id = %s"], [ctx.tenant_id]
    for name, condition in (("status", "status = %s"), ("kind", "kind = %s"), ("target", "target_id = %s")):
        if name in args:
            where.append(condition)
            params.append(args[name])
    return ctx.db.page(f"SELECT {COLUMNS} FROM operations", where, params, args, newest_first=True)


def get(ctx, operation_id):
    return load(ctx.db, ctx.tenant_id, operation_id)


def cancel(ctx, operation_id):
    """Cancel an operation: only a create can be cancelled, and only before it finished.

    The server is then deleted like any other: its droplet, if it appears at
    all, is destroyed now or by the monitor once it shows up (a failure to destroy
    it now is a line in `ctx.log`). Answers the operation's row.
    """
    from . import server_rows
    db, tenant_id = ctx.db, ctx.tenant_id
    ctx.target = operation_id
    for attempt in db.transaction():
        with attempt:
            row = load(db, tenant_id, operation_id, lock=True)
            if row["status"] in FINISHED:
                raise Conflict(f"the operation already {row['status']}", "operation-finished")
            if row["kind"] != "server.create":
                raise Conflict(f"a {row['kind']} cannot be called back once sent to the cloud", "not-cancellable")
            mark(db, operation_id, "cancelled", "cancelled by request")
            server_rows.set_status(db, row["target_id"], "deleting", "create cancelled")
    server_rows.destroy_now(ctx, row["target_id"])
    return load(db, tenant_id, operation_id)
