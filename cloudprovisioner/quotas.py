"""Per-tenant quotas: how many live servers, vCPUs, MB of memory, VPCs and firewalls a tenant may hold, and
what its servers may be projected to cost in the month.

Every quota is a maximum (0 allows none). The platform's defaults are settings (CP_QUOTA_*,
CP_TENANT_MAX_VPCS, CP_TENANT_MAX_FIREWALLS); a platform admin overrides them per tenant
(`tenant_quotas`, where NULL keeps the default). A server create counts against them inside the
transaction that writes its row, after bumping the tenant's `tenant_quotas.version`: on one MariaDB that
row lock makes parallel creates of one tenant count one after the other, and on Galera two creates that
bumped it cannot both commit (the loser runs again and counts anew), so no number of parallel creates
passes a quota. VPCs and firewalls keep their numbered places (`limits.within_cap`) under the same limits.
"""

from collections import namedtuple

from .config import ConfigError
from .errors import Conflict, Unavailable, invalid
from .sizes import MICRO
from .validation import Field, boolean, integer, validate

# A quota: its name in the API, its tenant_quotas column, the setting with the platform's default, and what
# it counts (in a refusal's words).
Quota = namedtuple("Quota", "name column setting counts")
QUOTAS = (
    Quota("servers", "max_servers", "CP_QUOTA_MAX_SERVERS", "live servers"),
    Quota("vcpus", "max_vcpus", "CP_QUOTA_MAX_VCPUS", "vCPUs"),
    Quota("memory_mb", "max_memory_mb", "CP_QUOTA_MAX_MEMORY_MB", "MB of memory"),
    Quota("vpcs", "max_vpcs", "CP_TENANT_MAX_VPCS", "VPCs"),
    Quota("firewalls", "max_firewalls", "CP_TENANT_MAX_FIREWALLS", "firewalls"),
    Quota("monthly_budget", "monthly_budget_micro", "CP_QUOTA_MONTHLY_BUDGET", "USD projected this month"),
)
BY_NAME = {quota.name: quota for quota in QUOTAS}
# What counts as holding a server: a droplet made or being made, or one being deleted that is not destroyed yet
# (an expired server's, which the monitor destroys; a user's DELETE destroys its droplet first). An error's
# droplet never came, or the monitor destroys it.
LIVE = "(s.status IN ('pending', 'ready') OR (s.status = 'deleting' AND s.destroyed_at IS NULL))"
BUDGET_LIMIT_USD = 10_000_000  # the largest budget an override may set: far past any real one, within BIGINT


def _default(config, quota):
    value = config.get(quota.setting)
    if not 0 <= value <= (BUDGET_LIMIT_USD if quota.name == "monthly_budget" else COUNT_LIMIT):
        raise ConfigError(f"{quota.setting} must be a whole number from 0 to "
                          f"{BUDGET_LIMIT_USD if quota.name == 'monthly_budget' else COUNT_LIMIT}, not {value}")
    return value * MICRO if quota.name == "monthly_budget" else value


def limits(db, config, tenant_id):
    """{quota name: the tenant's maximum} (the budget in micro-dollars), overrides over defaults."""
    row = db.one(f"SELECT {', '.join(quota.column for quota in QUOTAS)} FROM tenant_quotas WHERE tenant_id = %s",
                 (tenant_id,)) or {}
    return {quota.name: row[quota.column] if row.get(quota.column) is not None else _default(config, quota)
            for quota in QUOTAS}


def limit(ctx, name):
    """One of the caller's tenant's maximums."""
    return limits(ctx.db, ctx.config, ctx.tenant_id)[name]


def usage(db, tenant_id):
    """{quota name: what the tenant holds now} (the budget: its projected spend this month, micro-dollars).
    A live server whose size the cloud no longer lists counts as a server, with no vCPUs or memory."""
    from . import costs
    held = db.one("SELECT COUNT(*) AS servers, COALESCE(SUM(z.vcpus), 0) AS vcpus, "
                  "COALESCE(SUM(z.memory_mb), 0) AS memory_mb FROM servers s "
                  f"LEFT JOIN cloud_sizes z ON z.slug = s.size WHERE s.tenant_id = %s AND {LIVE}",
                  (tenant_id,))
    networks = db.one("SELECT (SELECT COUNT(*) FROM vpcs WHERE tenant_id = %s AND live = 1 AND cap_slot IS NOT NULL) "
                      "AS vpcs, (SELECT COUNT(*) FROM firewalls WHERE tenant_id = %s AND live = 1 "
                      "AND cap_slot IS NOT NULL) AS firewalls", (tenant_id, tenant_id))
    return {"servers": int(held["servers"]), "vcpus": int(held["vcpus"]), "memory_mb": int(held["memory_mb"]),
            "vpcs": networks["vpcs"], "firewalls": networks["firewalls"],
            "monthly_budget": costs.month_projection_micro(db, tenant_id)}


def server_needs(db, size_row):
    """What one server of this cached size (a sizes.known row) takes of each quota it counts against."""
    from . import costs
    return {"servers": 1, "vcpus": size_row["vcpus"], "memory_mb": size_row["memory_mb"],
            "monthly_budget": costs.new_server_projection_micro(db, size_row)}


def hold_for_server(ctx, size_row):
    """Inside the create's transaction, before its row is written: take the tenant's quota lock, count,
    and raise QuotaExceeded if one more server of this size would pass any quota. Answers the usage after."""
    ctx.db.update("INSERT INTO tenant_quotas (tenant_id, version) VALUES (%s, 1) "
                  "ON DUPLICATE KEY UPDATE version = version + 1", (ctx.tenant_id,))
    return check_server(ctx, size_row)


def check_server(ctx, size_row):
    """Raise QuotaExceeded if one more server of this size would pass a quota (without the lock: a dry run's,
    and a create's early word before it makes anything); else each quota as `figures` shows it, with the use
    the server would leave."""
    maximums, held = limits(ctx.db, ctx.config, ctx.tenant_id), usage(ctx.db, ctx.tenant_id)
    needs = server_needs(ctx.db, size_row)
    for name, amount in needs.items():
        if held[name] + amount > maximums[name]:
            raise exceeded(name, maximums[name], held[name], amount)
    return figures(maximums, {name: held[name] + needs.get(name, 0) for name in held})


def figures(maximums, held):
    """{quota name: {"limit", "used"}} as the API shows them."""
    return {quota.name: {"limit": shown(quota.name, maximums[quota.name]), "used": shown(quota.name, held[quota.name])}
            for quota in QUOTAS}


def exceeded(name, maximum, held, requested):
    """The 409 for a quota one more thing would pass, naming the quota, its limit, the use and the request."""
    figures = [shown(name, figure) for figure in (maximum, held, requested)]
    detail = (f"quota exceeded: {BY_NAME[name].counts}: this tenant may have {figures[0]}, holds {figures[1]}, "
              f"and this request needs {figures[2]} more")
    if name == "monthly_budget":
        detail = (f"quota exceeded: this tenant's monthly budget is {figures[0]} USD, its servers are projected to "
                  f"cost {figures[1]} USD this month, and this server {figures[2]} USD more by the month's end")
    return QuotaExceeded(detail, facts={"quota": {"name": name, "limit": figures[0], "used": figures[1],
                                                  "requested": figures[2]}})


class QuotaExceeded(Conflict):
    slug = "quota-exceeded"
    for_now = True  # a delete frees the quota: an Idempotency-Key does not keep this refusal


def shown(name, figure):
    """A figure as the API shows it: the budget in USD to the cent (as costs show it), the others as they are."""
    if name != "monthly_budget":
        return figure
    from . import costs
    return costs.dollars(figure)


def require_size(size_row, slug):
    """The cached size, or Unavailable while the monitor has not listed the cloud's sizes."""
    if size_row is None:
        raise Unavailable(f"the size {slug} is not known yet: the monitor lists the cloud's sizes and prices "
                          "within a minute or two", "sizes-not-ready", retry_after=60)
    return size_row


# --- what the API shows and sets ---

def report(db, config, tenant_id):
    """A tenant's quotas, each limit with its use now, and its expiry policy."""
    from . import expiry
    maximums, held = limits(db, config, tenant_id), usage(db, tenant_id)
    require, max_ttl = expiry.policy_of(db, config, tenant_id)
    return {"tenant_id": tenant_id, "quotas": figures(maximums, held),
            "expiry": {"require_ttl": require, "max_ttl_seconds": max_ttl}}


def _budget(value):
    """An amount in USD, to the cent, as micro-dollars."""
    if isinstance(value, str):
        try:
            value = float(value) if value.isascii() else None
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= BUDGET_LIMIT_USD:
        raise ValueError(f"must be an amount in USD from 0 to {BUDGET_LIMIT_USD}")
    cents = round(value * 100)
    if abs(value * 100 - cents) > 1e-6:
        raise ValueError("must be in whole cents")
    return cents * (MICRO // 100)


COUNT_LIMIT = 1_000_000_000  # the largest count a quota may be (memory in MB included), within an INT
TTL_LIMIT = 10 * 365 * 86400  # ten years: the longest expiry cap an override may set


def override_schema():
    counts = {quota.name: Field(integer(0, COUNT_LIMIT)) for quota in QUOTAS if quota.name != "monthly_budget"}
    return {**counts, "monthly_budget": Field(_budget), "max_ttl_seconds": Field(integer(0, TTL_LIMIT)),
            "require_ttl": Field(boolean)}


def tenant_report(ctx, tenant_id):
    """GET /api/tenants/<id>/quota, for a platform admin: any tenant's report (NotFound for no tenant)."""
    tenant_id = ctx.db.existing("tenant", "SELECT id FROM tenants WHERE id = %s", (tenant_id,))["id"]
    return report(ctx.db, ctx.config, tenant_id)


def set_overrides(ctx, tenant_id, fields):
    """PATCH /api/tenants/<id>/quota: the fields given replace the tenant's overrides (null: back to the
    platform's default). Lowering a limit below what the tenant holds takes nothing away; it refuses what
    would add to it."""
    schema = override_schema()
    # null is "back to the platform's default" here, where validate() would read it as "not given".
    reset = [name for name, value in fields.items() if value is None and name in schema]
    fields = {**validate({name: value for name, value in fields.items() if name not in reset}, schema),
              **dict.fromkeys(reset)}
    if not fields:
        raise invalid({"quota": "name at least one quota to change"})
    # The id as stored: the collation would also match it in another case or with trailing spaces.
    tenant_id = ctx.target = ctx.db.existing("tenant", "SELECT id FROM tenants WHERE id = %s", (tenant_id,))["id"]
    columns = {BY_NAME[name].column if name in BY_NAME else name: value for name, value in fields.items()}
    marks = ", ".join(f"{column} = %s" for column in columns)
    ctx.db.update(f"INSERT INTO tenant_quotas (tenant_id, {', '.join(columns)}, updated_at) VALUES "
                  f"(%s, {', '.join(['%s'] * len(columns))}, UTC_TIMESTAMP(6)) "
                  f"ON DUPLICATE KEY UPDATE {marks}, updated_at = UTC_TIMESTAMP(6)",
                  (tenant_id, *columns.values(), *columns.values()))
    return report(ctx.db, ctx.config, tenant_id)
