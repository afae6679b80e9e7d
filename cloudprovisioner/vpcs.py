"""VPCs: a tenant's private networks, one or more per region.

Servers are created inside a VPC of their region, so tenants' servers never
share a private network. The cloud refuses two VPCs with overlapping ranges
in one account, and all tenants share the platform's account: a range is
checked against every live VPC on the platform (under a named lock, so two
requests cannot both take it). An overlap with the tenant's own VPC names
it; one with another tenant's only says the range is taken.

The account may hold VPCs that are not ours: another installation's, or made
by hand. The monitor lists the account's VPCs every run (`account_vpcs`), and
ranges are checked against those too.

A tenant's first server in a region gets a default VPC (`default-<region>`)
carved from CP_VPC_POOL. If the cloud refuses its block because someone took
it since the monitor last looked, the account is listed again and the next
free block is tried. So that no tenant can take the pool from the others, the
VPCs a tenant makes itself are capped (CP_TENANT_MAX_VPCS, limits.py), and one
inside the pool is no larger than a default VPC.
"""

from . import desired_state, limits
from .errors import Busy, CloudFailed, Conflict, Invalid, Unavailable
from .validation import Field, one_of, short_name, text, validate

COLUMNS = ("id, name, description, region, ip_range, is_default, cloud_id, status, status_reason, "
           "created_at, updated_at, deleted_at")
PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
RANGE_LOCK = "cloudprovisioner.vpc-ranges"
RANGE_LEASE = 30  # seconds: choosing a range and writing its row take milliseconds; a crash frees it after this
DEFAULT_ATTEMPTS = 4  # blocks a default VPC tries when the cloud says a range is taken
# Ranges in the cloud account that no live VPC row of ours holds: another installation's, hand-made,
# or one of ours whose row is deleted while the cloud still has it.
FOREIGN_RANGES = ("SELECT range_first, range_last, ip_range, region FROM account_vpcs WHERE range_first <= %s "
                  "AND range_last >= %s AND cloud_id NOT IN (SELECT cloud_id FROM vpcs WHERE cloud_id IS NOT NULL "
                  "AND live = 1)")


def ip_range(value):
    """An RFC 1918 network from /16 to /28, written as its network address."""
    import ipaddress
    if not isinstance(value, str):
        raise ValueError("must be a string like 10.20.0.0/20")
    try:
        network = ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 network like 10.20.0.0/20") from None
    if str(network) != value:
        raise ValueError(f"{value!r} has host bits set; did you mean {network}?")
    if not 16 <= network.prefixlen <= 28:
        raise ValueError("must be from /16 (65,536 addresses) to /28 (16)")
    if not any(network.subnet_of(ipaddress.IPv4Network(block)) for block in PRIVATE):
        raise ValueError("must be private (RFC 1918): inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
    return value


def tenant_range(config):
    """A range of the tenant's choosing (`ip_range`). Inside CP_VPC_POOL it may be no larger than one of the
    blocks default VPCs are carved in: with the cap on VPCs, one tenant then holds a few blocks of the pool
    at most, not the whole of it (sixteen /16s fill the default /12), and every tenant still gets its
    default VPCs."""
    def check(value):
        import ipaddress
        network, pool = ipaddress.IPv4Network(ip_range(value)), ipaddress.IPv4Network(config.vpc_pool)
        if network.overlaps(pool) and network.prefixlen < config.vpc_default_prefix:
            raise ValueError(f"inside {pool}, where default VPCs are made, a VPC may be at most a "
                             f"/{config.vpc_default_prefix}; choose a smaller range, or one outside it")
        return value
    return check


def _name(value):
    value = short_name()(value)
    if value.startswith("default-"):
        raise ValueError("names starting with 'default-' are kept for the default VPC of each region")
    return value


def create_schema(config):
    return {
        "name": Field(_name, required=True),
        "region": Field(one_of(config.get_list("CP_ALLOWED_REGIONS"), "region"), required=True),
        "ip_range": Field(tenant_range(config), required=True),
        "description": Field(text(255), default=""),
    }


def represent(row):
    return {key: row[key] for key in ("id", "name", "description", "region", "ip_range", "status",
                                      "status_reason", "created_at", "updated_at", "deleted_at")} | {
        "default": bool(row["is_default"])}


def load_row(ctx, vpc_id):
    return ctx.db.existing("vpc", f"SELECT {COLUMNS} FROM vpcs WHERE id = %s AND tenant_id = %s "
                           "AND status <> 'deleted'", (vpc_id, ctx.tenant_id))


def listing(ctx, args):
    """One page of the tenant's VPCs (args: limit, cursor, and region when given)."""
    where, params = ["tenant_id = %s", "status <> 'deleted'"], [ctx.tenant_id]
    if "region" in args:
        where.append("region = %s")
        params.append(args["region"])
    return ctx.db.page(f"SELECT {COLUMNS} FROM vpcs", where, params, args)


def create(ctx, fields):
    """POST /api/vpcs: check the range against the platform, then row, operation and cloud.
    Answers the VPC as shown, with its operation (`desired_state.accepted`)."""
    fields = validate(fields, create_schema(ctx.config))
    desired_state.check_name_free(ctx.db, FAMILY, ctx.tenant_id, fields["name"])
    limits.spend(ctx, "cloud")

    def insert(place):
        made = _insert(ctx, fields, is_default=False, racing_ok=True, place=place)
        if made is None:  # the name, or the place, taken meanwhile: the name is a Conflict
            desired_state.check_name_free(ctx.db, FAMILY, ctx.tenant_id, fields["name"])
        return made
    vpc_id = ctx.target = limits.within_cap(ctx, limits.VPCS, insert)
    return desired_state.accepted(ctx, FAMILY, vpc_id, "vpc.create")


def delete(ctx, vpc_id):
    """DELETE /api/vpcs/<id>: Conflict while any server (not yet deleted) is in it."""
    ctx.target = vpc_id
    row = load_row(ctx, vpc_id)
    members = ctx.db.one("SELECT COUNT(*) AS n FROM servers WHERE vpc_id = %s AND status <> 'deleted'",
                         (vpc_id,))["n"]
    if members:
        raise Conflict(f"{members} server(s) are still in this VPC; delete them first", "vpc-not-empty")
    limits.spend(ctx, "cloud")
    return desired_state.delete(ctx, FAMILY, "vpc", row)


def _insert(ctx, fields, is_default, racing_ok=False, place=None):
    """Under the range lock: refuse an overlap (or, without a range, take a free one from the pool),
    then write the row (holding `place` under the tenant's cap) and its operation."""
    import ipaddress

    from . import leases
    db = ctx.db
    with leases.held(db, RANGE_LOCK, RANGE_LEASE, 10, lambda: Busy("another VPC is being made; try again",
                                                                    retry_after=2)):
        fields = {**fields, "ip_range": fields["ip_range"] or _free_range(ctx)}
        network = ipaddress.IPv4Network(fields["ip_range"])
        first, last = int(network.network_address), int(network.broadcast_address)
        _refuse_overlap(ctx, first, last)
        values = {key: fields[key] for key in ("name", "description", "region", "ip_range")}
        values.update(range_first=first, range_last=last, is_default=int(is_default), cap_slot=place)
        return desired_state.insert(db, ctx.principal, FAMILY, "vpc.create", values, fields["name"], racing_ok)


def _refuse_overlap(ctx, first, last):
    """Conflict when the range [first, last] shares an address with a live VPC on the platform or one the
    account is known to hold (`FOREIGN_RANGES`). Two ranges overlap when each starts before the other ends:
    that one test covers a new range inside an existing one, one containing it and equal ones (CIDR blocks
    never partly overlap). Checking only "inside" lets a wider range through to the cloud, whose refusal
    names the other VPC."""
    clash = ctx.db.one("SELECT tenant_id, name, region, ip_range FROM vpcs WHERE live = 1 AND range_first <= %s "
                       "AND range_last >= %s ORDER BY tenant_id = %s DESC LIMIT 1", (last, first, ctx.tenant_id))
    if clash is None:
        if ctx.db.one(FOREIGN_RANGES + " LIMIT 1", (last, first)):
            detail = "overlaps a VPC already in the cloud account, made outside this platform; choose another"
            raise Conflict(detail, "vpc-range-taken", errors={"ip_range": detail})
        return
    if clash["tenant_id"] == ctx.tenant_id:
        detail = (f"overlaps your VPC {clash['name']} ({clash['ip_range']}, {clash['region']}); "
                  "a tenant's VPCs may not overlap")
        raise Conflict(detail, "vpc-range-overlap", errors={"ip_range": detail})
    detail = "overlaps a range already in use on this platform; choose another"
    raise Conflict(detail, "vpc-range-taken", errors={"ip_range": detail})


def ensure_default(ctx, region):
    """The tenant's default VPC in `region` (made on first use): its row, ready or not.
    A cloud that failed for now is a line in the operator's log (`ctx.log`)."""
    db, tenant_id = ctx.db, ctx.tenant_id
    for _ in range(DEFAULT_ATTEMPTS):
        row = db.one(f"SELECT {COLUMNS} FROM vpcs WHERE tenant_id = %s AND name = %s AND live = 1",
                     (tenant_id, f"default-{region}"))
        if row:
            return row
        fields = {"name": f"default-{region}", "description": f"default network in {region}", "region": region,
                  "ip_range": None}
        vpc_id = _insert(ctx, fields, is_default=True, racing_ok=True)
        if vpc_id:
            try:
                desired_state.apply_now(ctx, FAMILY, vpc_id, "vpc.create")
            except Invalid:  # the cloud refused the block ("cloud-refused")
                if not _taken_in_account(ctx, vpc_id):
                    raise
    raise Busy("the default VPC is being made; try again", retry_after=2)


def _taken_in_account(ctx, vpc_id):
    """After the cloud refused a default VPC: list the account's VPCs again, and if the refused block
    now shows as someone else's, retire the row (it never existed in the cloud) so the next block is
    tried. Answers whether it was that."""
    db = ctx.db
    try:
        listed = ctx.cloud.list_vpcs()
    except CloudFailed:
        return False  # the cloud's refusal stands, as the user's answer
    remember_account_ranges(db, listed)
    row = db.one("SELECT range_first, range_last FROM vpcs WHERE id = %s AND cloud_id IS NULL", (vpc_id,))
    if row is None or not db.one(FOREIGN_RANGES + " LIMIT 1", (row["range_last"], row["range_first"])):
        return False
    db.update("UPDATE vpcs SET status = 'deleted', live = NULL, deleted_at = UTC_TIMESTAMP(6), status_reason = "
              "'its range was taken in the cloud account by another installation or by hand; another was chosen' "
              "WHERE id = %s AND cloud_id IS NULL", (vpc_id,))
    return True


def remember_account_ranges(db, listed):
    """Keep `account_vpcs` as the cloud account's VPCs are now (the monitor's listing, or a request's)."""
    import ipaddress
    seen = []
    for item in listed:
        try:
            network = ipaddress.IPv4Network(item.get("ip_range") or "")
        except ValueError:
            continue
        seen.append(item["id"])
        db.update("INSERT INTO account_vpcs (cloud_id, name, region, ip_range, range_first, range_last, seen_at) "
                  "VALUES (%s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6)) ON DUPLICATE KEY UPDATE name = VALUES(name), "
                  "seen_at = VALUES(seen_at)",
                  (item["id"], (item.get("name") or "")[:255], item.get("region") or "", str(network),
                   int(network.network_address), int(network.broadcast_address)))
    marks = ", ".join(["%s"] * len(seen))
    db.update(f"DELETE FROM account_vpcs WHERE cloud_id NOT IN ({marks})" if seen else "DELETE FROM account_vpcs",
              seen)


def _free_range(ctx):
    """The first block of the pool that no live VPC on the platform, and no VPC the account is known to
    hold, overlaps (re-checked under the lock)."""
    import ipaddress
    config = ctx.config
    pool = ipaddress.IPv4Network(config.vpc_pool)
    bounds = (int(pool.network_address), int(pool.broadcast_address))
    taken = [(row["range_first"], row["range_last"]) for row in ctx.db.query(
        "SELECT range_first, range_last FROM vpcs WHERE live = 1 AND range_last >= %s AND range_first <= %s",
        bounds)]
    taken += [(row["range_first"], row["range_last"]) for row in ctx.db.query(FOREIGN_RANGES, bounds[::-1])]
    for block in pool.subnets(new_prefix=config.vpc_default_prefix):
        first, last = int(block.network_address), int(block.broadcast_address)
        if not any(a <= last and first <= b for a, b in taken):
            return str(block)
    raise Unavailable("no free range is left in the platform's VPC pool (CP_VPC_POOL); ask the operator to "
                      "widen it, or create a VPC with your own ip_range", "vpc-pool-exhausted")


def create_in_cloud(config, cloud, row):
    from . import ownership
    return cloud.create_vpc(name=ownership.cloud_name(config, "vpc", row["id"]), region=row["region"],
                            ip_range=row["ip_range"], description=row["name"])


def delete_in_cloud(config, cloud, cloud_id):
    return cloud.delete_vpc(cloud_id)


def needs_update(config, row, in_cloud):
    """Only its name changes after it is made: one made before installation ids is renamed to ours."""
    from . import ownership
    return in_cloud is not None and in_cloud.get("name") != ownership.cloud_name(config, "vpc", row["id"])


def update_in_cloud(config, cloud, row):
    from . import ownership
    cloud.rename_vpc(row["cloud_id"], ownership.cloud_name(config, "vpc", row["id"]))


FAMILY = desired_state.Family("vpcs", "vpc", COLUMNS, represent, create_in_cloud, update_in_cloud, delete_in_cloud,
                              needs_update)
