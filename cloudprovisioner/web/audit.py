"""The audit log's HTTP side: the row each state-changing request leaves, and GET /api/audit."""

from .. import audit
from .responses import Response, page

RESULTS = {401: "denied", 403: "denied", 429: "denied"}


def record(request, status):
    """Written by the application (app.py) after the handler has answered, whatever the outcome."""
    principal = request.principal
    if principal is not None:
        tenant_id, user_id, token_id = principal.tenant_id, principal.user_id, principal.token_id
    else:
        tenant_id, user_id = request.ctx.actor or (None, None)
        token_id = None
    audit.record(request.db, tenant_id=tenant_id, user_id=user_id, token_id=token_id, action=request.action,
                 target=request.ctx.target, result="ok" if status < 400 else RESULTS.get(status, "failed"),
                 status=status, client_addr=request.environ.get("REMOTE_ADDR", ""), request_id=request.request_id)


def list_entries(request):
    """GET /api/audit: the caller's tenant only; filters by time, user and action; newest first."""
    args, rows = audit.entries(request.ctx, {name: request.arg(name) for name in request.query})
    rows, headers = page(request, "/audit", args, rows, lambda last: last["id"])
    for row in rows:
        row["id"] = str(row["id"])
    return Response(200, rows, headers)
