"""Servers: the API's handlers and the rows behind them.

A create writes its row first (status `pending`), then asks the cloud for a
droplet tagged with the row's id, then stores the droplet id at once: if the
process dies in between, the monitor still finds the droplet by its tag.
"""

import json

from .errors import Problem
from .ids import cursor_for, id_cursor, new_id
from .validation import Field, byte_text, integer, list_of, one_of, text, validate
from .web import Response, page

STATUSES = ("pending", "ready", "error", "deleting", "deleted")

# DigitalOcean's own rules (DESIGN.md).
NAME_PATTERN = r"[a-zA-Z0-9]?[a-z0-9A-Z.\-]*[a-z0-9A-Z]"
TAG_PATTERN = r"[a-zA-Z0-9_\-:]+"
FINGERPRINT_PATTERN = r"([0-9a-f]{2}:){15}[0-9a-f]{2}"
USER_DATA_LIMIT = 64 * 1024

COLUMNS = ("id, owner, description, name, region, size, image, tags, instance_id, status, "
           "status_reason, public_ip, private_ip, created_at, ready_at, deleted_at")

def row_tag(config, server_id):
    """The tag that ties a droplet to its row: `<platform tag>:<row id>`."""
    return f"{config.platform_tag}:{server_id}"


def _user_tag(config):
    check_pattern = text(255, TAG_PATTERN, "tags may hold only letters, digits, '_', '-' and ':'",
                         allow_empty=False)
    reserved = config.platform_tag.lower()

    def check(value):
        value = check_pattern(value)
        if value.lower() == reserved or value.lower().startswith(reserved + ":"):
            raise ValueError(f"tags starting with {config.platform_tag!r} are reserved")
        return value
    return check


def _ssh_key(value):
    """A key's cloud id or its MD5 fingerprint (never a raw key: the SDK would upload it)."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return text(47, FINGERPRINT_PATTERN, "must be a key id or an MD5 fingerprint like aa:bb:...")(value)


def create_schema(config):
    return {
        "name": Field(text(255, NAME_PATTERN, "must be a host name: letters, digits, '.' and '-'",
                           allow_empty=False), required=True),
        "region": Field(one_of(config.get_list("CP_ALLOWED_REGIONS"), "region"), required=True),
        "size": Field(one_of(config.get_list("CP_ALLOWED_SIZES"), "size"), required=True),
        "image": Field(one_of(config.get_list("CP_ALLOWED_IMAGES"), "image"), required=True),
        "description": Field(text(1000), default=""),
        "tags": Field(list_of(_user_tag(config), 20), default=[]),
        "ssh_keys": Field(list_of(_ssh_key, 20), default=[]),
        "user_data": Field(byte_text(USER_DATA_LIMIT), default=""),
    }


def list_schema(config):
    return {
        "status": Field(one_of(STATUSES, "status")),
        "limit": Field(integer(1, 200), default=config.page_size),
        "cursor": Field(id_cursor),
        "include_deleted": Field(one_of(("true", "false"), "value"), default="false"),
    }


def represent(row):
    return {
        "id": row["id"],
        "owner": row["owner"],
        "description": row["description"],
        "name": row["name"],
        "region": row["region"],
        "size": row["size"],
        "image": row["image"],
        "tags": json.loads(row["tags"]),
        "instance_id": str(row["instance_id"]) if row["instance_id"] else None,
        "status": row["status"],
        "status_reason": row["status_reason"],
        "public_ip": row["public_ip"] or "",
        "private_ip": row["private_ip"] or "",
        "created_at": row["created_at"],
        "ready_at": row["ready_at"],
        "deleted_at": row["deleted_at"],
    }


def load_row(request, server_id):
    """One of the caller's tenant's servers; another tenant's is as unknown as a made-up id."""
    return request.db.one_or_404("server", f"SELECT {COLUMNS} FROM servers WHERE id = %s AND tenant_id = %s",
                                 (server_id, request.principal.tenant_id))


def list_servers(request):
    query = {name: request.arg(name) for name in request.query}
    args = validate(query, list_schema(request.config))
    where, params = ["tenant_id = %s"], [request.principal.tenant_id]
    if "status" in args:
        where.append("status = %s")
        params.append(args["status"])
    elif args["include_deleted"] == "false":
        where.append("status <> 'deleted'")
    if "cursor" in args:
        where.append("id > %s")
        params.append(args["cursor"])
    sql = f"SELECT {COLUMNS} FROM servers WHERE {' AND '.join(where)} ORDER BY id LIMIT %s"
    rows = request.db.query(sql, (*params, args["limit"] + 1))
    rows, headers = page(request, "/servers", args, rows, lambda last: cursor_for(last["id"]))
    return Response(200, [represent(row) for row in rows], headers)


def get_server(request):
    return Response(200, represent(load_row(request, request.params["server_id"])))


def get_server_status(request):
    row = represent(load_row(request, request.params["server_id"]))
    keys = ("id", "status", "status_reason", "public_ip", "private_ip", "ready_at")
    return Response(200, {key: row[key] for key in keys})


def create_server(request):
    """POST /api/servers: the row and its operation first, then the cloud, then the droplet id at once."""
    from . import operations, provider
    config, db, principal = request.config, request.db, request.principal
    fields = validate(request.fields(), create_schema(config))
    server_id = request.audit_target = new_id()
    with db.transaction():
        db.update(
            "INSERT INTO servers (id, tenant_id, owner, description, name, region, size, image, tags, "
            "status, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'pending', "
            "UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
            (server_id, principal.tenant_id, principal.user_id, fields["description"],
             fields["name"], fields["region"], fields["size"], fields["image"], json.dumps(fields["tags"])))
        operation_id = operations.start(db, principal, "server.create", server_id)
        if request.idempotency is not None:
            request.idempotency.bind(server_id)
    try:
        droplet_id = provider.create_droplet(
            config, provider.request_budget(config), name=fields["name"], region=fields["region"],
            size=fields["size"], image=fields["image"], ssh_keys=fields["ssh_keys"],
            user_data=fields["user_data"], row_tag=row_tag(config, server_id),
            tags=[config.platform_tag, row_tag(config, server_id), *fields["tags"]])
    except provider.CloudError as exc:
        # The monitor destroys any droplet that still turns up with this row's tag. Guarded:
        # a DELETE or a cancel that came in meanwhile wins, and the monitor finishes it.
        with db.transaction():
            db.update("UPDATE servers SET status = 'error', status_reason = %s, updated_at = UTC_TIMESTAMP(6) "
                      "WHERE id = %s AND status = 'pending'", (exc.message[:1000], server_id))
            db.update("UPDATE operations SET status = 'failed', error = %s, updated_at = UTC_TIMESTAMP(6) "
                      "WHERE id = %s AND status IN ('pending', 'running')", (exc.message[:1000], operation_id))
        raise cloud_problem(exc) from None
    with db.transaction():
        db.update("UPDATE servers SET instance_id = %s, updated_at = UTC_TIMESTAMP(6) "
                  "WHERE id = %s AND instance_id IS NULL", (droplet_id, server_id))
        db.update("UPDATE operations SET status = 'running', updated_at = UTC_TIMESTAMP(6) "
                  "WHERE id = %s AND status = 'pending'", (operation_id,))
    return created_answer(request, server_id)


def created_answer(request, server_id):
    """202 with the server and its create operation (also how an idempotent retry is answered)."""
    from . import operations
    server = represent(load_row(request, server_id))
    operation = request.db.one(f"SELECT {operations.COLUMNS} FROM operations WHERE target_id = %s "
                               "AND kind = 'server.create' ORDER BY id LIMIT 1", (server_id,))
    server["operation"] = operations.represent(operation)
    return Response(202, server, [("Location", request.url(f"/servers/{server_id}")),
                                  ("Operation-Location", request.url(f"/operations/{operation['id']}"))])


def delete_server(request):
    """DELETE /api/servers/<id>: destroy the droplet, then mark the row deleting; the monitor confirms."""
    from . import operations, provider
    config, db = request.config, request.db
    request.audit_target = request.params["server_id"]
    row = load_row(request, request.params["server_id"])
    if row["status"] in ("deleting", "deleted"):
        return Response(202, represent(row))
    if row["instance_id"]:
        try:
            provider.destroy_droplet(config, provider.request_budget(config), row["instance_id"])
        except provider.CloudError as exc:
            raise cloud_problem(exc) from None
    # Without a droplet id, the monitor finds any droplet by the row's tag and destroys it.
    with db.transaction():
        set_status(db, row["id"], "deleting", "deletion requested")
        operations.finish_open(db, row["id"], "server.create", "cancelled", "the server was deleted")
        operation_id = operations.start(db, request.principal, "server.delete", row["id"], status="running")
    server = represent(load_row(request, row["id"]))
    server["operation"] = operations.represent(operations.load(db, request.principal.tenant_id, operation_id))
    return Response(202, server, [("Operation-Location", request.url(f"/operations/{operation_id}"))])


POWER_ACTIONS = ("reboot", "power_off", "power_on")


def server_action(request):
    """POST /api/servers/<id>/actions {"type": reboot|power_off|power_on}: 202 with the operation."""
    from . import operations, provider
    config, db = request.config, request.db
    fields = validate(request.fields(), {"type": Field(one_of(POWER_ACTIONS, "action"), required=True)})
    row = load_row(request, request.params["server_id"])
    request.audit_target = row["id"]
    if row["status"] != "ready":
        raise Problem(409, "server-not-ready", f"the server is {row['status']}; power actions need a ready server")
    try:
        action_id = provider.droplet_action(config, provider.request_budget(config), row["instance_id"],
                                            fields["type"])
    except provider.CloudError as exc:
        raise cloud_problem(exc) from None
    operation_id = operations.start(db, request.principal, f"server.{fields['type']}", row["id"],
                                    status="running", cloud_action_id=action_id)
    operation = operations.represent(operations.load(db, request.principal.tenant_id, operation_id))
    return Response(202, operation, [("Location", request.url(f"/operations/{operation_id}"))])


def destroy_now(request, server_id):
    """Best effort: destroy a server's droplet at once if its id is known; else the monitor will."""
    from . import provider
    row = request.db.one("SELECT instance_id FROM servers WHERE id = %s", (server_id,))
    if row and row["instance_id"]:
        try:
            provider.destroy_droplet(request.config, provider.request_budget(request.config), row["instance_id"])
        except provider.CloudError as exc:
            from .web import log
            log(request.environ, f"droplet {row['instance_id']} not destroyed yet ({exc.message}); the monitor will")


def cloud_problem(error):
    """The cloud's failure as our answer: 503 when it rate-limits us, else 502; Retry-After when known."""
    headers = [("Retry-After", str(error.retry_after))] if error.retry_after else []
    if error.rate_limited:
        return Problem(503, "cloud-rate-limited", error.message, headers=headers)
    return Problem(502, "cloud-error", error.message, headers=headers)


def set_status(db, server_id, status, reason):
    db.update("UPDATE servers SET status = %s, status_reason = %s, updated_at = UTC_TIMESTAMP(6) "
              "WHERE id = %s", (status, reason[:1000], server_id))
