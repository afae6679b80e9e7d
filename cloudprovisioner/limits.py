"""What one tenant may take of what all tenants share: the cloud account's calls, and room for VPCs and
firewalls.

All tenants act through one cloud account, whose API takes a fixed number of calls an hour
(DigitalOcean: 5,000), and whose VPCs share one private address space (CP_VPC_POOL for the defaults).
Without limits one tenant's script empties either for everyone.

Calls. Every domain function that calls the cloud for a tenant starts with `spend(ctx, "cloud")`: one
token from the tenant's bucket, refilled continuously at CP_TENANT_CLOUD_RATE tokens a minute up to
CP_TENANT_CLOUD_BURST; an empty bucket is Throttled, with the seconds until the next token. The bucket
is one row holding the time it will be full again, `full_at`: with `interval` = a minute / rate, it
holds burst - (full_at - now) / interval tokens (all of them once full_at has passed). Taking one is
one conditional UPDATE that moves full_at on by an interval if that leaves it at most `burst` intervals
ahead: the row's lock orders requests in parallel, and on a cluster a second writer of the row loses
at commit, so the last token is never taken twice. Time is the database's, the same for every web
server.

Room. The VPCs and firewalls a tenant makes itself (not the defaults the platform makes for it) each
hold a numbered place from 1 to the cap (`within_cap`); a UNIQUE key on (tenant, place, live) is what
stops two creates at once from both taking the last place.
"""

from collections import namedtuple

from .errors import Busy, Conflict, Throttled

MINUTE = 60_000_000  # microseconds
TAKE = ("UPDATE tenant_buckets SET full_at = GREATEST(full_at, UTC_TIMESTAMP(6)) + INTERVAL %s MICROSECOND "
        "WHERE tenant_id = %s AND kind = %s "
        "AND GREATEST(full_at, UTC_TIMESTAMP(6)) + INTERVAL %s MICROSECOND "
        "<= UTC_TIMESTAMP(6) + INTERVAL %s MICROSECOND")


def spend(ctx, kind):
    """Take one token of the tenant's `kind` bucket (CP_TENANT_<KIND>_RATE a minute, CP_TENANT_<KIND>_BURST
    at most), or Throttled with the seconds until there is one. A rate of 0 is no limit."""
    config, db = ctx.config, ctx.db
    rate = config.get(f"CP_TENANT_{kind.upper()}_RATE")
    if rate <= 0:
        return
    burst = max(1, config.get(f"CP_TENANT_{kind.upper()}_BURST"))
    interval = MINUTE // rate
    bucket = (ctx.tenant_id, kind)
    # A first call makes the row (full, less this token); a row made meanwhile by a parallel first call
    # is taken from like any other, once.
    if db.update(TAKE, (interval, *bucket, interval, burst * interval)):
        return
    if db.insert_new("INSERT INTO tenant_buckets (tenant_id, kind, full_at) "
                     "VALUES (%s, %s, UTC_TIMESTAMP(6) + INTERVAL %s MICROSECOND)", (*bucket, interval)):
        return
    if db.update(TAKE, (interval, *bucket, interval, burst * interval)):
        return
    ahead = db.one("SELECT TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), full_at) AS ahead FROM tenant_buckets "
                   "WHERE tenant_id = %s AND kind = %s", bucket)["ahead"]
    wait = seconds_until_token(ahead, interval, burst)
    raise Throttled(f"this tenant has made the {burst} requests that call the cloud it may make at once, and gets "
                    f"{rate} more a minute (all tenants share one cloud account); try again in {wait} s",
                    "tenant-rate-limited", retry_after=wait)


def seconds_until_token(ahead, interval, burst):
    """Whole seconds (at least 1) until a bucket that is full `ahead` microseconds from now holds a token
    again: until it is no more than burst - 1 intervals from full."""
    wait = ahead - (burst - 1) * interval
    return max(1, -(-wait // 1_000_000))


# What a cap counts: the table, what one row is called (in the refusal's slug), what several are called
# (in its words), and its quota (quotas.QUOTAS: a setting a platform admin may override per tenant).
Cap = namedtuple("Cap", "table what plural quota")
VPCS = Cap("vpcs", "vpc", "VPCs", "vpcs")
FIREWALLS = Cap("firewalls", "firewall", "firewalls", "firewalls")


def within_cap(ctx, cap, insert):
    """The id `insert(place)` answers for the lowest free place under the tenant's cap, or Conflict at the
    cap. `insert` answers None when a UNIQUE key refused its row (and raises if that was the name): the
    place was taken meanwhile, and the next free one is tried."""
    from . import quotas
    limit = quotas.limit(ctx, cap.quota)
    for _ in range(limit + 2):  # each place lost to a parallel create is one fewer to try
        taken = {row["cap_slot"] for row in ctx.db.query(
            f"SELECT cap_slot FROM {cap.table} WHERE tenant_id = %s AND live = 1 AND cap_slot IS NOT NULL",
            (ctx.tenant_id,))}
        free = [place for place in range(1, limit + 1) if place not in taken]
        if len(taken) >= limit or not free:
            raise Conflict(f"this tenant has {len(taken)} {cap.plural}, the most one tenant may make (the "
                           f"defaults the platform makes aside); delete one it no longer needs",
                           f"{cap.what}-limit-reached",
                           facts={"quota": {"name": cap.quota, "limit": limit, "used": len(taken), "requested": 1}})
        row_id = insert(free[0])
        if row_id is not None:
            return row_id
    raise Busy(f"{cap.plural} are being made in parallel; try again", retry_after=1)
