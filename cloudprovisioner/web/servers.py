"""GET/POST /api/servers, GET/PATCH/DELETE /api/servers/<id>, its status and its power actions."""

from .. import expiry, servers
from .responses import Response, accepted, list_page, list_query


def list_servers(request):
    args = list_query(request, servers.list_schema(request.config))
    return list_page(request, "/servers", servers.listing(request.ctx, args), args, servers.represent)


def get_server(request):
    return Response(200, servers.represent(servers.load(request.ctx, request.params["server_id"])))


def get_server_status(request):
    return Response(200, servers.status(request.ctx, request.params["server_id"]))


def create_server(request):
    """POST /api/servers: 202 with the server and its create operation; the monitor sees it through. As a dry
    run (`"check_mode": true` or `?dry_run=true`): 200 with what it would make, nothing made."""
    fields = request.fields()
    if servers.check_mode(fields, {name: request.arg(name) for name in request.query}):
        plan = Response(200, servers.plan(request.ctx, fields))
        plan.keep = False  # a dry run takes no Idempotency-Key: the real create with it runs afresh
        return plan
    claim = request.idempotency
    server = servers.create(request.ctx, fields, bind=claim.bind if claim is not None else None)
    return accepted(request, server, f"/servers/{server['id']}")


def created_answer(request, server_id):
    """202 with the server and its create operation: how an idempotent retry is answered."""
    return accepted(request, servers.created(request.ctx, server_id), f"/servers/{server_id}")


def update_server(request):
    """PATCH /api/servers/<id> {"expires_at" or "ttl"}: its expiry moved within the tenant's policy (null
    removes it); 200 with the server."""
    server = servers.load(request.ctx, request.params["server_id"])
    return Response(200, servers.represent(expiry.change(request.ctx, server, request.fields())))


def delete_server(request):
    """DELETE /api/servers/<id>: destroy the droplet, then mark the row deleting; the monitor confirms."""
    server = servers.delete(request.ctx, request.params["server_id"])
    if "operation" not in server:  # deleting already: nothing new was started
        return Response(202, server)
    return accepted(request, server)


def server_action(request):
    """POST /api/servers/<id>/actions {"type": reboot|power_off|power_on}: 202 with the operation."""
    operation = servers.act(request.ctx, request.params["server_id"], request.fields())
    return Response(202, operation, [("Location", request.url(f"/operations/{operation['id']}"))])
