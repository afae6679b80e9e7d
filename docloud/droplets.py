"""Droplets and their actions: how the API shows them (their lifecycle is
computed from the creation time, so nothing has to tick), how a create
request is checked, and the /v2/droplets and /v2/actions handlers."""

import re
import time
import uuid

from .addresses import default_vpc_range, default_vpc_uuid, private_v4, public_v4, public_v6
from .catalog import DEFAULT_REGION, IMAGES, REGIONS, SIZES, find_image
from .errors import not_found, unprocessable
from .plumbing import JSON_TYPE, Reply, iso, listing, paging
from .store import DropletSpec
from .validation import checked_name, parse_tags

ACTION_SECONDS = 1.0  # how long a power action stays in progress, at most


def _features(row):
    flags = {"backups": row["backups"], "ipv6": row["ipv6"],
             "monitoring": row["monitoring"], "droplet_agent": row["agent"]}
    # Every droplet sits in its region's VPC, so private networking is a given.
    return ["private_networking"] + [name for name, on in flags.items() if on]


def _networks(row, provisioned):
    if not provisioned:
        return {"v4": [], "v6": []}
    v6 = [public_v6(row["id"])] if row["ipv6"] else []
    # A droplet whose VPC row is gone (state from before VPCs were records)
    # falls back to its region's default range.
    ip_range = row["vpc_ip_range"] or default_vpc_range(row["region"])
    # DigitalOcean can list an active droplet before its public address is
    # attached; the public_ipv4 knob makes a droplet show that.
    public = [] if row["public_v4_withheld"] else [public_v4(row["id"])]
    return {"v4": [*public, private_v4(row["id"], ip_range)], "v6": v6}


def _next_backup_window(row, now):
    if not row["backups"]:
        return None
    start = (int(now) // 86400 + 1) * 86400  # next midnight UTC
    return {"start": iso(start), "end": iso(start + 23 * 3600)}


def render_droplet(row, tags, now, activate_after):
    """The droplet as the API shows it; its lifecycle is computed from the
    stored creation time and power state, so nothing has to tick."""
    provisioned = now >= row["created_at"] + activate_after
    status = ("active" if row["powered_on"] else "off") if provisioned else "new"
    size = SIZES[row["size"]]
    return {
        "id": row["id"], "name": row["name"], "memory": size["memory"],
        "vcpus": size["vcpus"], "disk": size["disk"], "disk_info": size["disk_info"],
        "locked": False, "status": status, "kernel": None,
        "created_at": iso(row["created_at"]), "features": _features(row),
        "backup_ids": [], "next_backup_window": _next_backup_window(row, now),
        "snapshot_ids": [], "image": IMAGES[row["image"]], "volume_ids": [],
        "size": size, "size_slug": row["size"], "networks": _networks(row, provisioned),
        "region": REGIONS[row["region"]], "tags": tags, "vpc_uuid": row["vpc_uuid"],
    }


def render_action(row, now, activate_after):
    # A create completes when its droplet turns active; other actions take
    # ACTION_SECONDS, or less when droplets activate faster than that.
    duration = activate_after if row["type"] == "create" else min(ACTION_SECONDS, activate_after)
    done = now >= row["started_at"] + duration
    return {
        "id": row["id"], "status": "completed" if done else "in-progress",
        "type": row["type"], "started_at": iso(row["started_at"]),
        "completed_at": iso(row["started_at"] + duration) if done else None,
        "resource_id": row["droplet_id"], "resource_type": "droplet",
        "region": REGIONS[row["region"]], "region_slug": row["region"],
    }


NAME_RE = re.compile(r"^[a-zA-Z0-9]?[a-z0-9A-Z.\-]*[a-z0-9A-Z]$")

MAX_USER_DATA = 64 * 1024
MAX_MULTI_CREATE = 10


def check_name(name):
    checked_name(name, NAME_RE, "Name is required.", "Name {name!r} is invalid: only valid hostname characters"
                  " are allowed (a-z, A-Z, 0-9, . and -), at most 255.")


def parse_names(body):
    """The names of the droplets to create: `names` (multi-create) or `name`."""
    if body.get("names") is None:
        names = [body.get("name")]
    else:
        names = body["names"]
        if not isinstance(names, list) or not 1 <= len(names) <= MAX_MULTI_CREATE:
            raise unprocessable(f"names must be a list of 1 to {MAX_MULTI_CREATE} names.")
    for name in names:
        check_name(name)
    return names


def _flag(body, key, default=False):
    # python-digitalocean sends null for options the caller left unset.
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise unprocessable(f"{key} must be a boolean.")
    return value


def _catalog_slug(value, catalog, what):
    if not isinstance(value, str) or value not in catalog:
        raise unprocessable(f"You specified an invalid {what} for Droplet creation.")
    return value


def _parse_user_data(user_data):
    if user_data is None:
        return None
    if not isinstance(user_data, str):
        raise unprocessable("user_data must be a string.")
    if len(user_data.encode()) > MAX_USER_DATA:
        raise unprocessable("user_data must not exceed 64 KiB.")
    return user_data


def _parse_vpc(store, vpc_uuid, region):
    """The droplet's VPC: the one named, which must be in the droplet's region,
    or else the region's default VPC."""
    if vpc_uuid is None:
        return default_vpc_uuid(region)
    try:
        vpc_uuid = str(uuid.UUID(vpc_uuid))
    except (TypeError, ValueError, AttributeError):
        raise unprocessable(f"vpc_uuid {vpc_uuid!r} is not a VPC UUID.") from None
    vpc = store.get_vpc(vpc_uuid)
    if vpc is None:
        raise unprocessable(f"vpc_uuid {vpc_uuid} does not name a VPC in the account.")
    if vpc["region"] != region:
        raise unprocessable(f"VPC {vpc_uuid} is in {vpc['region']}, not in {region}: a Droplet"
                            " must be created in its VPC's region.")
    return vpc_uuid


def _parse_ssh_keys(store, refs):
    """Key ids for the ids or fingerprints in the request."""
    if refs is None:
        return ()
    if not isinstance(refs, list):
        raise unprocessable("ssh_keys must be a list of key ids or fingerprints.")
    key_ids = []
    for ref in refs:
        row = store.find_key(ref) if isinstance(ref, (int, str)) else None
        if row is None:
            raise unprocessable(f"SSH key {ref!r} is not in the account.")
        key_ids.append(row["id"])
    return tuple(key_ids)


def parse_spec(store, body):
    """Validate a droplet create body (all but the names)."""
    region = _catalog_slug(body.get("region") or DEFAULT_REGION, REGIONS, "region")
    size = _catalog_slug(body.get("size"), SIZES, "size")
    image = find_image(body.get("image"))
    if image is None:
        raise unprocessable("You specified an invalid image for Droplet creation.")
    if body.get("volumes"):
        raise unprocessable("Block storage volumes are not available in the sandbox.")
    return DropletSpec(
        region=region, size=size, image=image["id"],
        backups=_flag(body, "backups"), ipv6=_flag(body, "ipv6"),
        monitoring=_flag(body, "monitoring"),
        # The agent is installed unless the caller says false.
        agent=_flag(body, "with_droplet_agent", default=True),
        vpc_uuid=_parse_vpc(store, body.get("vpc_uuid"), region),
        user_data=_parse_user_data(body.get("user_data")),
        ssh_keys=_parse_ssh_keys(store, body.get("ssh_keys")),
        tags=parse_tags(body.get("tags")))


def _render(app, found, now):
    row, tags = found
    return render_droplet(row, tags, now, app.activate_after)


def create_droplets(app, req):
    body = req.json()
    names = parse_names(body)
    spec = parse_spec(app.store, body)
    now = time.time()
    created = app.store.create_droplets(spec, names, now)
    droplets = [_render(app, app.store.get_droplet(d), now) for d, _ in created]
    links = {"actions": [{"id": a, "rel": "create", "href": f"{req.base_url}/v2/actions/{a}"}
                         for _, a in created]}
    if body.get("names") is not None:
        return Reply(202, {"droplets": droplets, "links": links})
    return Reply(202, {"droplet": droplets[0], "links": links})


# GET /v2/droplets?type=: GPU droplets or the others (the default); their sizes tell them apart.
DROPLET_TYPES = ("droplets", "gpus")


def _sizes_of_type(req):
    """The size slugs the listing keeps, or None for all of them (a tag's listing)."""
    kind = req.query.get("type")
    if kind is not None and kind not in DROPLET_TYPES:
        raise unprocessable(f"type {kind!r} is invalid: use droplets or gpus.")
    if req.query.get("tag_name") is not None:
        if kind is not None:
            raise unprocessable("type cannot be combined with tag_name.")
        return None
    gpus = kind == "gpus"
    return [slug for slug, size in SIZES.items() if ("gpu_info" in size) == gpus]


def list_droplets(app, req):
    page, per_page = paging(req)
    found, total = app.store.list_droplets(req.query.get("tag_name"), req.query.get("name"),
                                           (page - 1) * per_page, per_page, _sizes_of_type(req))
    now = time.time()
    droplets = [_render(app, item, now) for item in found]
    return listing(req, "droplets", droplets, total, page, per_page)


def get_droplet(app, req):
    found = app.store.get_droplet(req.int_param("id"))
    if found is None:
        raise not_found()
    return Reply(200, {"droplet": _render(app, found, time.time())})


# The two droplet deletes document their 204 with a content-type (no_content_with_content_type).
NO_CONTENT_WITH_TYPE = {"Content-Type": JSON_TYPE}


def delete_droplet(app, req):
    if not app.store.delete_droplet(req.int_param("id")):
        raise not_found()
    return Reply(204, headers=dict(NO_CONTENT_WITH_TYPE))


def delete_droplets_by_tag(app, req):
    # The tag must be in the query string, as on DigitalOcean: the JSON body
    # python-digitalocean sends with every DELETE is ignored, so a tag there
    # can never turn into "delete every droplet".
    tag = req.query.get("tag_name")
    if not tag:
        raise unprocessable("DELETE /v2/droplets needs the tag_name query parameter.")
    if not app.store.delete_tagged_droplets(tag):
        raise not_found()
    return Reply(204, headers=dict(NO_CONTENT_WITH_TYPE))


# type: power state afterwards (None: unchanged)
ACTION_POWER = {"reboot": None, "power_cycle": True, "power_on": True,
                "power_off": False, "shutdown": False}


def create_droplet_action(app, req):
    action_type = req.json().get("type")
    if not isinstance(action_type, str) or action_type not in ACTION_POWER:
        raise unprocessable(f"Action type {action_type!r} is not supported; use one of"
                            f" {', '.join(ACTION_POWER)}.")
    now = time.time()
    action_id = app.store.droplet_action(req.int_param("id"), action_type,
                                         ACTION_POWER[action_type], now)
    if action_id is None:
        raise not_found()
    return Reply(201, {"action": render_action(app.store.get_action(action_id), now,
                                               app.activate_after)})


def _list_actions(app, req, droplet_id):
    page, per_page = paging(req)
    rows, total = app.store.list_actions(droplet_id, (page - 1) * per_page, per_page)
    now = time.time()
    actions = [render_action(row, now, app.activate_after) for row in rows]
    return listing(req, "actions", actions, total, page, per_page)


def list_droplet_actions(app, req):
    droplet_id = req.int_param("id")
    if app.store.get_droplet(droplet_id) is None:
        raise not_found()
    return _list_actions(app, req, droplet_id)


def list_actions(app, req):
    return _list_actions(app, req, None)


def _action_reply(app, row):
    if row is None:
        raise not_found()
    return Reply(200, {"action": render_action(row, time.time(), app.activate_after)})


def get_droplet_action(app, req):
    return _action_reply(app, app.store.get_action(req.int_param("action_id"),
                                                   req.int_param("id")))


def get_action(app, req):
    return _action_reply(app, app.store.get_action(req.int_param("id")))
