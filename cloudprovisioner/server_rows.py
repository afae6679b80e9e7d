"""A server's row as every resource sees it: its statuses and columns, how it is shown, and the changes
other resources make to it (cancelling a create). Below servers.py, operations.py and workspaces.py, so
that none of them imports another to read or change a server.
"""

import json

from .errors import CloudFailed

STATUSES = ("pending", "ready", "error", "deleting", "deleted")

COLUMNS = ("id, owner, description, name, region, size, image, tags, instance_id, status, "
           "status_reason, public_ip, private_ip, created_at, ready_at, deleted_at, workspace_id, vpc_id, "
           "firewall_ids, ssh_key_ids")


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
    }


def set_status(db, server_id, status, reason):
    db.update("UPDATE servers SET status = %s, status_reason = %s, updated_at = UTC_TIMESTAMP(6) "
              "WHERE id = %s", (status, reason[:1000], server_id))


def destroy_now(ctx, server_id):
    """Best effort: destroy a server's droplet at once if its id is known; else the monitor will.
    A failure is only a line in the operator's log (`ctx.log`): the monitor finishes it."""
    row = ctx.db.one("SELECT instance_id FROM servers WHERE id = %s", (server_id,))
    if row and row["instance_id"]:
        try:
            ctx.cloud.destroy_droplet(row["instance_id"])
        except CloudFailed as exc:
            ctx.log(f"droplet {row['instance_id']} not destroyed yet ({exc.message}); the monitor will")
