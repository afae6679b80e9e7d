"""Expiry: a server may carry a time after which the platform deletes it (`expires_at`).

A create gives it as an instant (`expires_at`, RFC 3339) or a duration from now (`ttl`, "90m", "8h",
"3d"); PATCH /api/servers/<id> moves or removes it. The tenant's policy may require one and caps how far
ahead it may be: `tenant_quotas.require_ttl` and `max_ttl_seconds` (written by a platform admin, quotas.py),
where NULL or no row is the platform's default (CP_SERVER_REQUIRE_TTL, CP_SERVER_MAX_TTL; 0 = no cap).
Times are the database's clock (UTC_TIMESTAMP), which the monitor compares them with too.

The monitor calls `sweep` in every run. It mails a server's owner once, CP_EXPIRY_WARNING seconds before
the expiry, and at the expiry marks the server deleting under an operation of kind `server.expire`; the
same run destroys its droplet as it destroys any deleting server's, and the next run confirms it. Both are
states, not events: a server past its expiry is deleted by whichever run comes next, however long the
monitor was away. Each is claimed by a conditional UPDATE in one transaction with what it writes (the
outbox row; the operation and the audit row), so two monitors, or a run that died half-way, never mail or
delete twice; no named lock is needed.
"""

import json
import re

from .config import ConfigError
from .errors import Conflict, invalid
from .validation import Field, validate

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION = re.compile(r"([1-9][0-9]{0,9})([smhd])")
DURATION_HINT = 'must be a duration: a whole number and one unit, s, m, h or d ("90m", "8h", "3d")'
LONGEST = 3650 * 86400  # ten years, as quotas.TTL_LIMIT: no policy allows more, and it fits an INT
INSTANT = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.[0-9]{1,9})?"
                     r"([Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])")
INSTANT_HINT = "must be an RFC 3339 time like 2026-12-01T18:00:00Z"
MYSQL_TIME = "%%Y-%%m-%%d %%H:%%i:%%s"  # DATE_FORMAT's, %-escaped for a statement with parameters
# The statuses a server can expire from: what a DELETE would act on (a deleting or deleted one has gone).
EXPIRABLE = "('pending', 'ready', 'error')"
BATCH = 100  # servers warned or expired per run, at most; the next run goes on


def duration(value):
    """Seconds from a duration string; one number and one unit, so that nothing reads it two ways."""
    match = DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(DURATION_HINT)
    seconds = int(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if seconds > LONGEST:
        raise ValueError(f"must be at most {LONGEST // 86400}d")
    return seconds


def instant(value):
    """The UTC time of an RFC 3339 string, as MariaDB takes it ('2026-12-01 18:00:00'). Any offset is one
    instant; fractions of a second are dropped (an expiry is kept to the second)."""
    match = INSTANT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(INSTANT_HINT)
    from datetime import UTC, datetime  # a write's, never a read's
    day, clock, zone = match.groups()
    try:
        when = datetime.fromisoformat(f"{day}T{clock}{'+00:00' if zone in 'Zz' else zone}").astimezone(UTC)
    except ValueError:
        raise ValueError(f"{INSTANT_HINT}: {value!r} is no such time") from None
    if not 2000 <= when.year <= 9000:
        raise ValueError(f"{INSTANT_HINT}, between the years 2000 and 9000")
    return when.strftime("%Y-%m-%d %H:%M:%S")


def fields():
    """The create's and the PATCH's expiry fields (give one of them)."""
    return {"expires_at": Field(instant), "ttl": Field(duration)}


def policy(ctx):
    """(require, max_ttl_seconds) for the caller's tenant (see policy_of)."""
    return policy_of(ctx.db, ctx.config, ctx.tenant_id)


def policy_of(db, config, tenant_id):
    """(require, max_ttl_seconds) for a tenant: its override where set, else the platform's default;
    max_ttl_seconds 0 is no cap."""
    row = db.one("SELECT max_ttl_seconds, require_ttl FROM tenant_quotas WHERE tenant_id = %s", (tenant_id,)) or {}
    require = row.get("require_ttl")
    if require is None:
        require = _setting_flag(config, "CP_SERVER_REQUIRE_TTL")
    cap = row.get("max_ttl_seconds")
    if cap is None:
        cap = config.get("CP_SERVER_MAX_TTL")
        if cap < 0:
            raise ConfigError(f"CP_SERVER_MAX_TTL must be 0 (no cap) or more seconds, not {cap}")
    return bool(require), cap


def _setting_flag(config, key):
    """A yes/no setting; anything else is a mistake to say, not a silent no."""
    value = config.get(key).strip().lower()
    if value not in ("yes", "no"):
        raise ConfigError(f"{key} must be yes or no, not {value!r}")
    return value == "yes"


def span(seconds):
    """Seconds in the ttl grammar's largest whole unit: 604800 -> "7d", 5400 -> "90m"."""
    for unit in ("d", "h", "m"):
        if seconds % UNIT_SECONDS[unit] == 0:
            return f"{seconds // UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


def on_create(ctx, checked):
    """The expiry a create asked for (`checked`: its validated fields, where null is left out), as the
    database takes it, or None; Invalid naming the field and the limit when the policy refuses it."""
    return _resolve(ctx, checked, [name for name in ("expires_at", "ttl") if name in checked])


def _resolve(ctx, checked, given):
    """`given`: the expiry fields the body named (a PATCH's null among them, meaning "no expiry")."""
    require, cap = policy(ctx)
    if len(given) > 1:
        raise invalid({"expires_at": "give expires_at or ttl, not both", "ttl": "give expires_at or ttl, not both"})
    within = f"at most {span(cap)} ({cap} s) from now" if cap else "in the future"
    field = given[0] if given else "expires_at"
    if field not in checked:
        if require:
            raise invalid({field: f"required: this tenant's servers must expire; give expires_at or ttl, {within}"})
        return None
    if field == "ttl":
        ahead = checked["ttl"]
        expires_at = ctx.db.one(f"SELECT DATE_FORMAT(UTC_TIMESTAMP() + INTERVAL %s SECOND, '{MYSQL_TIME}') AS at",
                                (ahead,))["at"]
    else:
        expires_at = checked["expires_at"]
        ahead = ctx.db.one("SELECT TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), %s) AS ahead", (expires_at,))["ahead"]
    if ahead <= 0:
        raise invalid({field: f"is not in the future ({shown(expires_at)}); an expiry must be {within}"})
    if cap and ahead > cap:
        raise invalid({field: f"must be {within} (the tenant's longest expiry); this one is {span(ahead)} away"})
    if ahead > LONGEST:  # what a ttl may say at most, an expires_at too
        raise invalid({field: f"must be at most {LONGEST // 86400}d from now; this one is {span(ahead)} away"})
    return expires_at


def shown(mysql_time):
    return mysql_time.replace(" ", "T") + "Z"


def change(ctx, row, body):
    """PATCH /api/servers/<id>: the server's expiry moved ({"expires_at": ...} or {"ttl": ...}, counted from
    now) or removed (null), within the tenant's policy. `row` is the server as servers.load read it; answers
    the row as it is now. Moving it past the warning window again re-arms the owner's warning."""
    ctx.target = row["id"]
    given = [name for name in ("expires_at", "ttl") if name in body]  # here null is a value: no expiry
    checked = validate(body, fields())
    if not given:
        raise invalid({"expires_at": "give expires_at or ttl (null removes the expiry)"})
    _still_there(row)
    expires_at = _resolve(ctx, checked, given)
    window = ctx.config.get("CP_EXPIRY_WARNING")
    changed = ctx.db.update(
        "UPDATE servers SET expires_at = %s, updated_at = UTC_TIMESTAMP(6), expiry_warned_at = "
        "IF(%s IS NULL OR %s > UTC_TIMESTAMP() + INTERVAL %s SECOND, NULL, expiry_warned_at) "
        f"WHERE id = %s AND status IN {EXPIRABLE}", (expires_at, expires_at, expires_at, window, row["id"]))
    from .server_rows import COLUMNS
    now = ctx.db.one(f"SELECT {COLUMNS} FROM servers WHERE id = %s", (row["id"],))
    if not changed:
        _still_there(now)  # deleted meanwhile (a DELETE, or the monitor at the old expiry); else it was unchanged
    return now


def _still_there(row):
    if row["status"] in ("deleting", "deleted"):
        raise Conflict(f"the server is {row['status']}; its expiry cannot change", "server-deleting")


# -- the monitor's step ------------------------------------------------------------------------------------------


def sweep(db, config, log):
    """Warn the owners of servers about to expire, and start deleting the expired ones; answers the run's
    counts. Database work only: the droplets go as every deleting server's do, in the same run."""
    notify = config.get("CP_EXPIRY_WARNING") != 0
    return {"expiry warnings": _warn_due(db, config), "expired": _expire_due(db, log, notify)}


def _warn_due(db, config):
    window = config.get("CP_EXPIRY_WARNING")
    if window < 0:
        raise ConfigError(f"CP_EXPIRY_WARNING must be 0 (no warning) or more seconds, not {window}")
    if window == 0:
        return 0
    due = db.query(f"SELECT id FROM servers WHERE expires_at > UTC_TIMESTAMP() "
                   f"AND expires_at <= UTC_TIMESTAMP() + INTERVAL %s SECOND AND expiry_warned_at IS NULL "
                   f"AND status IN {EXPIRABLE} ORDER BY expires_at LIMIT {BATCH}", (window,))
    mailed = 0
    for row in due:
        for attempt in db.transaction():
            with attempt:
                sent = warn(db, row["id"], window)
        mailed += sent
    return mailed


def warn(db, server_id, window):
    """Inside a transaction: claim the server's warning, then queue the owner's mail with the claim, so it
    is sent once or not at all. Answers whether a mail was queued (the claim stands without one when the
    owner is gone: nobody is left to tell)."""
    claimed = db.update(
        "UPDATE servers SET expiry_warned_at = UTC_TIMESTAMP(6) WHERE id = %s AND expiry_warned_at IS NULL "
        f"AND expires_at > UTC_TIMESTAMP() AND expires_at <= UTC_TIMESTAMP() + INTERVAL %s SECOND "
        f"AND status IN {EXPIRABLE}", (server_id, window))
    if not claimed:
        return False
    return _mail_owner(db, server_id, "Server {name} expires at {expires_at}", _warning_text)


def _mail_owner(db, server_id, subject, text):
    """Queue a mail about a server to its owner (in the caller's transaction); False when the owner is gone."""
    from . import mailer
    server = db.one("SELECT s.id, s.name, s.expires_at, u.email FROM servers s LEFT JOIN users u ON u.id = s.owner "
                    "AND u.tenant_id = s.tenant_id AND u.deleted_at IS NULL WHERE s.id = %s", (server_id,))
    if not mailer.is_one_address(server["email"]):
        return False
    mailer.enqueue(db, server["email"], subject.format(**server), text(server))
    return True


def _warning_text(server):
    return (f"Your server {server['name']} ({server['id']}) expires at {server['expires_at']} (UTC).\n\n"
            "CloudProvisioner will then delete it, and its disk with everything on it.\n\n"
            "To keep it longer, an operator of your tenant can move its expiry within your tenant's policy:\n"
            f"PATCH /api/servers/{server['id']} with {{\"ttl\": \"3d\"}} or {{\"expires_at\": \"...\"}}.\n")


def _expired_text(server):
    return (f"Your server {server['name']} ({server['id']}) expired at {server['expires_at']} (UTC), before a\n"
            "warning could reach you. CloudProvisioner is deleting it now, and its disk with everything on it.\n")


def _expire_due(db, log, notify):
    due = db.query(f"SELECT id, tenant_id, status, expires_at, expiry_warned_at FROM servers "
                   f"WHERE expires_at <= UTC_TIMESTAMP() "
                   f"AND status IN {EXPIRABLE} ORDER BY expires_at LIMIT {BATCH}")
    expired = 0
    for row in due:
        for attempt in db.transaction():
            with attempt:
                done = expire(db, row, notify)
        if done:
            log(f"monitor: server {row['id']} expired at {row['expires_at']}: deleting it")
            expired += 1
    return expired


class _Platform:
    """Who starts an expiry's operation: no user, no token; the server's tenant."""

    user_id = token_id = None

    def __init__(self, tenant_id):
        self.tenant_id = tenant_id


EXPIRE_ACTION = "monitor.expire_server"  # the audit log's action


def expire(db, row, notify=True):
    """Inside a transaction: mark one server past its expiry deleting (guarded by the status it was read in,
    and by the expiry still being past: a PATCH that moved it meanwhile wins), with its `server.expire`
    operation and its audit row. Answers whether this call did it."""
    from . import audit, operations
    reason = f"expired at {row['expires_at']}"
    claimed = db.update("UPDATE servers SET status = 'deleting', status_reason = %s, updated_at = UTC_TIMESTAMP(6) "
                        "WHERE id = %s AND status = %s AND expires_at <= UTC_TIMESTAMP()",
                        (reason, row["id"], row["status"]))
    if not claimed:
        return False
    operations.finish_open(db, row["id"], "server.create", "cancelled", "the server expired")
    operation_id = operations.start(db, _Platform(row["tenant_id"]), "server.expire", row["id"], status="running")
    db.update("UPDATE operations SET result = %s WHERE id = %s", (json.dumps({"reason": reason}), operation_id))
    if notify and row["expiry_warned_at"] is None:
        # It expired before any run could warn (a short ttl, a monitor that was down): its owner is told now.
        _mail_owner(db, row["id"], "Server {name} expired at {expires_at}", _expired_text)
    # No request made it: the operation stands in for the request id, and holds the reason.
    audit.record(db, tenant_id=row["tenant_id"], user_id=None, token_id=None, action=EXPIRE_ACTION,
                 target=row["id"], result="ok", status=202, client_addr="", request_id=operation_id)
    return True


def deleted(db, server_id):
    """The monitor saw an expired server's droplet gone (in the transaction that marks it deleted): its
    expiry has succeeded. Its result (the reason) is kept."""
    db.update("UPDATE operations SET status = 'succeeded', updated_at = UTC_TIMESTAMP(6) "
              "WHERE target_id = %s AND kind = 'server.expire' AND status IN ('pending', 'running')", (server_id,))
