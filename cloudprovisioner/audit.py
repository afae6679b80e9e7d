"""The audit log: one row per state-changing request and per login attempt.

Rows are written after the action has answered, so refusals and failures (denied, failed) are
recorded too. Tenant admins read their tenant's rows, newest first.
"""

from .validation import Field, integer, text, validate

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def record(db, *, tenant_id, user_id, token_id, action, target, result, status, client_addr, request_id):
    db.update(
        "INSERT INTO audit_log (at, tenant_id, user_id, token_id, action, target, result, status, "
        "client_addr, request_id) VALUES (UTC_TIMESTAMP(6), %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (tenant_id, user_id, token_id, action, target[:255], result, status, client_addr[:45], request_id))


def _utc_time(value):
    """A real UTC time in ISO 8601 with Z (2026-11-23T10:00:00Z); answers it as MySQL reads it."""
    from datetime import datetime
    if not isinstance(value, str) or not value.isascii():
        raise ValueError("must be a UTC time like 2026-11-23T10:00:00Z")
    try:
        return datetime.strptime(value, TIME_FORMAT).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise ValueError("must be a UTC time like 2026-11-23T10:00:00Z") from None


def list_schema():
    when = _utc_time
    return {
        "since": Field(when), "until": Field(when),
        "user": Field(text(26, r"[0-9a-z]{26}", "must be a user id")),
        "action": Field(text(64, r"[a-z_]+\.[a-z_]+", "must be an action like servers.create_server")),
        "limit": Field(integer(1, 200), default=50),
        "cursor": Field(integer(1, 2**62)),
    }


def entries(ctx, query):
    """The tenant's rows, newest first, filtered by time, user and action (`query` as given, checked
    against list_schema): the checked arguments and the rows (one more than the limit when there are more)."""
    args = validate(query, list_schema())
    where, params = ["tenant_id = %s"], [ctx.tenant_id]
    for name, condition in (("since", "at >= %s"), ("until", "at < %s"), ("user", "user_id = %s"),
                            ("action", "action = %s"), ("cursor", "id < %s")):
        if name in args:
            where.append(condition)
            params.append(args[name])
    rows = ctx.db.query(
        "SELECT id, at, user_id, token_id, action, target, result, status, client_addr, request_id "
        f"FROM audit_log WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s",
        (*params, args["limit"] + 1))
    return args, rows
