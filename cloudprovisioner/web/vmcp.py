"""GET/POST /api/vmcp-configs, GET/PATCH/DELETE /api/vmcp-configs/<id>, GET/POST/DELETE /api/vmcp-key,
and the public responder the CernVM WebAPI extension calls (GET /cgi-bin/vmcp?config=<id> or /vmcp/<id>)."""

from .. import vmcp
from ..ids import looks_like_id
from .responses import NO_STORE, Problem, Response, list_page, list_query


def list_configs(request):
    args = list_query(request, {})
    return list_page(request, "/vmcp-configs", vmcp.listing(request.ctx, args), args, vmcp.represent)


def get_config(request):
    return Response(200, vmcp.represent(vmcp.load_row(request.ctx, request.params["config_id"])))


def create_config(request):
    """POST /api/vmcp-configs: 201 with the configuration (never its secret) and where the responder serves it."""
    row, notes = vmcp.create(request.ctx, request.fields())
    return Response(201, vmcp.represent(row, notes), [("Location", request.url(f"/vmcp-configs/{row['id']}"))])


def update_config(request):
    """PATCH /api/vmcp-configs/<id>: the fields given change; a parameter sent as null is removed."""
    row, notes = vmcp.update(request.ctx, request.params["config_id"], request.fields())
    return Response(200, vmcp.represent(row, notes))


def delete_config(request):
    vmcp.delete(request.ctx, request.params["config_id"])
    return Response(204)


# ---------------------------------------------------------------- signing keys


def get_key(request):
    """GET /api/vmcp-key: the public half of the key that signs this tenant's configurations."""
    return Response(200, vmcp.key(request.ctx))


def set_key(request):
    """POST /api/vmcp-key {"private_key": PEM} or {"generate": true, "bits": 2048}: the tenant's own key
    (replacing any earlier one), stored encrypted; the answer shows only its public half."""
    return Response(201, vmcp.set_key(request.ctx, request.fields()))


def delete_key(request):
    """DELETE /api/vmcp-key: back to the platform's key."""
    vmcp.delete_key(request.ctx)
    return Response(204)


# ---------------------------------------------------------------- the responder


def respond(request):
    """GET /cgi-bin/vmcp?config=<id>&cvm_salt=...&cvm_hostid=... (or /vmcp/<id>?...): the configuration,
    signed for this salt, as the CernVM WebAPI extension asks for it. Public: the id is the capability."""
    import re

    config_id = request.params.get("config_id") or request.arg("config")
    salt, hostid = request.arg("cvm_salt"), request.arg("cvm_hostid")
    if not salt or not re.fullmatch(vmcp.SALT_PATTERN, salt):
        raise Problem(400, "bad-salt", "cvm_salt is required: 64 letters, digits or '-', as the CernVM WebAPI "
                                       "sends it")
    if hostid is not None and not re.fullmatch(vmcp.HOSTID_PATTERN, hostid):
        raise Problem(400, "bad-hostid", "cvm_hostid must be 1-128 letters, digits or . _ : -")
    if not looks_like_id(config_id):
        raise Problem(404 if config_id else 400, "not-found" if config_id else "no-config",
                      "no such VMCP configuration" if config_id else "name the configuration: ?config=<id>")
    return Response(200, vmcp.signed(request.ctx, config_id, salt), [NO_STORE])
