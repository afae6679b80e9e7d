"""Orphans: cloud objects of this installation that no live row explains, as the monitor last saw them.

The monitor keeps the list (monitor.py); a person acts on it, from
`cloudprovisioner-admin` or by reading GET /api/admin/orphans:
- `held`: its row is unknown here (the database was restored from a backup,
  or another database made it). Nothing destroys it automatically: a person
  adopts it (a server row again, named as the droplet's tag names it) or
  destroys it by hand.
- `breaker`: provably dead, but the run that would have destroyed it held
  back (too many at once). `confirm-destroy` approves exactly what it showed;
  the next monitor run destroys it.
"""

import json

from . import ownership
from .errors import Conflict

COLUMNS = "kind, cloud_id, name, row_id, verdict, reason, first_seen_at, last_seen_at, approved_at"


class OrphanError(Conflict):
    """What a person asked for cannot be done (the detail says why)."""


def destroyers(cloud):
    """How each kind of cloud object is destroyed, through `cloud`: by the monitor (what is provably
    dead) and by a person (`cloudprovisioner-admin destroy`). Each answers False when it was already gone."""
    return {"droplet": cloud.destroy_droplet, "vpc": cloud.delete_vpc, "firewall": cloud.delete_firewall}


def listing(ctx, verdict=None):
    where, args = ("WHERE verdict = %s", (verdict,)) if verdict else ("", ())
    return ctx.db.query(f"SELECT {COLUMNS} FROM orphans {where} ORDER BY first_seen_at, kind, cloud_id", args)


def represent(row):
    return {key: row[key] for key in ("kind", "cloud_id", "name", "row_id", "verdict", "reason", "first_seen_at",
                                      "last_seen_at", "approved_at")}


def approve(ctx, shown):
    """Approve destroying exactly the breaker-held objects a person was shown; answers how many."""
    approved = 0
    for row in shown:
        approved += ctx.db.update("UPDATE orphans SET approved_at = UTC_TIMESTAMP(6) "
                                  "WHERE kind = %s AND cloud_id = %s AND verdict = 'breaker' AND approved_at IS NULL",
                                  (row["kind"], row["cloud_id"]))
    return approved


def destroy(ctx, kind, cloud_id):
    """Destroy one listed orphan by hand (only what the monitor listed as this installation's)."""
    row = find(ctx, kind, cloud_id)
    destroyers(ctx.cloud)[row["kind"]](row["cloud_id"])
    ctx.db.update("DELETE FROM orphans WHERE kind = %s AND cloud_id = %s", (row["kind"], row["cloud_id"]))


def adopt(ctx, droplet_id, tenant_id=None):
    """Bring a held droplet back under a server row: the row its tag names, in the tenant its tag names
    (or `tenant_id`), ready, with what the cloud says of it. Answers the server id."""
    config, db = ctx.config, ctx.db
    find(ctx, "droplet", droplet_id)
    droplet = ctx.cloud.get_droplet(droplet_id)
    if droplet is None:
        raise OrphanError(f"droplet {droplet_id} is gone from the cloud")
    tags = list(droplet.get("tags") or [])
    if ownership.install_tag(config) not in tags:
        raise OrphanError(f"droplet {droplet_id} does not carry this installation's tag "
                          f"{ownership.install_tag(config)}; it is not ours to adopt")
    server_id = ownership.row_id_in(config, tags)
    if server_id is None or db.one("SELECT 1 AS known FROM servers WHERE id = %s", (server_id,)):
        raise OrphanError(f"droplet {droplet_id} names no server, or one this database already has")
    tagged = ownership.tenant_in(config, tags)
    if tenant_id and tagged and tenant_id != tagged:
        raise OrphanError(f"droplet {droplet_id} belongs to tenant {tagged} by its tags (and firewall rules); "
                          f"it cannot be adopted into {tenant_id}")
    tenant_id = tenant_id or tagged
    if not tenant_id or not db.one("SELECT 1 AS known FROM tenants WHERE id = %s", (tenant_id,)):
        raise OrphanError(f"no tenant {tenant_id or '(none named on the droplet)'} here; name one with --tenant")
    for attempt in db.transaction():
        with attempt:
            db.update("INSERT INTO servers (id, tenant_id, workspace_id, vpc_id, owner, description, name, region, "
                      "size, image, tags, firewall_ids, ssh_key_ids, instance_id, status, status_reason, public_ip, "
                      "private_ip, created_at, updated_at, ready_at) VALUES (%s, %s, %s, %s, '', %s, %s, %s, %s, %s, "
                      "%s, %s, '[]', %s, 'ready', 'adopted by an admin', %s, %s, COALESCE(%s, UTC_TIMESTAMP(6)), "
                      "UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
                      _row_values(config, db, droplet, server_id, tenant_id, tags))
            db.update("DELETE FROM orphans WHERE kind = 'droplet' AND cloud_id = %s", (str(droplet_id),))
    return server_id


def _row_values(config, db, droplet, server_id, tenant_id, tags):
    workspace = db.one("SELECT id FROM workspaces WHERE tenant_id = %s AND name = 'default'", (tenant_id,))
    vpc = db.one("SELECT id FROM vpcs WHERE tenant_id = %s AND cloud_id = %s AND status <> 'deleted'",
                 (tenant_id, droplet.get("vpc_uuid") or ""))
    firewall_prefix = ownership.firewall_tag(config, "")
    named = [tag[len(firewall_prefix):] for tag in tags if tag.startswith(firewall_prefix)]
    firewalls = list(db.tenant_rows("firewalls", "id", tenant_id, named, " AND status <> 'deleted'"))
    addresses = {net.get("type"): net.get("ip_address") for net in (droplet.get("networks") or {}).get("v4", [])}
    own_tags = [tag for tag in tags if not tag.lower().startswith(config.platform_tag.lower())]
    created = (droplet.get("created_at") or "").replace("T", " ").rstrip("Z") or None
    return (server_id, tenant_id, workspace and workspace["id"], vpc and vpc["id"],
            "adopted from the cloud by an admin", droplet.get("name") or f"droplet-{droplet['id']}",
            (droplet.get("region") or {}).get("slug") or "", droplet.get("size_slug") or "",
            (droplet.get("image") or {}).get("slug") or "", json.dumps(own_tags), json.dumps(firewalls),
            droplet["id"], addresses.get("public"), addresses.get("private"), created)


def find(ctx, kind, cloud_id):
    row = ctx.db.one(f"SELECT {COLUMNS} FROM orphans WHERE kind = %s AND cloud_id = %s", (kind, str(cloud_id)))
    if row is None:
        raise OrphanError(f"{kind} {cloud_id} is not on the monitor's list of this installation's orphans "
                          "(cloudprovisioner-admin orphans)")
    return row
