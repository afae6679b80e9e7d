"""The monitor: a level-triggered reconciler between the servers table and the cloud.

Each run reads both sides whole and acts on the difference, so a run that was
skipped, or died half-way, is repaired by the next. One MySQL named lock makes
overlapping runs, on this host or another, step aside instead of acting twice.
Every change is one transaction: a guarded UPDATE of the server (`... AND
status = <what we saw>`, so a user's DELETE that lands mid-run is never
overwritten) together with its operation's new status.

The cloud's rate limit is shared with users' requests: when fewer than
CP_RATELIMIT_FLOOR calls are left, the run stops calling the cloud and says
so; the next run goes on.
"""

import sys
import time
from datetime import UTC, datetime

from . import config as configuration
from . import operations, provider
from .db import Database
from .errors import Problem
from .ids import looks_like_id
from .servers import row_tag

# What each server transition does to the server's open operations.
OPERATION_OUTCOME = {
    "ready": ("server.create", "succeeded"),
    "error": ("server.create", "failed"),
    "deleted": ("server.delete", "succeeded"),
}


class RateLimitLow(Exception):
    """Few cloud calls are left this hour: stop acting, leave headroom for users."""


class Run:
    """One pass: what the cloud shows, what the table says, and what was done."""

    def __init__(self, config, db, log):
        self.config = config
        self.db = db
        self.log = log
        self.budget = provider.monitor_budget(config)
        self.counts = {"ready": 0, "adopted": 0, "timed out": 0, "never created": 0, "vanished": 0,
                       "deleted": 0, "destroyed": 0, "duplicates destroyed": 0, "orphans destroyed": 0,
                       "actions done": 0}
        self.droplets = []

    def reconcile(self):
        self.droplets = provider.list_droplets(self.config, self.budget, self.config.platform_tag)
        by_row = self._droplets_by_row()
        rows = self.db.query(
            "SELECT id, status, instance_id, TIMESTAMPDIFF(SECOND, created_at, UTC_TIMESTAMP()) AS age "
            "FROM servers WHERE status IN ('pending', 'ready', 'deleting')")
        untagged = by_row.pop(None, [])
        try:
            for row in rows:
                droplets = by_row.pop(row["id"], [])
                mine = next((d for d in droplets if d.id == row["instance_id"]), None)
                mine = mine or (droplets[0] if droplets else None)
                self._settle(row, mine)
                for duplicate in droplets:
                    # A retried create that the cloud had made after all: one droplet per row.
                    if duplicate is not mine:
                        self._destroy(duplicate, f"a second droplet for server {row['id']}", "duplicates destroyed")
            self._sweep(by_row, untagged)
            self._follow_actions()
            for table in ("vpcs", "firewalls"):
                self._sync_network(table)
        except RateLimitLow:
            self.log(f"monitor: the cloud's rate limit is low ({provider.rate_limit.get('remaining')} calls left); "
                     "stopping here, the next run goes on")
        self.db.update("DELETE FROM idempotency_keys WHERE expires_at <= UTC_TIMESTAMP(6) LIMIT 1000")

    def _droplets_by_row(self):
        """Droplets grouped by the row id in their tag; those without one under None."""
        prefix = row_tag(self.config, "")
        by_row = {}
        for droplet in self.droplets:
            ids = [tag[len(prefix):] for tag in droplet.tags
                   if tag.startswith(prefix) and looks_like_id(tag[len(prefix):])]
            by_row.setdefault(ids[0] if ids else None, []).append(droplet)
        return by_row

    def _settle(self, row, droplet):
        status = row["status"]
        if status == "pending":
            self._settle_pending(row, droplet)
        elif status == "ready" and droplet is None:
            self._change(row, "error", "vanished", "the droplet is gone from the cloud")
        elif status == "deleting":
            if droplet is None:
                self._change(row, "deleted", "deleted", "deleted", deleted_at=True)
            else:
                # Still listed: the destroy may have failed; asking again is harmless.
                self._destroy(droplet, f"server {row['id']} is being deleted", count=None)

    def _settle_pending(self, row, droplet):
        if droplet is not None and droplet.status == "active" and droplet.public_ip:
            self._change(row, "ready", "ready", "", instance_id=droplet.id,
                         public_ip=droplet.public_ip, private_ip=droplet.private_ip or None,
                         ready_at=True, result={"public_ip": droplet.public_ip, "instance_id": str(droplet.id)})
        elif row["age"] > self.config.pending_timeout:
            limit = self.config.pending_timeout
            timed_out = self._change(row, "error", "timed out", f"not ready after {limit} s")
            if timed_out and droplet is not None:
                self._destroy(droplet, f"server {row['id']} timed out", count=None)
        elif droplet is not None and row["instance_id"] is None:
            # The create died before storing the droplet id: adopt it by its tag.
            self._change(row, "pending", "adopted", "", instance_id=droplet.id)
        elif droplet is None and row["instance_id"] is None and row["age"] > self.config.create_grace:
            # Its request died before the cloud made anything (or the cloud refused it).
            self._change(row, "error", "never created", "the create never reached the cloud")

    def _sweep(self, by_row, spare):
        """Destroy droplets that no live row explains: a dead row's, or nobody's."""
        known = self._statuses(list(by_row))
        for row_id, droplets in by_row.items():
            if row_id in known:
                for droplet in droplets:
                    self._destroy(droplet, f"server {row_id} is {known[row_id]}", "destroyed")
            else:
                spare += droplets
        for droplet in spare:
            # A grace period, because a droplet may be listed before its creator stored its id.
            if _age(droplet.created_at) > self.config.orphan_grace:
                self._destroy(droplet, "no server row explains it", "orphans destroyed")

    def _follow_actions(self):
        """Power actions still running: ask the cloud how each ended (one call each)."""
        for operation in self.db.query("SELECT id, cloud_action_id FROM operations WHERE status = 'running' "
                                       "AND cloud_action_id IS NOT NULL ORDER BY id LIMIT 500"):
            self._guard_rate_limit()
            state = provider.action_status(self.config, self.budget, operation["cloud_action_id"])
            if state in ("completed", "errored"):
                outcome = "succeeded" if state == "completed" else "failed"
                self.db.update("UPDATE operations SET status = %s, error = %s, updated_at = UTC_TIMESTAMP(6) "
                               "WHERE id = %s AND status = 'running'",
                               (outcome, "" if outcome == "succeeded" else "the cloud's action errored",
                                operation["id"]))
                self.counts["actions done"] += 1

    def _sync_network(self, table):
        """Make the cloud's VPCs or firewalls match the rows: create, adopt, rewrite, delete.

        A pending row is left alone while the request that wrote it may still be talking
        to the cloud (its budget plus a margin), so the two never both create it.
        """
        from . import networks
        module, what = networks.module(table), networks.TYPES[table]
        rows = self.db.query(f"SELECT {module.COLUMNS}, tenant_id, "
                             "TIMESTAMPDIFF(SECOND, updated_at, UTC_TIMESTAMP()) AS age "
                             f"FROM {table} WHERE status IN ('pending', 'ready', 'deleting') ORDER BY id")
        if not rows and not self.db.one(f"SELECT 1 AS made FROM {table} LIMIT 1"):
            return  # this platform never made one: nothing in the cloud can be ours
        self._guard_rate_limit()
        lister = provider.list_vpcs if table == "vpcs" else provider.list_firewalls
        listed = {item["id"]: item for item in lister(self.config, self.budget)}
        for row in rows:
            if row["status"] == "pending" and row["age"] <= self.config.cloud_budget + 10:
                continue
            self._guard_rate_limit()
            try:
                done = networks.sync(self.db, self.config, self.budget, table, row, listed)
            except provider.CloudError as exc:
                if exc.retryable:
                    raise
                self.log(f"monitor: {what} {row['id']}: the cloud refused: {exc.message}")
                continue
            if done:
                self.counts[f"{what}s {done}"] = self.counts.get(f"{what}s {done}", 0) + 1
        self._sweep_network(table, listed)

    def _sweep_network(self, table, listed):
        """Delete our cloud VPCs or firewalls whose row is deleted or unknown (a delete that half failed)."""
        from . import networks
        what = networks.TYPES[table]
        prefix = networks.cloud_prefix(self.config, what)
        named = {item["name"][len(prefix):]: cloud_id for cloud_id, item in listed.items()
                 if item.get("name", "").startswith(prefix)}
        known = {row["id"]: row for row in self.db.query(
            f"SELECT id, status, cloud_id FROM {table} WHERE id IN ({', '.join(['%s'] * len(named))})",
            list(named))} if named else {}
        for row_id, cloud_id in named.items():
            row = known.get(row_id)
            if row is None or row["status"] == "deleted" or (row["cloud_id"] and row["cloud_id"] != cloud_id):
                self._guard_rate_limit()
                self.log(f"monitor: deleting {what} {cloud_id}: no live row explains it")
                try:
                    deleter = provider.delete_vpc if table == "vpcs" else provider.delete_firewall
                    deleter(self.config, self.budget, cloud_id)
                    self.counts[f"{what}s orphaned"] = self.counts.get(f"{what}s orphaned", 0) + 1
                except provider.CloudError as exc:
                    if exc.retryable:
                        raise
                    self.log(f"monitor: {what} {cloud_id} not deleted: {exc.message}")

    def _statuses(self, row_ids):
        found = {}
        for start in range(0, len(row_ids), 500):
            chunk = row_ids[start:start + 500]
            marks = ", ".join(["%s"] * len(chunk))
            for row in self.db.query(f"SELECT id, status FROM servers WHERE id IN ({marks})", chunk):
                found[row["id"]] = row["status"]
        return found

    def _change(self, row, status, counter, reason, *, instance_id=None, public_ip=None,
                private_ip=None, ready_at=False, deleted_at=False, result=None):
        """One transaction: the server's guarded UPDATE and its operation's outcome."""
        sets = ["status = %s", "status_reason = %s", "updated_at = UTC_TIMESTAMP(6)"]
        args = [status, reason]
        for column, value in (("instance_id", instance_id), ("public_ip", public_ip),
                              ("private_ip", private_ip)):
            if value is not None:
                sets.append(f"{column} = %s")
                args.append(value)
        sets += [f"{column} = UTC_TIMESTAMP(6)"
                 for column, wanted in (("ready_at", ready_at), ("deleted_at", deleted_at)) if wanted]
        with self.db.transaction():
            changed = self.db.update(f"UPDATE servers SET {', '.join(sets)} WHERE id = %s AND status = %s",
                                     (*args, row["id"], row["status"]))
            if changed and status in OPERATION_OUTCOME:
                kind, outcome = OPERATION_OUTCOME[status]
                operations.finish_open(self.db, row["id"], kind, outcome, reason if outcome == "failed" else "",
                                       result)
            elif changed and instance_id is not None:
                self.db.update("UPDATE operations SET status = 'running', updated_at = UTC_TIMESTAMP(6) "
                               "WHERE target_id = %s AND kind = 'server.create' AND status = 'pending'",
                               (row["id"],))
        if changed:
            self.counts[counter] += 1
        return changed

    def _destroy(self, droplet, why, count):
        self._guard_rate_limit()
        self.log(f"destroying droplet {droplet.id}: {why}")
        if provider.destroy_droplet(self.config, self.budget, droplet.id) and count:
            self.counts[count] += 1

    def _guard_rate_limit(self):
        remaining = provider.rate_limit.get("remaining")
        if remaining is not None and remaining < self.config.ratelimit_floor:
            raise RateLimitLow()

    def summary(self, seconds):
        done = ", ".join(f"{n} {what}" for what, n in self.counts.items() if n)
        pages = max(1, -(-len(self.droplets) // provider.PAGE_SIZE))
        return (f"monitor: {done}; {len(self.droplets)} droplets listed in {pages} "
                f"page{'s' if pages > 1 else ''}, {seconds:.1f} s")

    def changed(self):
        return any(self.counts.values())


def _age(created_at):
    """Seconds since an ISO 8601 time from the cloud; unknown counts as new."""
    try:
        then = datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return 0
    return (datetime.now(UTC) - then).total_seconds()


def run_once(config, out=sys.stdout, err=sys.stderr):
    """One monitor run. Answer the exit status: 0 done or skipped, 1 failed."""
    def log(message):
        out.write(message + "\n")
    started, calls_before = time.monotonic(), provider.calls["count"]
    db = Database(config)
    try:
        if not db.get_lock(config.monitor_lock, 0):
            return 0  # Another monitor (maybe on another host) is running: its work, not ours.
        run = Run(config, db, log)
        run.reconcile()
        if run.changed():
            log(run.summary(time.monotonic() - started))
        _record(db, "ok", time.monotonic() - started, provider.calls["count"] - calls_before)
        return 0
    except (Problem, provider.CloudError, configuration.ConfigError) as exc:
        reason = getattr(exc, "reason", "")
        err.write(f"monitor: failed: {exc}{f' ({reason})' if reason else ''}\n")
        _record(db, "failed", time.monotonic() - started, provider.calls["count"] - calls_before)
        return 1
    finally:
        db.close()


def _record(db, result, seconds, calls):
    """What /health and /api/metrics report: the run's result, time, cloud calls and rate-limit headroom."""
    from . import observability
    try:
        observability.count(db, "monitor_runs_total", result)
        observability.count(db, "cloud_api_calls_total", "monitor", calls)
        state = {f"cloud.ratelimit_{key}": value for key, value in provider.rate_limit.items()
                 if key in ("remaining", "limit")}
        if result == "ok":
            state.update({"monitor.last_success": "ok", "monitor.last_success_epoch": int(time.time()),
                          "monitor.last_duration": f"{seconds:.3f}"})
        observability.remember(db, **state)
    except Problem:
        pass  # the database is what failed: nothing to record it in


def main(argv=None):
    config = configuration.load_for_command("monitor_new_node", "Reconcile the servers table with the cloud once.",
                                            argv)
    return run_once(config)
