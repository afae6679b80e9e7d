"""A server's row as every resource sees it: its statuses and columns, how it is shown, and the changes
other resources make to it (cancelling a create). Below servers.py, operations.py and workspaces.py, so
that none of them imports another to read or change a server.
"""

import json

from .costs import BILLED, BILLED_FROM, BILLED_UNTIL, dollars, hourly_dollars, total
from .errors import CloudFailed

STATUSES = ("pending", "ready", "error", "deleting", "deleted")

COLUMNS = ("id, owner, description, name, region, size, image, tags, instance_id, status, "
           "status_reason, public_ip, private_ip, created_at, ready_at, deleted_at, workspace_id, vpc_id, "
           "firewall_ids, ssh_key_ids, expires_at, "
           # What it costs, in the same query (a list page asks nothing per server): its size's cached prices
           # (NULL until the monitor has listed them) and its billed lifetime, as costs.py reads them.
           "(SELECT price_hourly_micro FROM cloud_sizes WHERE slug = servers.size) AS price_hourly_micro, "
           "(SELECT price_monthly_micro FROM cloud_sizes WHERE slug = servers.size) AS price_monthly_micro, "
           f"{BILLED} AS billed, {BILLED_FROM} AS billed_from, {BILLED_UNTIL} AS billed_until")


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
        "workspace_id": row["workspace_id"],
        "vpc_id": row["vpc_id"],
        "firewall_ids": json.loads(row["firewall_ids"] or "[]"),
        "ssh_key_ids": json.loads(row["ssh_key_ids"] or "[]"),
        "expires_at": row["expires_at"],
        "hourly_price": hourly_dollars(row.get("price_hourly_micro")),
        "cost_to_date": dollars(cost_to_date(row)),
    }


def cost_to_date(row):
    """Micro-dollars a server (a row of COLUMNS) has been billed since its creation, every month of it; 0 when
    it never had a droplet, None while its size's price is not cached."""
    if not row.get("billed"):
        return 0
    if row.get("price_monthly_micro") is None:
        return None
    return total(row["billed_from"], row["billed_until"], row["price_monthly_micro"])


def set_status(db, server_id, status, reason):
    db.update("UPDATE servers SET status = %s, status_reason = %s, updated_at = UTC_TIMESTAMP(6) "
              "WHERE id = %s", (status, reason[:1000], server_id))


def mark_destroyed(db, server_id):
    """The server's droplet stops costing from now (the cloud was just asked to destroy it, or it is gone):
    the end of its billed lifetime (costs.py). The first such moment holds."""
    db.update("UPDATE servers SET destroyed_at = UTC_TIMESTAMP(6) WHERE id = %s AND destroyed_at IS NULL",
              (server_id,))


def destroy_now(ctx, server_id):
    """Best effort: destroy a server's droplet at once if its id is known; else the monitor will.
    A failure is only a line in the operator's log (`ctx.log`): the monitor finishes it."""
    row = ctx.db.one("SELECT instance_id FROM servers WHERE id = %s", (server_id,))
    if row and row["instance_id"]:
        try:
            ctx.cloud.destroy_droplet(row["instance_id"])
        except CloudFailed as exc:
            ctx.log(f"droplet {row['instance_id']} not destroyed yet ({exc.message}); the monitor will")
        else:
            mark_destroyed(ctx.db, server_id)
