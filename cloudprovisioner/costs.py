"""What servers cost: DigitalOcean's billing rule, and a tenant's spend by calendar month (handlers: web/costs.py).

The rule. A droplet is billed per second from its creation to its destruction, powered off or not; it is charged
at least 60 seconds or $0.01, whichever is higher (once per droplet); and never more than its size's monthly
price in a calendar month, which that price buys 672 hours of (so a second costs monthly / 672 / 3600). A droplet
that spans months is billed per month, each capped.

Money is whole micro-dollars (ints, as `sizes` caches prices), rounded half up to the cent only when shown; times
are whole seconds since 1970 in UTC, read from the database (`TIMESTAMPDIFF(SECOND, EPOCH, ...)`), and "now" is
the database's UTC_TIMESTAMP, so that every host agrees. The calendar is done in integers: no `datetime` or
`decimal` on a request's path.

A server's billed lifetime (the SQL of BILLED_* below): from its row's `created_at` (written just before the
cloud is asked) to its `destroyed_at` (when the platform asked the cloud to destroy it: a user's DELETE at once,
not when the monitor confirms it a run later; or when the monitor found it gone or gave it up), or now while it
has none. It counts once its droplet existed: it has a droplet id (stored by
its create, or adopted by the monitor), or it is pending (a create in flight, counted so that a budget cannot be
raced past). A create that failed with no droplet costs nothing.
"""

from .sizes import MICRO

CENT = MICRO // 100
CAP_SECONDS = 672 * 3600  # a size's monthly price buys 672 hours in a calendar month
MINIMUM_SECONDS = 60
MINIMUM_MICRO = CENT
DAY = 86_400
EPOCH = "'1970-01-01 00:00:00'"
NOW = f"TIMESTAMPDIFF(SECOND, {EPOCH}, UTC_TIMESTAMP())"

# SQL over the servers table: whether a row is billed at all, from and until when, and whether it still runs.
BILLED = "(instance_id IS NOT NULL OR status = 'pending')"
BILLED_FROM = f"TIMESTAMPDIFF(SECOND, {EPOCH}, created_at)"
BILLED_UNTIL = f"TIMESTAMPDIFF(SECOND, {EPOCH}, COALESCE(destroyed_at, UTC_TIMESTAMP()))"
RUNNING = "(destroyed_at IS NULL AND status IN ('pending', 'ready'))"


# --- the calendar, in whole days and seconds since 1970-01-01 (proleptic Gregorian, UTC)

def days_from_civil(year, month, day):
    """Days since 1970-01-01 of a date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def civil_month(seconds):
    """(year, month) in which an instant (seconds since 1970, UTC) falls."""
    days = seconds // DAY + 719_468
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    month = shifted_month + (3 if shifted_month < 10 else -9)
    return year_of_era + era * 400 + (month <= 2), month


def next_month(year, month):
    return (year + 1, 1) if month == 12 else (year, month + 1)


def month_start(year, month):
    """The first second of a calendar month."""
    return days_from_civil(year, month, 1) * DAY


# --- the billing rule

def per_second(seconds, monthly_micro):
    """`seconds` at the size's rate (monthly / 672 h), rounded half up to the micro-dollar, uncapped."""
    return (2 * seconds * monthly_micro + CAP_SECONDS) // (2 * CAP_SECONDS)


def month_charge(seconds, monthly_micro):
    """What `seconds` of one calendar month cost: never more than the monthly price."""
    return min(per_second(seconds, monthly_micro), monthly_micro)


def minimum_charge(monthly_micro):
    """The least a droplet costs: 60 seconds or $0.01, whichever is higher (within the monthly cap)."""
    return min(max(per_second(MINIMUM_SECONDS, monthly_micro), MINIMUM_MICRO), monthly_micro)


def charges(start, end, monthly_micro):
    """{(year, month): micro-dollars} a droplet that lived from `start` to `end` (seconds since 1970) is billed,
    per calendar month it touched, each capped; the minimum charge tops up its first month."""
    end = max(end, start)
    billed = {}
    year, month = civil_month(start)
    while True:
        following = next_month(year, month)
        month_end = month_start(*following)
        seconds = min(end, month_end) - max(start, month_start(year, month))
        billed[(year, month)] = month_charge(seconds, monthly_micro)
        if end <= month_end:
            break
        year, month = following
    shortfall = minimum_charge(monthly_micro) - sum(billed.values())
    if shortfall > 0:
        billed[civil_month(start)] += shortfall
    return billed


def total(start, end, monthly_micro):
    """All a droplet that lived from `start` to `end` is billed, every month of it."""
    return sum(charges(start, end, monthly_micro).values())


def in_month(start, end, monthly_micro, year, month):
    """What a droplet that lived from `start` to `end` is billed for one calendar month (0 outside its life)."""
    return charges(start, end, monthly_micro).get((year, month), 0)


def dollars(micro):
    """Micro-dollars as USD rounded half up to the cent (a JSON number: 12.34)."""
    if micro is None:
        return None
    return (micro + CENT // 2) // CENT / 100


def hourly_dollars(micro):
    """An hourly price as the cloud gives it, to 5 decimals (0.00893)."""
    return None if micro is None else round(micro / MICRO, 5)


# --- a month's servers, and what the quota code asks (inside its create transaction)

def _now(db):
    return db.one(f"SELECT {NOW} AS now")["now"]


def _month_rows(db, where, params, year_month=None):
    """The billed servers (by `where`) that lived in a calendar month (the current one unless `year_month`),
    with their lifetimes and "now" (the database's, one instant for all), and the prices of their sizes."""
    from . import sizes
    if year_month is None:
        bounds = "DATE_FORMAT(UTC_TIMESTAMP(), '%%Y-%%m-01')"
        month_from, month_until = bounds, f"({bounds} + INTERVAL 1 MONTH)"
        args = list(params)
    else:
        year, month = year_month
        month_from, month_until = "%s", "%s"
        args = [*params, "{:04d}-{:02d}-01".format(*next_month(year, month)), f"{year:04d}-{month:02d}-01"]
    rows = db.query(
        f"SELECT id, tenant_id, name, owner, workspace_id, size, status, {BILLED_FROM} AS billed_from, "
        f"{BILLED_UNTIL} AS billed_until, {RUNNING} AS running, {NOW} AS now FROM servers "
        f"WHERE {where} AND {BILLED} AND created_at < {month_until} "
        f"AND (destroyed_at IS NULL OR destroyed_at > {month_from})", args)  # one destroyed at 00:00:00 is last month's
    return rows, sizes.every(db, sorted({row["size"] for row in rows}))


def server_month(row, size, year, month):
    """(to date, projected) micro-dollars of one billed server (a `_month_rows` row) for a calendar month:
    what it cost until now (or its end), and what it will have cost at the month's end if it runs till then."""
    monthly = size["price_monthly_micro"]
    start, until = row["billed_from"], row["billed_until"]
    to_date = in_month(start, until, monthly, year, month)
    if not row["running"]:
        return to_date, to_date
    following = month_start(*next_month(year, month))
    return to_date, in_month(start, max(until, following), monthly, year, month)


def month_projection_micro(db, tenant_id):
    """The tenant's projected spend for the current calendar month (UTC), in micro-dollars: what it cost so far
    plus what its running servers will cost until the month's end, each capped. Servers of a size not priced
    yet count nothing. One query for the servers, one for their prices."""
    rows, priced = _month_rows(db, "tenant_id = %s", (tenant_id,))
    if not rows:
        return 0
    year, month = civil_month(rows[0]["now"])
    return sum(server_month(row, priced[row["size"]], year, month)[1] for row in rows if row["size"] in priced)


def new_server_projection_micro(db, size_row):
    """What a server of a cached size (a `sizes.known` row) created now would cost from now until the end of
    this calendar month (the minimum charge and the monthly cap applied)."""
    now = _now(db)
    return in_month(now, month_start(*next_month(*civil_month(now))), size_row["price_monthly_micro"],
                    *civil_month(now))


def estimated_monthly(db, size_slug):
    """A size's monthly price in USD (what a create answers as `estimated_monthly`), None while not cached."""
    from . import sizes
    size = sizes.known(db, size_slug)
    return None if size is None else dollars(size["price_monthly_micro"])


# --- what GET /api/costs and GET /api/admin/costs answer

GROUPS = ("workspace", "owner", "server")
MONTH_PATTERN = r"20[0-9]{2}-(0[1-9]|1[0-2])"  # this century: no droplet is older, nor a DATETIME odder


def report_schema(grouped=True):
    """GET /api/costs's query (`grouped`) or GET /api/admin/costs's (by tenant, always)."""
    from .validation import Field, one_of, text
    schema = {"month": Field(text(7, MONTH_PATTERN, "must be a month as YYYY-MM (2000 to 2099), e.g. 2026-11"))}
    if grouped:
        schema["group_by"] = Field(one_of(GROUPS, "grouping"))
    return schema


def _month_asked(db, asked):
    """(year, month) asked for (YYYY-MM, already checked for its form), the current one (UTC, the database's)
    when none; a month still to come is refused. Answers it with "now" (seconds since 1970)."""
    from .errors import invalid
    now = _now(db)
    current = civil_month(now)
    if asked is None:
        return current, now
    wanted = (int(asked[:4]), int(asked[5:]))
    if wanted > current:
        raise invalid({"month": f"{asked} has not begun; ask for {current[0]:04d}-{current[1]:02d} or earlier"})
    return wanted, now


def _sums(rows, priced, year, month, key_of):
    """{key: [to date, projected, servers]} in micro-dollars, and how many servers had no cached price."""
    sums, unpriced = {}, 0
    for row in rows:
        size = priced.get(row["size"])
        if size is None:
            unpriced += 1
            to_date = projected = 0
        else:
            to_date, projected = server_month(row, size, year, month)
        entry = sums.setdefault(key_of(row), [0, 0, 0])
        entry[0] += to_date
        entry[1] += projected
        entry[2] += 1
    return sums, unpriced


def _figures(entry):
    return {"to_date": dollars(entry[0]), "projected": dollars(entry[1]), "servers": entry[2]}


def _iso(seconds):
    year, month = civil_month(seconds)
    day = seconds // DAY - days_from_civil(year, month, 1) + 1
    rest = seconds % DAY
    return f"{year:04d}-{month:02d}-{day:02d}T{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}Z"


def _frame(year, month, now, sums, unpriced):
    """What both reports open with: the month, as of when, the totals."""
    whole = [sum(entry[index] for entry in sums.values()) for index in range(3)]
    return {"month": f"{year:04d}-{month:02d}", "currency": "USD", "as_of": _iso(now),
            "month_complete": civil_month(now) != (year, month), **_figures(whole), "unpriced_servers": unpriced}


def report(ctx, args):
    """The caller's tenant's costs for a calendar month (args: report_schema's): to date and projected to the
    month's end, in USD, in total and, if asked, by workspace, owner or server."""
    db = ctx.db
    (year, month), now = _month_asked(db, args.get("month"))
    rows, priced = _month_rows(db, "tenant_id = %s", (ctx.tenant_id,), (year, month))
    group_by = args.get("group_by")
    labels = GROUP_LABELS[group_by](db, ctx.tenant_id, rows) if group_by else {}
    sums, unpriced = _sums(rows, priced, year, month,
                           lambda row: labels[row["id"]][group_by] if group_by else None)
    answer = _frame(year, month, now, sums, unpriced)
    if group_by:
        by_key = {label[group_by]: label for label in labels.values()}
        groups = [{**by_key[key], **_figures(entry)} for key, entry in sums.items()]
        answer["group_by"] = group_by
        answer["groups"] = sorted(groups, key=lambda group: (-group["projected"], group[group_by]))
    return answer


def _workspace_labels(db, tenant_id, rows):
    """{server id: its group}, the same for every server of one workspace (by its name)."""
    names = {row["id"]: row["name"] for row in db.query("SELECT id, name FROM workspaces WHERE tenant_id = %s",
                                                        (tenant_id,))}
    # A server from before workspaces has none: it belongs to the default one.
    return {row["id"]: {"workspace": names.get(row["workspace_id"], "default")} for row in rows}


def _owner_labels(db, tenant_id, rows):
    emails = {row["id"]: row["email"] for row in db.query("SELECT id, email FROM users WHERE tenant_id = %s",
                                                          (tenant_id,))}
    return {row["id"]: {"owner": row["owner"], "email": emails.get(row["owner"])} for row in rows}


def _server_labels(db, tenant_id, rows):
    return {row["id"]: {"server": row["id"], "name": row["name"], "size": row["size"], "status": row["status"]}
            for row in rows}


GROUP_LABELS = {"workspace": _workspace_labels, "owner": _owner_labels, "server": _server_labels}


def platform_report(ctx, args):
    """Every tenant's costs for a calendar month (platform admins), one line per tenant with servers in it."""
    db = ctx.db
    (year, month), now = _month_asked(db, args.get("month"))
    rows, priced = _month_rows(db, "tenant_id IS NOT NULL", (), (year, month))
    sums, unpriced = _sums(rows, priced, year, month, lambda row: row["tenant_id"])
    names = {row["id"]: row["name"] for row in db.query("SELECT id, name FROM tenants")} if sums else {}
    answer = _frame(year, month, now, sums, unpriced)
    tenants = [{"tenant": tenant_id, "name": names.get(tenant_id), **_figures(entry)}
               for tenant_id, entry in sums.items()]
    answer["tenants"] = sorted(tenants, key=lambda line: (-line["projected"], line["tenant"]))
    return answer


def tenant_spend_micro(db):
    """{tenant id: micro-dollars spent this calendar month to date} for every tenant with servers in it: the
    metrics' figure (one query for the servers, one for the prices)."""
    rows, priced = _month_rows(db, "tenant_id IS NOT NULL", ())
    if not rows:
        return {}
    year, month = civil_month(rows[0]["now"])
    sums, _ = _sums(rows, priced, year, month, lambda row: row["tenant_id"])
    return {tenant_id: entry[0] for tenant_id, entry in sums.items()}
