"""GET/POST /api/servers, GET/DELETE /api/servers/<id>, its status and its power actions."""

from .. import servers
from .responses import Response, accepted, list_page, list_query


def list_servers(request):
    args = list_query(request, servers.list_schema(request.config))
    return list_page(request, "/servers", servers.listing(request.ctx, args), args, servers.represent)


def get_server(request):
    return Response(200, servers.represent(servers.load(request.ctx, request.params["server_id"])))


def get_server_status(request):
    return Response(200, servers.status(request.ctx, request.params["server_id"]))


def create_server(request):
    """POST /api/servers: 202 with the server and its create operation; the monitor sees it through."""
    claim = request.idempotency
    server = servers.create(request.ctx, request.fields(), bind=claim.bind if claim is not None else None)
    return accepted(request, server, f"/servers/{server['id']}")


def created_answer(request, server_id):
    """202 with the server and its create operation: how an idempotent retry is answered."""
    return accepted(request, servers.created(request.ctx, server_id), f"/servers/{server_id}")


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
