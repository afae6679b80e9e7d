"""VPCs: how the API shows them and their members, the checks DigitalOcean
applies to names and ranges (private, /16 to /28, no overlap in the
account), and the /v2/vpcs handlers."""

import ipaddress
import re
import time
import uuid

from .addresses import AUTO_VPC_NET, AUTO_VPC_PREFIX, DEFAULT_VPC_IDS, RFC1918_NETS, VPC_PREFIXES
from .catalog import REGIONS
from .errors import forbidden, not_found, unprocessable
from .plumbing import Reply, iso, listing, paging
from .validation import checked_name


def render_vpc(row):
    return {"id": row["id"], "urn": f"do:vpc:{row['id']}", "name": row["name"],
            "description": row["description"], "region": row["region"],
            "ip_range": row["ip_range"], "default": row["id"] in DEFAULT_VPC_IDS,
            "created_at": iso(row["created_at"])}


def render_vpc_member(row):
    return {"urn": f"do:droplet:{row['id']}", "name": row["name"],
            "created_at": iso(row["created_at"])}


VPC_NAME_RE = re.compile(r"^[a-zA-Z0-9\-\.]+$")
MAX_DESCRIPTION = 255


def check_vpc_name(name):
    return checked_name(name, VPC_NAME_RE, "name is required.", "VPC name {name!r} is invalid: only letters,"
                         " digits, dashes and periods are allowed, at most 255.")


def check_unique_vpc_name(name, vpcs):
    if any(vpc["name"] == name for vpc in vpcs):
        raise unprocessable(f"A VPC named {name!r} already exists: VPC names must be unique.")


def vpc_region(region):
    if region is None:
        raise unprocessable("region is required.")
    if not isinstance(region, str) or region not in REGIONS:
        raise unprocessable("You specified an invalid region for VPC creation.")
    return region


def vpc_description(body, current):
    value = body.get("description")
    if value is None:  # python-digitalocean sends null when unset
        return current
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise unprocessable("description must be a string of at most 255 characters.")
    return value


def parse_ip_range(text):
    """A requested VPC range, checked as DigitalOcean checks it, overlaps aside."""
    bad = unprocessable(f"ip_range {text!r} is not an IPv4 range in CIDR notation,"
                        " such as 10.10.10.0/24.")
    if not isinstance(text, str) or "/" not in text:
        raise bad
    try:
        net = ipaddress.IPv4Network(text, strict=False)
        address = ipaddress.IPv4Address(text.partition("/")[0])
    except ValueError:
        raise bad from None
    if net.prefixlen not in VPC_PREFIXES:
        raise unprocessable(f"ip_range {text} is a /{net.prefixlen}: a VPC range must be"
                            " from /16 (largest) to /28 (smallest).")
    if address != net.network_address:
        raise unprocessable(f"ip_range {text} is not a network address: did you mean {net}?")
    if not any(net.subnet_of(private) for private in RFC1918_NETS):
        raise unprocessable(f"ip_range {text} is not private: it must lie inside 10.0.0.0/8,"
                            " 172.16.0.0/12 or 192.168.0.0/16 (RFC 1918).")
    return net


def check_no_overlap(net, vpcs):
    # DigitalOcean refuses overlaps across the whole account, in any region.
    for vpc in vpcs:
        if net.overlaps(ipaddress.ip_network(vpc["ip_range"])):
            raise unprocessable(f"ip_range {net} overlaps {vpc['ip_range']} of VPC {vpc['name']}"
                                f" ({vpc['region']}): VPC ranges in an account must not overlap.")


def free_vpc_range(vpcs):
    """The first /20 of AUTO_VPC_NET that no VPC overlaps."""
    taken = [ipaddress.ip_network(vpc["ip_range"]) for vpc in vpcs]
    for net in AUTO_VPC_NET.subnets(new_prefix=AUTO_VPC_PREFIX):
        if not any(net.overlaps(other) for other in taken):
            return net
    raise unprocessable(f"No free /{AUTO_VPC_PREFIX} is left in {AUTO_VPC_NET} for a VPC"
                        " without an ip_range: give one.")


def check_vpc_update(body, vpc):
    """Refuse what a PUT or PATCH cannot change."""
    for key in ("region", "ip_range"):
        if body.get(key) not in (None, vpc[key]):
            raise unprocessable(f"The {key} of a VPC cannot be changed.")
    flag = body.get("default")
    if flag is None:
        return
    if not isinstance(flag, bool):
        raise unprocessable("default must be a boolean.")
    is_default = vpc["id"] in DEFAULT_VPC_IDS
    if is_default and not flag:
        raise unprocessable("The default field cannot be unset from true.")
    if flag and not is_default:
        # The sandbox keeps one fixed default VPC per region.
        raise unprocessable("Making another VPC the region's default is not supported by the sandbox.")


def list_vpcs(app, req):
    page, per_page = paging(req)
    rows, total = app.store.list_vpcs((page - 1) * per_page, per_page)
    return listing(req, "vpcs", [render_vpc(row) for row in rows], total, page, per_page)


def create_vpc(app, req):
    body = req.json()
    name = check_vpc_name(body.get("name"))
    region = vpc_region(body.get("region"))
    description = vpc_description(body, "")
    requested = None if body.get("ip_range") is None else parse_ip_range(body["ip_range"])

    def make(vpcs):
        check_unique_vpc_name(name, vpcs)
        if requested is not None:
            check_no_overlap(requested, vpcs)
        ip_range = requested if requested is not None else free_vpc_range(vpcs)
        return {"id": str(uuid.uuid4()), "name": name, "region": region,
                "description": description, "ip_range": str(ip_range), "created_at": time.time()}
    return Reply(201, {"vpc": render_vpc(app.store.add_vpc(make))})


def get_vpc(app, req):
    row = app.store.get_vpc(req.params["vpc_id"])
    if row is None:
        raise not_found()
    return Reply(200, {"vpc": render_vpc(row)})


def _update_vpc(app, req, name_required):
    body = req.json()

    def change(vpc, others):
        check_vpc_update(body, vpc)
        name = body.get("name")
        if name_required or name is not None:
            check_vpc_name(name)
            if name != vpc["name"]:
                check_unique_vpc_name(name, others)
        return name or vpc["name"], vpc_description(body, vpc["description"])
    row = app.store.change_vpc(req.params["vpc_id"], change)
    if row is None:
        raise not_found()
    return Reply(200, {"vpc": render_vpc(row)})


def replace_vpc(app, req):
    return _update_vpc(app, req, name_required=True)


def patch_vpc(app, req):
    return _update_vpc(app, req, name_required=False)


def delete_vpc(app, req):
    # vpcs_delete.yml: deleting a region's default VPC or a VPC that still
    # has members is a 403 Forbidden.
    vpc_id = req.params["vpc_id"]
    if vpc_id in DEFAULT_VPC_IDS:
        raise forbidden("Cannot delete the default VPC of a region.")
    deleted = app.store.delete_vpc(vpc_id)
    if deleted is None:
        raise not_found()
    if not deleted:
        raise forbidden("Cannot delete VPC with members.")
    return Reply(204)


def list_vpc_members(app, req):
    vpc_id = req.params["vpc_id"]
    if app.store.get_vpc(vpc_id) is None:
        raise not_found()
    page, per_page = paging(req)
    if req.query.get("resource_type") not in (None, "droplet"):
        return listing(req, "members", [], 0, page, per_page)  # droplets are the only members here
    rows, total = app.store.vpc_droplets(vpc_id, (page - 1) * per_page, per_page)
    return listing(req, "members", [render_vpc_member(row) for row in rows], total, page, per_page)
