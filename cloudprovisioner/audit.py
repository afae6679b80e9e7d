"""The audit log: one row per state-changing request and per login attempt.

Rows are written by web.py after the handler has answered, so failures
(401, 403, 422, 502...) are recorded too. Tenant admins read their tenant's
rows, newest first.
"""

from .responses import Response, page
from .validation import Field, integer, text, validate

RESULTS = {401: "denied", 403: "denied", 429: "denied"}
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def record(request, status):
    principal = request.principal
    if principal is not None:
        tenant_id, user_id, token_id = principal.tenant_id, principal.user_id, principal.token_id
    else:
        tenant_id, user_id = request.audit_actor or (None, None)
        token_id = None
    result = "ok" if status < 400 else RESULTS.get(status, "failed")
    request.db.update(
        "INSERT INTO audit_log (at, tenant_id, user_id, token_id, action, target, result, status, "
        "client_addr, request_id) VALUES (UTC_TIMESTAMP(6), %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (tenant_id, user_id, token_id, request.action, request.audit_target[:255], result, status,
         request.environ.get("REMOTE_ADDR", "")[:45], request.request_id))


def _utc_time(value):
    """A real UTC time in ISO 8601 with Z (2026-11-23T10:00:00Z); answers it as MySQL reads it."""
    from datetime import datetime
    if not isinstance(value, str) or not value.isascii():
        raise ValueError("must be a UTC time like 2026-11-23T10:00:00Z")
    try:
        return datetime.strptime(value, TIME_FORMAT).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise ValueError("must be a UTC time like 2026-11-23T10:00:00Z") from None


def _list_schema():
    when = _utc_time
    return {
        "since": Field(when), "until": Field(when),
        "user": Field(text(26, r"[0-9a-z]{26}", "must be a user id")),
        "action": Field(text(64, r"[a-z_]+\.[a-z_]+", "must be an action like servers.create_server")),
        "limit": Field(integer(1, 200), default=50),
        "cursor": Field(integer(1, 2**62)),
    }


def list_entries(request):
    """GET /api/audit: the caller's tenant only; filters by time, user and action; newest first."""
    args = validate({name: request.arg(name) for name in request.query}, _list_schema())
    where, params = ["tenant_id = %s"], [request.principal.tenant_id]
    for name, condition in (("since", "at >= %s"), ("until", "at < %s"), ("user", "user_id = %s"),
                            ("action", "action = %s"), ("cursor", "id < %s")):
        if name in args:
            where.append(condition)
            params.append(args[name])
    rows = request.db.query(
        "SELECT id, at, user_id, token_id, action, target, result, status, client_addr, request_id "
        f"FROM audit_log WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s",
        (*params, args["limit"] + 1))
    rows, headers = page(request, "/audit", args, rows, lambda last: last["id"])
    for row in rows:
        row["id"] = str(row["id"])
    return Response(200, rows, headers)
