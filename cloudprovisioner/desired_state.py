"""The lifecycle firewalls and VPCs share: desired state in a row, made true in the cloud.

A write stores what the tenant wants (status `pending`) with an operation in
one transaction, then tries the cloud at once. If the cloud cannot be reached
or rate-limits us, the answer is still 202 and the monitor, which runs `sync`
over every row that is not settled, finishes the job; a row that died half-way
(its request killed after the cloud made the object) is found again by its
cloud name, which holds the installation's id and the row's (ownership.py).
The cloud refusing outright (a 4xx) is final: the row becomes `error` and the
client gets a 422 saying what was refused, never the cloud's words: all tenants
(and maybe other installations) share the cloud account, and its refusal can
name their objects (an overlapping VPC's name, range and region). Those words go
to the operator's log alone.
"""

from collections import namedtuple

from . import operations
from .errors import CloudFailed, Conflict, Invalid
from .ids import new_id

# What this lifecycle needs of firewalls or of VPCs (each module makes its own, its FAMILY): their table,
# what one is called, how a row is read and shown, and how it is made true in the cloud. The cloud
# operations take (config, cloud, row) (delete_in_cloud: (config, cloud, cloud_id)), `cloud` being a
# provider.Cloud; needs_update takes (config, row, the cloud's copy or None) and calls nothing.
Family = namedtuple("Family", "table what columns represent create_in_cloud update_in_cloud delete_in_cloud "
                              "needs_update")


def check_name_free(db, family, tenant_id, name, own_id=None):
    if name is None:
        return
    row = db.one(f"SELECT id FROM {family.table} WHERE tenant_id = %s AND name = %s AND live = 1",
                 (tenant_id, name))
    if row and row["id"] != own_id:
        raise _name_taken(family, name)


def _name_taken(family, name):
    return Conflict(f"you already have a {family.what} called {name!r}", f"{family.what}-name-taken")


def insert(db, principal, family, kind, values, name, racing_ok=False):
    """The row (pending) and its create operation in one transaction; answers the id.

    A name already taken is a Conflict, or None with `racing_ok` (two requests making the same default).
    """
    row_id = new_id()
    columns = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    for attempt in db.transaction():
        with attempt:
            made = db.insert_new(f"INSERT INTO {family.table} (id, tenant_id, {columns}, status, created_at, "
                                 f"updated_at) VALUES (%s, %s, {marks}, 'pending', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
                                 (row_id, principal.tenant_id, *values.values()))
            if not made:
                if racing_ok:
                    return None
                raise _name_taken(family, name)
            operations.start(db, principal, kind, row_id, target_type=family.what)
    return row_id


def accepted(ctx, family, row_id, kind):
    """Try the cloud now, then the row as shown with the operation that tracks it (the web layer
    answers it as 202, with the row's and the operation's locations)."""
    apply_now(ctx, family, row_id, kind)
    return answer(ctx, family, row_id, kind)


def answer(ctx, family, row_id, kind):
    """The row as shown, with its latest operation of `kind` under "operation"."""
    body = family.represent(_any_row(ctx, family, row_id))
    operation = ctx.db.one(f"SELECT {operations.COLUMNS} FROM operations WHERE target_id = %s AND kind = %s "
                           "ORDER BY id DESC LIMIT 1", (row_id, kind))
    body["operation"] = operations.represent(operation)
    return body


def _any_row(ctx, family, row_id):
    return ctx.db.one(f"SELECT {family.columns} FROM {family.table} WHERE id = %s AND tenant_id = %s",
                      (row_id, ctx.tenant_id))


def apply_now(ctx, family, row_id, kind):
    """One attempt at making the cloud match the row, inside the context's cloud budget.

    The cloud failing for now (retryable) is left to the monitor, with a line in the operator's log
    (`ctx.log`); the cloud refusing is Invalid ("cloud-refused") with `refused`'s fixed words, and the
    cloud's own in the operator's log.
    """
    row = ctx.db.one(f"SELECT {family.columns}, tenant_id FROM {family.table} WHERE id = %s", (row_id,))
    try:
        sync(ctx.db, ctx.config, ctx.cloud, family, row)
    except CloudFailed as exc:
        if exc.retryable:
            ctx.log(f"{family.what} {row_id}: {exc.message}; the monitor will retry")
            return
        ctx.log(f"{family.what} {row_id} of tenant {row['tenant_id']}: {exc.message}")
        raise Invalid(refused(family, row, exc), "cloud-refused") from None


def refused(family, row, exc):
    """What the tenant is told (the problem's detail, the row's status_reason, the operation's error)
    when the cloud refuses `row`: what was refused and the cloud's status, never the cloud's message,
    which speaks for the whole shared account and can name another tenant's or installation's objects."""
    doing = "delete" if row["status"] == "deleting" else "change" if row["cloud_id"] else "make"
    detail = f"the cloud refused to {doing} this {'VPC' if family.table == 'vpcs' else family.what} ({exc.status})"
    if family.table == "vpcs" and doing == "make":
        detail += ", most often because its range overlaps a VPC in the cloud account that this platform has not seen"
        detail += "" if row["is_default"] else "; choose another ip_range"
    return detail + "; the operator's log has the cloud's own answer"


def delete(ctx, family, what, row):
    """DELETE: mark the row deleting with its operation, then try the cloud at once (as `accepted`)."""
    db = ctx.db
    for attempt in db.transaction():
        with attempt:
            changed = db.update(f"UPDATE {family.table} SET status = 'deleting', status_reason = 'deletion requested', "
                                "updated_at = UTC_TIMESTAMP(6) WHERE id = %s AND status NOT IN ('deleting', 'deleted')",
                                (row["id"],))
            if changed:
                for kind in (f"{what}.create", f"{what}.update"):
                    operations.finish_open(db, row["id"], kind, "cancelled", f"the {what} was deleted")
                operations.start(db, ctx.principal, f"{what}.delete", row["id"], target_type=what)
    return accepted(ctx, family, row["id"], f"{what}.delete")


def sync(db, config, cloud, family, row, listed=None):
    """Make the cloud (a provider.Cloud) match one row: delete, create (or adopt) or update it.
    Answers what it did; raises CloudFailed.

    `listed` is the cloud's objects by id when the caller (the monitor) has listed them: then a
    ready row whose object is gone is made again, and a firewall whose rules drifted is rewritten.
    """
    from . import ownership
    what = family.what
    try:
        if row["status"] == "deleting":
            if row["cloud_id"]:
                family.delete_in_cloud(config, cloud, row["cloud_id"])
                if family.table == "vpcs":  # its range is free now, not at the monitor's next listing
                    db.update("DELETE FROM account_vpcs WHERE cloud_id = %s", (row["cloud_id"],))
            _settle(db, family, row, "deleted", f"{what}.delete", "succeeded")
            return "deleted"
        if row["cloud_id"] and listed is not None and row["cloud_id"] not in listed:
            # Gone from the listing: asked by its id first (a listing pages by offset and can come back
            # short), and forgotten only if the row is still as it was read.
            if cloud.network_object(what, row["cloud_id"]) is not None:
                return None
            if not db.update(f"UPDATE {family.table} SET cloud_id = NULL WHERE id = %s AND cloud_id = %s "
                             "AND status = %s", (row["id"], row["cloud_id"], row["status"])):
                return None
            row = {**row, "cloud_id": None}
        if not row["cloud_id"]:
            # Found by its name (or, made before installation ids, by its old name) and adopted.
            names = (ownership.cloud_name(config, what, row["id"]),
                     ownership.legacy_cloud_name(config, what, row["id"]))
            adopted = next((item_id for item_id, item in (listed or {}).items() if item.get("name") in names), None)
            cloud_id = adopted or family.create_in_cloud(config, cloud, row)
            db.update(f"UPDATE {family.table} SET cloud_id = %s WHERE id = %s", (cloud_id, row["id"]))
            row = {**row, "cloud_id": cloud_id}
            done = "created"
        elif family.needs_update(config, row, listed.get(row["cloud_id"]) if listed else None):
            family.update_in_cloud(config, cloud, row)
            done = "updated"
        elif row["status"] == "ready":
            return None
        else:
            done = "settled"
        _settle(db, family, row, "ready", None, "succeeded")
        return done
    except CloudFailed as exc:
        if not exc.retryable and row["status"] != "deleting":
            _settle(db, family, row, "error", None, "failed", refused(family, row, exc))
        raise


def _settle(db, family, row, status, kind, outcome, reason=""):
    """The row's new status and its open operations' outcome, in one guarded transaction:
    a change that came in meanwhile (a newer revision, a delete) is left for the next sync."""
    guard = ["id = %s", "status = %s"]
    args = [row["id"], row["status"]]
    if "revision" in row:
        guard.append("revision = %s")
        args.append(row["revision"])
    sets = "status = %s, status_reason = %s, updated_at = UTC_TIMESTAMP(6)"
    if status == "deleted":
        sets += ", live = NULL, deleted_at = UTC_TIMESTAMP(6)"
    elif status == "error" and family.table == "vpcs" and not row["cloud_id"]:
        sets += ", live = NULL"  # a VPC the cloud refused holds no range (and no name) of ours
    if "revision" in row and status == "ready":
        sets += ", applied_revision = revision"
    for attempt in db.transaction():
        with attempt:
            changed = db.update(f"UPDATE {family.table} SET {sets} WHERE {' AND '.join(guard)}",
                                (status, reason[:1000], *args))
            if changed:
                what = family.what
                for open_kind in ([kind] if kind else [f"{what}.create", f"{what}.update"]):
                    operations.finish_open(db, row["id"], open_kind, outcome, reason)

