"""Servers: creating, listing, deleting and powering a tenant's servers (their HTTP handlers: web/servers.py).

A create writes its row first (status `pending`), then asks the cloud for a
droplet tagged with the row's id, then stores the droplet id at once: if the
process dies in between, the monitor still finds the droplet by its tag.

Once the cloud has made the droplet the create has happened, whatever the
database does next: it answers the server (202), never "try again", which a
client would follow with a second create and a second droplet.
"""

import json

from . import expiry, limits
from .db import DatabaseUnavailable
from .errors import Busy, CloudFailed, Conflict, Unavailable, invalid
from .ids import looks_like_id, new_id
from .server_rows import COLUMNS, STATUSES, mark_destroyed, represent, set_status
from .validation import Field, boolean, byte_text, list_of, one_of, text, validate

# DigitalOcean's own rules for droplet names and user data (tags: ownership.TAG_PATTERN).
NAME_PATTERN = r"[a-zA-Z0-9]?[a-z0-9A-Z.\-]*[a-z0-9A-Z]"
USER_DATA_LIMIT = 64 * 1024


def _object_id(what):
    def check(value):
        if not looks_like_id(value):
            raise ValueError(f"must be {what} id (26 letters and digits)")
        return value
    return check


def create_schema(config):
    from .ownership import user_tag  # a create's, not a read's
    from .workspaces import name_field
    return {
        "name": Field(text(255, NAME_PATTERN, "must be a host name: letters, digits, '.' and '-'",
                           allow_empty=False), required=True),
        "region": Field(one_of(config.get_list("CP_ALLOWED_REGIONS"), "region"), required=True),
        "size": Field(one_of(config.get_list("CP_ALLOWED_SIZES"), "size"), required=True),
        "image": Field(one_of(config.get_list("CP_ALLOWED_IMAGES"), "image"), required=True),
        "description": Field(text(1000), default=""),
        "tags": Field(list_of(user_tag(config), 20), default=[]),
        "ssh_keys": Field(list_of(_object_id("an SSH key"), 20), default=[]),
        "user_data": Field(byte_text(USER_DATA_LIMIT), default=""),
        "workspace": Field(name_field(), default="default"),
        "vpc": Field(_object_id("a VPC")),
        "firewalls": Field(list_of(_object_id("a firewall"), 10)),
        **expiry.fields(),  # expires_at or ttl
        # Read by check_mode() before the rest: a dry run. Here so that it is a known field like any other.
        "check_mode": Field(boolean),
    }


def list_schema(config):
    """The list's own filters (the web layer's list_query adds the page's limit and cursor)."""
    from .workspaces import name_field
    return {
        "status": Field(one_of(STATUSES, "status")),
        "workspace": Field(name_field()),
        "include_deleted": Field(one_of(("true", "false"), "value"), default="false"),
    }


def load(ctx, server_id):
    """One of the caller's tenant's servers; another tenant's is as unknown as a made-up id."""
    return ctx.db.existing("server", f"SELECT {COLUMNS} FROM servers WHERE id = %s AND tenant_id = %s",
                           (server_id, ctx.tenant_id))


def listing(ctx, args):
    """One page of the tenant's servers (args: list_schema's filters, limit, cursor)."""
    where, params = ["tenant_id = %s"], [ctx.tenant_id]
    if "status" in args:
        where.append("status = %s")
        params.append(args["status"])
    elif args["include_deleted"] == "false":
        where.append("status <> 'deleted'")
    if "workspace" in args:
        from . import workspaces
        workspace = workspaces.find(ctx, args["workspace"])
        if workspace is None:
            raise invalid({"workspace": f"no workspace {args['workspace']!r}"})
        condition, values = workspaces.member_condition(workspace)
        where.append(condition)
        params += values
    return ctx.db.page(f"SELECT {COLUMNS} FROM servers", where, params, args)


STATUS_KEYS = ("id", "status", "status_reason", "public_ip", "private_ip", "ready_at")


def status(ctx, server_id):
    """The server as shown, cut to what says how far it got."""
    shown = represent(load(ctx, server_id))
    return {key: shown[key] for key in STATUS_KEYS}


# How long a create keeps trying to write what the cloud answered while the database is away: a restart's
# worth. Its row is bound to any Idempotency-Key before the cloud call, so even a retry that takes the
# claim over meanwhile answers from this server.
OUTCOME_WRITE_WINDOW = 10


def create(ctx, fields, bind=None):
    """A new server from `fields`: its network first (keys, VPC, firewalls), then the row and its
    operation, committed, then the cloud (no transaction open meanwhile), then the droplet id. Answers
    the server as `created` shows it.

    `bind(server_id)`, if given, is called in the row's own transaction (an Idempotency-Key's claim
    binds the server it made, so that a retry is answered from it). A default network object the
    cloud failed to make is left to the monitor, with a line in the operator's log (`ctx.log`)."""
    from . import operations, ownership, quotas, sshkeys
    config, db, principal = ctx.config, ctx.db, ctx.principal
    fields = validate(fields, create_schema(config))
    expires_at = expiry.on_create(ctx, fields)  # the tenant's policy: required, capped
    limits.spend(ctx, "cloud")
    user_data = _user_data(fields["user_data"])
    workspace = _workspace(ctx, fields["workspace"])
    size = _size(ctx, fields["size"])
    quotas.check_server(ctx, size)  # an early word, before the network: a create over quota makes nothing
    key_ids = sshkeys.cloud_ids(ctx, fields["ssh_keys"])  # before the network: a bad key makes nothing
    firewall_ids, vpc = _network(ctx, fields)
    server_id = ctx.target = new_id()
    for attempt in db.transaction():
        with attempt:
            quotas.hold_for_server(ctx, size)  # the word that counts: under the tenant's quota lock
            db.update(
                "INSERT INTO servers (id, tenant_id, workspace_id, vpc_id, owner, description, name, region, size, "
                "image, tags, firewall_ids, ssh_key_ids, expires_at, status, created_at, updated_at) VALUES (%s, %s, "
                "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'pending', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
                (server_id, principal.tenant_id, workspace["id"], vpc["id"], principal.user_id, fields["description"],
                 fields["name"], fields["region"], fields["size"], fields["image"], json.dumps(fields["tags"]),
                 json.dumps(firewall_ids), json.dumps(fields["ssh_keys"]), expires_at))
            operation_id = operations.start(db, principal, "server.create", server_id)
            if bind is not None:
                bind(server_id)
            # The answer should the database be gone once the droplet exists: the row as committed.
            as_committed = created(ctx, server_id)
    row_tag = ownership.row_tag(config, server_id)
    tags = [ownership.install_tag(config), row_tag, ownership.tenant_tag(config, principal.tenant_id),
            *fields["tags"], *[ownership.scoped_tag(config, principal.tenant_id, tag) for tag in fields["tags"]],
            *[ownership.firewall_tag(config, firewall_id) for firewall_id in firewall_ids]]
    try:
        droplet_id = ctx.cloud.create_droplet(
            name=fields["name"], region=fields["region"], size=fields["size"], image=fields["image"],
            ssh_keys=key_ids, user_data=user_data, row_tag=row_tag, tags=tags, vpc_uuid=vpc["cloud_id"])
    except CloudFailed as exc:
        _write_failure(ctx, server_id, operation_id, exc)
        raise
    try:
        return db.again_while_unavailable(lambda: _write_droplet(ctx, server_id, operation_id, droplet_id),
                                          OUTCOME_WRITE_WINDOW)
    except DatabaseUnavailable as exc:
        ctx.log(f"server {server_id}: droplet {droplet_id} made, its id not written ({exc.reason}); "
                "the monitor adopts it by its tag")
        return as_committed


def _write_droplet(ctx, server_id, operation_id, droplet_id):
    """Store the droplet's id and move the create on; answers the server as `created` shows it.
    Guarded, so running it again changes nothing (nor does a DELETE that came in meanwhile lose)."""
    db = ctx.db
    for attempt in db.transaction():
        with attempt:
            db.update("UPDATE servers SET instance_id = %s, updated_at = UTC_TIMESTAMP(6) "
                      "WHERE id = %s AND instance_id IS NULL", (droplet_id, server_id))
            db.update("UPDATE operations SET status = 'running', updated_at = UTC_TIMESTAMP(6) "
                      "WHERE id = %s AND status = 'pending'", (operation_id,))
    return created(ctx, server_id)


def _write_failure(ctx, server_id, operation_id, failure):
    """Mark the row and its create failed; the monitor destroys any droplet that still turns up with
    the row's tag. Guarded: a DELETE or a cancel that came in meanwhile wins, and the monitor finishes it.
    If the database stays away, the row stays pending and the monitor settles it past CP_CREATE_GRACE."""
    db, reason = ctx.db, failure.message[:1000]

    def write():
        for attempt in db.transaction():
            with attempt:
                db.update("UPDATE servers SET status = 'error', status_reason = %s, updated_at = UTC_TIMESTAMP(6) "
                          "WHERE id = %s AND status = 'pending'", (reason, server_id))
                db.update("UPDATE operations SET status = 'failed', error = %s, updated_at = UTC_TIMESTAMP(6) "
                          "WHERE id = %s AND status IN ('pending', 'running')", (reason, operation_id))
    try:
        db.again_while_unavailable(write, OUTCOME_WRITE_WINDOW)
    except DatabaseUnavailable as exc:
        ctx.log(f"server {server_id}: its failed create not written ({exc.reason}); the monitor settles it")


def _user_data(user_data):
    """The user's cloud-init with ours merged in (password login off), within the cloud's limit."""
    from . import cloudinit
    try:
        merged = cloudinit.merge(user_data)
    except ValueError as exc:
        raise invalid({"user_data": str(exc)}) from None
    size = len(merged.encode("utf-8"))
    if size > USER_DATA_LIMIT:
        raise invalid({"user_data": f"too large once the platform's cloud-config is added: {size} bytes, "
                                    f"the cloud takes {USER_DATA_LIMIT}"})
    return merged


def check_mode(fields, query):
    """Whether a create is a dry run: `"check_mode": true` in its body or `?dry_run=true` in its query (which
    may hold nothing else: a misspelt flag must not make a real server). Takes check_mode out of `fields` (a
    body just parsed for this request), which then holds what a create reads."""
    flags = validate(query, {"dry_run": Field(boolean, default=False)})
    body = validate({"check_mode": fields.pop("check_mode", None)}, {"check_mode": Field(boolean, default=False)})
    return body["check_mode"] or flags["dry_run"]


def plan(ctx, fields):
    """A dry run of `create` (`check_mode`): every check a create makes, with nothing written and nothing
    asked of the cloud. Answers what the create would make, where, what it would cost and the quotas after
    it; or raises what the create would raise. What only the cloud can say (that it has capacity, that it
    takes the keys) it cannot say; the defaults a first create makes are named as "would be made"."""
    from . import quotas, sizes, sshkeys
    fields = validate(fields, create_schema(ctx.config))
    expires_at = expiry.on_create(ctx, fields)
    user_data = _user_data(fields["user_data"])
    workspace = _workspace(ctx, fields["workspace"], make_default=False)
    size = quotas.require_size(sizes.known(ctx.db, fields["size"]), fields["size"])
    after = quotas.check_server(ctx, size)
    keys = sshkeys.named(ctx, fields["ssh_keys"])
    server = {key: fields[key] for key in ("name", "region", "size", "image", "description", "tags")}
    server.update(workspace=workspace["name"], ssh_keys=[{"id": key_id, "name": keys[key_id]["name"]}
                                                         for key_id in fields["ssh_keys"]],
                  user_data_bytes=len(user_data.encode("utf-8")),
                  expires_at=expiry.shown(expires_at) if expires_at else None)
    return {"check_mode": True, "server": server, "network": _network_plan(ctx, fields),
            "cost": _cost_plan(ctx, size), "quotas_after": after}


def _network_plan(ctx, fields):
    """The firewalls and VPC a create would use: the named ones (checked as a create checks them), or the
    tenant's defaults, which a first create makes."""
    from . import firewalls, vpcs
    if fields.get("firewalls"):
        shown = [{"id": firewall_id, "would_be_made": False}
                 for firewall_id in firewalls.named(ctx, fields["firewalls"])]
    else:
        row = ctx.db.one("SELECT id FROM firewalls WHERE tenant_id = %s AND is_default = 1 AND status <> 'deleted'",
                         (ctx.tenant_id,))
        shown = [{"id": row["id"] if row else None, "name": firewalls.DEFAULT_NAME, "would_be_made": row is None}]
    if "vpc" in fields:
        vpc = _vpc(ctx, fields)
    else:
        vpc = ctx.db.one(f"SELECT {vpcs.COLUMNS} FROM vpcs WHERE tenant_id = %s AND name = %s AND live = 1",
                         (ctx.tenant_id, f"default-{fields['region']}"))
    vpc_shown = ({"id": vpc["id"], "name": vpc["name"], "ip_range": vpc["ip_range"], "would_be_made": False} if vpc
                 else {"id": None, "name": f"default-{fields['region']}", "ip_range": None, "would_be_made": True})
    return {"firewalls": shown, "vpc": vpc_shown}


def _cost_plan(ctx, size):
    from . import costs
    return {"currency": "USD", "hourly_price": costs.hourly_dollars(size["price_hourly_micro"]),
            "estimated_monthly": costs.dollars(size["price_monthly_micro"]),
            "to_month_end": costs.dollars(costs.new_server_projection_micro(ctx.db, size))}


def _size(ctx, slug):
    """The size from the cache the monitor keeps. On a fresh installation, before the monitor's first run,
    the cloud's sizes are listed now, once: this create calls the cloud anyway."""
    from . import quotas, sizes
    row = sizes.known(ctx.db, slug)
    if row is None and sizes.refresh_if_stale(ctx.db, ctx.cloud, ctx.config.get("CP_SIZES_MAX_AGE")):
        row = sizes.known(ctx.db, slug)
    return quotas.require_size(row, slug)


def _workspace(ctx, name, make_default=True):
    from . import workspaces
    row = workspaces.find(ctx, name, make_default)
    if row is None and not make_default and name == workspaces.DEFAULT:
        return {"name": name}  # a dry run's: the create would make it
    if row is None:
        raise invalid({"workspace": f"no workspace {name!r}; create it with POST /api/workspaces"})
    return row


def _network(ctx, fields):
    """The server's firewalls and VPC. Under a per-tenant lease, so that concurrent first creates
    wait for one of them to make the tenant's defaults instead of each trying to."""
    from . import firewalls, leases
    budget = ctx.config.cloud_budget
    # Held for as long as making the defaults may take (the request's cloud budget), and a margin.
    with leases.held(ctx.db, f"cloudprovisioner.network:{ctx.tenant_id}", budget + 30, budget + 5,
                     lambda: Busy("the tenant's network is being set up; try again", retry_after=5)):
        firewall_ids = (firewalls.named(ctx, fields["firewalls"]) if fields.get("firewalls")
                        else [firewalls.ensure_default(ctx)])
        return firewall_ids, _vpc(ctx, fields)


def _vpc(ctx, fields):
    """The VPC the server goes in (the region's default unless named), made in the cloud by now."""
    from . import vpcs
    if "vpc" in fields:
        row = ctx.db.one(f"SELECT {vpcs.COLUMNS} FROM vpcs WHERE id = %s AND tenant_id = %s "
                         "AND status NOT IN ('deleting', 'deleted')", (fields["vpc"], ctx.tenant_id))
        if row is None:
            raise invalid({"vpc": f"no VPC {fields['vpc']}"})
        if row["region"] != fields["region"]:
            raise invalid({"vpc": f"the VPC is in {row['region']}; a server in {fields['region']} needs one there"})
    else:
        row = vpcs.ensure_default(ctx, fields["region"])
    row = ctx.db.one(f"SELECT {vpcs.COLUMNS} FROM vpcs WHERE id = %s", (row["id"],))
    if row["status"] == "error":
        raise Conflict(f"the VPC {row['name']} could not be made: {row['status_reason']}", "vpc-failed")
    if row["cloud_id"] is None:
        raise Unavailable(f"the VPC {row['name']} is not made in the cloud yet; the monitor will make it within "
                          "a minute or two", "vpc-not-ready", retry_after=60)
    return row


def created(ctx, server_id):
    """The server as shown with its create operation under "operation" (what a create answers, and
    how an idempotent retry is answered again)."""
    from . import costs, operations
    shown = represent(load(ctx, server_id))
    operation = ctx.db.one(f"SELECT {operations.COLUMNS} FROM operations WHERE target_id = %s "
                           "AND kind = 'server.create' ORDER BY id LIMIT 1", (server_id,))
    shown["operation"] = operations.represent(operation)
    shown["estimated_monthly"] = costs.estimated_monthly(ctx.db, shown["size"])
    return shown


def delete(ctx, server_id):
    """Destroy the droplet, then mark the row deleting; the monitor confirms. Answers the server as
    shown, with the delete's operation under "operation" (none when it was deleting already)."""
    from . import operations
    db = ctx.db
    ctx.target = server_id
    row = load(ctx, server_id)
    if row["status"] in ("deleting", "deleted"):
        return represent(row)
    limits.spend(ctx, "cloud")
    if row["instance_id"]:
        ctx.cloud.destroy_droplet(row["instance_id"])
    # Without a droplet id, the monitor finds any droplet by the row's tag and destroys it.
    for attempt in db.transaction():
        with attempt:
            set_status(db, row["id"], "deleting", "deletion requested")
            if row["instance_id"]:  # destroyed just now: its billing ends here, not when the monitor confirms
                mark_destroyed(db, row["id"])
            operations.finish_open(db, row["id"], "server.create", "cancelled", "the server was deleted")
            operation_id = operations.start(db, ctx.principal, "server.delete", row["id"], status="running")
    shown = represent(load(ctx, row["id"]))
    shown["operation"] = operations.represent(operations.load(db, ctx.tenant_id, operation_id))
    return shown


POWER_ACTIONS = ("reboot", "power_off", "power_on")


def act(ctx, server_id, fields):
    """A power action ({"type": reboot|power_off|power_on}) sent to the cloud; answers its operation as shown."""
    from . import operations
    fields = validate(fields, {"type": Field(one_of(POWER_ACTIONS, "action"), required=True)})
    row = load(ctx, server_id)
    ctx.target = row["id"]
    if row["status"] != "ready":
        raise Conflict(f"the server is {row['status']}; power actions need a ready server", "server-not-ready")
    limits.spend(ctx, "cloud")
    action_id = ctx.cloud.droplet_action(row["instance_id"], fields["type"])
    operation_id = operations.start(ctx.db, ctx.principal, f"server.{fields['type']}", row["id"],
                                    status="running", cloud_action_id=action_id)
    return operations.represent(operations.load(ctx.db, ctx.tenant_id, operation_id))
