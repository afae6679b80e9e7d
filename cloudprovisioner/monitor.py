"""The monitor: a level-triggered reconciler between the servers table and the cloud.

Each run reads both sides whole and acts on the difference, so a run that was
skipped, or died half-way, is repaired by the next. One MySQL named lock makes
overlapping runs, on this host or another, step aside instead of acting twice.
Every change is one transaction: a guarded UPDATE of the server (`... AND
status = <what we saw>`, so a user's DELETE that lands mid-run is never
overwritten) together with its operation's new status.

It destroys only what is provably this installation's and dead (ownership.py):
it lists only objects carrying this installation's id; a droplet or network
whose row this database has never seen (a restored backup, another database)
is reported and held for a person, never destroyed; and a run that would
destroy more than CP_MONITOR_MAX_DESTROY objects, or more than
CP_MONITOR_MAX_DESTROY_PERCENT of the installation's objects, destroys none of
them until `cloudprovisioner-admin confirm-destroy`. What a user asked to
delete is not held: that is the user's decision, not the monitor's.

The cloud's rate limit is shared with users' requests: when fewer than
CP_RATELIMIT_FLOOR calls are left, the run stops calling the cloud and says
so; the next run goes on.
"""

import sys
import time
from datetime import UTC, datetime

from . import config as configuration
from . import operations, orphans, ownership, provider, server_rows
from .db import Database
from .errors import CloudFailed, DomainError

# What each server transition does to the server's open operations.
OPERATION_OUTCOME = {
    "ready": ("server.create", "succeeded"),
    "error": ("server.create", "failed"),
    "deleted": ("server.delete", "succeeded"),
}
INSTALLATION_KEY = "installation.id"
BREAKER_KEY = "monitor.breaker"


class RateLimitLow(Exception):
    """Few cloud calls are left this hour: stop acting, leave headroom for users."""


class Refused(Exception):
    """The run must not act at all (this database belongs to another installation)."""


class Orphan:
    """A cloud object of this installation that no live row explains."""

    def __init__(self, kind, cloud_id, name, row_id, reason, counter=None, droplet=None):
        self.kind = kind
        self.cloud_id = str(cloud_id)
        self.name = name
        self.row_id = row_id
        self.reason = reason
        self.counter = counter
        self.droplet = droplet

    @property
    def key(self):
        return (self.kind, self.cloud_id)


class Run:
    """One pass: what the cloud shows, what the table says, and what was done."""

    def __init__(self, config, db, cloud, log, lease=None):
        self.config = config
        self.db = db
        self.lease = lease  # the monitor's lease (leases.Lease): renewed between steps, lost means stop
        self.cloud = cloud  # the run's one conversation with the cloud, under CP_MONITOR_CLOUD_BUDGET
        self.log = log
        self.counts = {"ready": 0, "adopted": 0, "taken over": 0, "timed out": 0, "never created": 0,
                       "vanished": 0, "deleted": 0, "destroyed": 0, "duplicates destroyed": 0,
                       "orphans destroyed": 0, "actions done": 0}
        self.droplets = []
        self.doomed = []  # provably ours and dead: destroyed at the end, unless the breaker holds them
        self.held = []  # ours, but nothing here proves them dead: reported, left for a person
        self.objects = 0  # this installation's objects in the cloud (the breaker's share is of these)
        self.tripped = None  # the line that says why the breaker held this run's destroys

    def reconcile(self):
        self._check_installation()
        try:
            self.droplets = self.cloud.list_droplets(ownership.install_tag(self.config))
            self._take_over_legacy()
            self.objects += len(self.droplets)
            self._expire()
            by_row = self._droplets_by_row()
            rows = self.db.query(
                "SELECT id, status, instance_id, TIMESTAMPDIFF(SECOND, created_at, UTC_TIMESTAMP()) AS age "
                "FROM servers WHERE status IN ('pending', 'ready', 'deleting')")
            untagged = by_row.pop(None, [])
            for row in rows:
                droplets = by_row.pop(row["id"], [])
                mine = next((d for d in droplets if d.id == row["instance_id"]), None)
                mine = mine or (droplets[0] if droplets else None)
                try:
                    self._settle(row, mine)
                except CloudFailed as exc:
                    # One droplet the cloud will not destroy (or look up) must not stop the run, and with it
                    # every other tenant's servers: the next run asks again.
                    self.log(f"monitor: server {row['id']}: {exc}; the next run tries again")
                    self.counts["cloud failures"] = self.counts.get("cloud failures", 0) + 1
                for duplicate in droplets:
                    # A retried create that the cloud had made after all: one droplet per row.
                    if duplicate is not mine:
                        self._doom_droplet(duplicate, row["id"], f"a second droplet for server {row['id']}",
                                           "duplicates destroyed")
            self._sweep(by_row, untagged)
            self._follow_actions()
            from . import firewalls, vpcs
            self._still_ours()
            for family in (vpcs.FAMILY, firewalls.FAMILY):
                self._sync_network(family)
            self._refresh_sizes()
            self._still_ours()
            self._destroy_doomed()
            self.record_orphans()
            self._record_breaker()
        except RateLimitLow:
            self.log(f"monitor: the cloud's rate limit is low ({self.cloud.rate_limit.get('remaining')} calls left); "
                     "stopping here, the next run goes on")
        self.db.update("DELETE FROM idempotency_keys WHERE expires_at <= UTC_TIMESTAMP(6) LIMIT 1000")

    def _expire(self):
        """Owners warned before their servers expire; expired servers marked deleting (expiry.py). Before the
        rows are read, so that this run destroys an expired server's droplet as it does any deleting one's:
        its owner's decision, made in advance, so never held by the breaker."""
        from . import expiry
        for counter, done in expiry.sweep(self.db, self.config, self.log).items():
            self.counts[counter] = self.counts.get(counter, 0) + done

    def _still_ours(self):
        """Renew the run's lease before its next step; a run that outlived it (another monitor has taken it
        over) must not act again."""
        if self.lease is not None and (self.lease.lost or not self.lease.renew()):
            raise Refused("the monitor's lease ran out and another run has it; this one stops here")

    def _refresh_sizes(self):
        """The cloud's sizes and prices, cached for requests (one listing per run at most; quietly, as a run
        that changed nothing says nothing)."""
        from . import sizes
        try:
            sizes.refresh_if_stale(self.db, self.cloud, self.config.get("CP_SIZES_MAX_AGE"))
        except CloudFailed as exc:
            self.log(f"monitor: sizes and prices not refreshed: {exc}")

    def _check_installation(self):
        """Code newer than the schema (between `make install` and `make migrate`) does nothing.

        The database remembers the installation that first ran a monitor on it: a config with
        another CP_INSTALL_ID (a lost env file made anew, a copied database) would see none of the
        cloud objects its rows name, so it must not act until a person sets the id back."""
        from . import SCHEMA_VERSION
        schema = self.db.one("SELECT MAX(version) AS version FROM schema_migrations")["version"]
        if schema != SCHEMA_VERSION:
            raise Refused(f"the database schema is at {schema}, this code needs {SCHEMA_VERSION}: "
                          "run `cloudprovisioner-admin migrate` (make migrate)")
        mine = ownership.install_tag(self.config)  # the platform tag too: both name what is ours
        self.db.update("INSERT IGNORE INTO service_state (name, value, updated_at) "
                       "VALUES (%s, %s, UTC_TIMESTAMP(6))", (INSTALLATION_KEY, mine))
        recorded = self.db.one("SELECT value FROM service_state WHERE name = %s", (INSTALLATION_KEY,))["value"]
        if recorded != mine:
            raise Refused(f"this database belongs to installation {recorded}, but CP_PLATFORM_TAG:CP_INSTALL_ID "
                          f"is {mine}; set them back to the database's (nothing was done)")

    def _droplets_by_row(self):
        """Droplets grouped by the row id in their tag; those without one under None."""
        by_row = {}
        for droplet in self.droplets:
            by_row.setdefault(ownership.row_id_in(self.config, droplet.tags), []).append(droplet)
        return by_row

    def _take_over_legacy(self):
        """Droplets made before installation ids carry only the old tags. One becomes this
        installation's (gets today's tags) only when a live row marked legacy names it; any
        other droplet with the old tags, another installation's or a hand-made one, is left be.

        The installation's own tag goes on last, after the row's: a run stopped half-way never
        leaves a droplet listed as ours that does not name its row (it would look like nobody's).
        Adding a tag twice is harmless, so the next run simply finishes the job.
        """
        rows = {row["id"]: row for row in self.db.query(
            "SELECT id, tenant_id, instance_id FROM servers WHERE legacy_tags = 1 "
            "AND status IN ('pending', 'ready', 'deleting')")}
        if not rows:
            return
        self._guard_rate_limit()
        ours = ownership.install_tag(self.config)
        listed = {droplet.id: droplet for droplet in self.droplets}
        wanted, taken = {}, []
        for droplet in self.cloud.list_droplets(ownership.legacy_prefix(self.config)):
            row = rows.get(ownership.row_id_in(self.config, droplet.tags, legacy=True))
            if row is None or row["instance_id"] not in (None, droplet.id):
                continue
            forms = ownership.legacy_tag_forms(self.config, row["tenant_id"], droplet.tags)
            new_tags = [ownership.tenant_tag(self.config, row["tenant_id"]), *forms.values(), ours]
            missing = [tag for tag in new_tags if tag not in droplet.tags]
            for tag in missing:
                wanted.setdefault(tag, []).append(droplet.id)
            taken.append((row["id"], listed.get(droplet.id) or droplet, missing))
        for tag in sorted(wanted, key=lambda tag: tag == ours):
            self._guard_rate_limit()
            self.cloud.tag_droplets(tag, wanted[tag])
        for row_id, droplet, missing in taken:
            if droplet.id not in listed:
                self.droplets.append(droplet)
            droplet.tags = droplet.tags + missing
            self.db.update("UPDATE servers SET legacy_tags = 0 WHERE id = %s", (row_id,))
            self.log(f"monitor: droplet {droplet.id} of server {row_id} now carries this installation's tags")
        self.counts["taken over"] += len(taken)

    def _settle(self, row, droplet):
        status = row["status"]
        if status == "pending":
            self._settle_pending(row, droplet)
        elif status == "ready" and droplet is None:
            if self._really_gone(row):
                self._change(row, "error", "vanished", "the droplet is gone from the cloud")
        elif status == "deleting":
            if droplet is None:
                self._change(row, "deleted", "deleted", "deleted", deleted_at=True)
            else:
                # Still listed: the destroy may have failed; asking again is harmless.
                self._destroy(droplet, f"server {row['id']} is being deleted", count=None)
                # Its billing ends now if nothing ended it before (an expiry marks it deleting, and this destroys).
                server_rows.mark_destroyed(self.db, row["id"])

    def _settle_pending(self, row, droplet):
        if droplet is not None and droplet.status == "active" and droplet.public_ip:
            self._change(row, "ready", "ready", "", instance_id=droplet.id,
                         public_ip=droplet.public_ip, private_ip=droplet.private_ip or None,
                         ready_at=True, result={"public_ip": droplet.public_ip, "instance_id": str(droplet.id)})
        elif row["age"] > self.config.pending_timeout:
            limit = self.config.pending_timeout
            timed_out = self._change(row, "error", "timed out", f"not ready after {limit} s")
            if timed_out and droplet is not None:
                self._doom_droplet(droplet, row["id"], f"server {row['id']} timed out")
        elif droplet is not None and row["instance_id"] is None:
            # The create died before storing the droplet id: adopt it by its tag.
            self._change(row, "pending", "adopted", "", instance_id=droplet.id)
        elif droplet is None and row["instance_id"] is None and row["age"] > self.config.create_grace:
            # Its request died before the cloud made anything (or the cloud refused it); asked by
            # the row's own tag first, since a listing can come back short (see _really_gone).
            self._guard_rate_limit()
            found = self.cloud.list_droplets(ownership.row_tag(self.config, row["id"]))
            if found:
                self._change(row, "pending", "adopted", "", instance_id=found[0].id)
            else:
                self._change(row, "error", "never created", "the create never reached the cloud")

    def _really_gone(self, row):
        """Whether the cloud says a ready row's droplet is gone, asked by its id. The listing alone is no
        proof: its pages shift when a droplet is deleted between two of them, so one can be missed, and a
        row marked error would have its droplet destroyed by the next run."""
        self._guard_rate_limit()
        if self.cloud.get_droplet(row["instance_id"]) is None:
            return True
        self.log(f"monitor: server {row['id']}: its droplet {row['instance_id']} was missing from the listing "
                 "but is there; left as it is")
        return False

    def _sweep(self, by_row, spare):
        """Droplets that no live row explains: a dead row's are doomed; one naming a row this database
        has never seen is held for a person; one naming no row is doomed once past the grace period."""
        known = self._statuses(list(by_row))
        for row_id, droplets in by_row.items():
            for droplet in droplets:
                if row_id in known:
                    self._doom_droplet(droplet, row_id, f"server {row_id} is {known[row_id]}", "destroyed")
                else:
                    self._hold(Orphan("droplet", droplet.id, droplet.name, row_id,
                                      f"names server {row_id}, which this database has never seen "
                                      "(restored from a backup? another database?)", droplet=droplet))
        for droplet in spare:
            # A grace period, because a droplet may be listed before its creator stored its id.
            if _age(droplet.created_at) > self.config.orphan_grace:
                self._doom_droplet(droplet, None, "no server row explains it", "orphans destroyed")

    def _doom_droplet(self, droplet, row_id, why, counter=None):
        self.doomed.append(Orphan("droplet", droplet.id, droplet.name, row_id, why, counter))

    def _hold(self, orphan):
        self.held.append(orphan)  # said once, when first recorded (record_orphans)

    def _follow_actions(self):
        """Power actions still running: ask the cloud how each ended (one call each)."""
        for operation in self.db.query("SELECT id, cloud_action_id FROM operations WHERE status = 'running' "
                                       "AND cloud_action_id IS NOT NULL ORDER BY id LIMIT 500"):
            self._guard_rate_limit()
            state = self.cloud.action_status(operation["cloud_action_id"])
            if state in ("completed", "errored"):
                outcome = "succeeded" if state == "completed" else "failed"
                self.db.update("UPDATE operations SET status = %s, error = %s, updated_at = UTC_TIMESTAMP(6) "
                               "WHERE id = %s AND status = 'running'",
                               (outcome, "" if outcome == "succeeded" else "the cloud's action errored",
                                operation["id"]))
                self.counts["actions done"] += 1

    def _sync_network(self, family):
        """Make the cloud's VPCs or firewalls match the rows: create, adopt, rewrite, delete.

        The rows are read after the listing, and a row written since the listing began is left for
        the next run: the listing cannot show what a request did meanwhile (a VPC made, a firewall
        deleted). A pending row is also left alone while the request that wrote it may still be
        talking to the cloud (its budget plus a margin), so the two never both create it. The VPC
        listing is every VPC in the account, whoever made it: kept in `account_vpcs` for the range
        allocator (vpcs.py), so that no request pays a cloud call for it.
        """
        from . import desired_state, vpcs
        table, what = family.table, family.what
        if table == "firewalls" and not self.db.one("SELECT 1 AS made FROM firewalls LIMIT 1"):
            return  # this installation never made one: nothing in the cloud can be ours
        since = self.db.one("SELECT DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%d %H:%i:%s.%f') AS now")["now"]
        self._guard_rate_limit()
        lister = self.cloud.list_vpcs if table == "vpcs" else self.cloud.list_firewalls
        listed = {item["id"]: item for item in lister()}
        if table == "vpcs":
            vpcs.remember_account_ranges(self.db, listed.values())
        rows = self.db.query(f"SELECT {family.columns}, tenant_id, "
                             "TIMESTAMPDIFF(SECOND, updated_at, UTC_TIMESTAMP()) AS age "
                             f"FROM {table} WHERE status IN ('pending', 'ready', 'deleting') AND updated_at < %s "
                             "ORDER BY id", (since,))
        for row in rows:
            if row["status"] == "pending" and row["age"] <= self.config.cloud_budget + 10:
                continue
            self._guard_rate_limit()
            try:
                done = desired_state.sync(self.db, self.config, self.cloud, family, row, listed)
            except CloudFailed as exc:
                if exc.retryable:
                    raise
                self.log(f"monitor: {what} {row['id']}: the cloud refused: {exc.message}")
                continue
            if done:
                self.counts[f"{what}s {done}"] = self.counts.get(f"{what}s {done}", 0) + 1
        self._sweep_network(family, listed, since)

    def _sweep_network(self, family, listed, since):
        """Our VPCs or firewalls (named with this installation's id) that no live row explains: one
        whose row is deleted, or that is a second object for its row, is doomed (a delete or a create
        that half failed); one naming a row this database has never seen is held for a person."""
        table, what = family.table, family.what
        prefix = ownership.cloud_prefix(self.config, what)
        named = {item["name"][len(prefix):]: (cloud_id, item["name"]) for cloud_id, item in listed.items()
                 if item.get("name", "").startswith(prefix)}
        self.objects += len(named)
        known = {row["id"]: row for row in self.db.query(
            f"SELECT id, status, cloud_id, updated_at >= %s AS changed FROM {table} "
            f"WHERE id IN ({', '.join(['%s'] * len(named))})", [since, *named])} if named else {}
        for row_id, (cloud_id, name) in named.items():
            row = known.get(row_id)
            if row is not None and row["changed"]:
                continue  # written since the listing: the next run sees both sides as they are
            if row is None:
                self._hold(Orphan(what, cloud_id, name, row_id, f"names {what} {row_id}, which this database "
                                                                "has never seen (restored from a backup? "
                                                                "another database?)"))
            elif row["status"] == "deleted" or (row["cloud_id"] and row["cloud_id"] != cloud_id):
                reason = f"{what} {row_id} is deleted" if row["status"] == "deleted" else \
                    f"a second {what} for row {row_id}"
                self.doomed.append(Orphan(what, cloud_id, name, row_id, reason, f"{what}s orphaned"))

    def _destroy_doomed(self):
        """Destroy what is provably dead, unless there is so much of it that something is more likely
        wrong with this run (a bad restore, a bug) than with the cloud: then hold it all until a person
        confirms. What a person already confirmed is destroyed either way."""
        approved = {(row["kind"], row["cloud_id"]) for row in self.db.query(
            "SELECT kind, cloud_id FROM orphans WHERE approved_at IS NOT NULL")}
        unconfirmed = [orphan for orphan in self.doomed if orphan.key not in approved]
        limit, share = self.config.monitor_max_destroy, self.config.monitor_max_destroy_percent
        count = len(unconfirmed)
        # A single destroy is never held by the share: in a small installation it is always a big one.
        if count > limit or (count > 1 and count * 100 > share * max(1, self.objects)):
            self.tripped = (f"circuit breaker: this run would destroy {count} objects of the {self.objects} "
                            f"this installation has in the cloud (at most {limit}, and {share}%, are allowed); "
                            "destroyed none; see `cloudprovisioner-admin orphans`, then `confirm-destroy`")
            self.held += unconfirmed
            doomed = [orphan for orphan in self.doomed if orphan.key in approved]
        else:
            doomed = self.doomed
        destroyers = orphans.destroyers(self.cloud)
        for orphan in doomed:
            self._guard_rate_limit()
            self.log(f"monitor: destroying {orphan.kind} {orphan.cloud_id}: {orphan.reason}")
            try:
                gone = destroyers[orphan.kind](orphan.cloud_id)
            except CloudFailed as exc:
                if exc.retryable:
                    raise
                self.log(f"monitor: {orphan.kind} {orphan.cloud_id} not destroyed: {exc.message}")
                continue
            if orphan.counter and (gone or orphan.kind != "droplet"):
                self.counts[orphan.counter] = self.counts.get(orphan.counter, 0) + 1

    def record_orphans(self):
        """Keep `orphans` as this run saw them: what is held, and why; what is gone or explained now
        leaves the list. A droplet held for the first time is powered off if CP_ORPHAN_POWER_OFF says so."""
        seen, new_droplets = set(), []
        for orphan in self.held:
            verdict = "breaker" if orphan in self.doomed else "held"
            seen.add(orphan.key)
            new = self.db.insert_new(
                "INSERT INTO orphans (kind, cloud_id, name, row_id, verdict, reason, first_seen_at, last_seen_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
                (orphan.kind, orphan.cloud_id, orphan.name[:255], orphan.row_id, verdict, orphan.reason[:1000]))
            if new:
                self.log(f"monitor: held {orphan.kind} {orphan.cloud_id} ({orphan.name}): {orphan.reason}; "
                         "see cloudprovisioner-admin orphans")
                if verdict == "held" and orphan.droplet is not None:
                    new_droplets.append(orphan.droplet)
            else:
                self.db.update("UPDATE orphans SET name = %s, row_id = %s, verdict = %s, reason = %s, "
                               "last_seen_at = UTC_TIMESTAMP(6) WHERE kind = %s AND cloud_id = %s",
                               (orphan.name[:255], orphan.row_id, verdict, orphan.reason[:1000], *orphan.key))
        for row in self.db.query("SELECT kind, cloud_id FROM orphans"):
            if (row["kind"], row["cloud_id"]) not in seen:
                self.db.update("DELETE FROM orphans WHERE kind = %s AND cloud_id = %s",
                               (row["kind"], row["cloud_id"]))
        self._power_off(new_droplets)

    def _record_breaker(self):
        if self.tripped:
            self.db.update("INSERT INTO service_state (name, value, updated_at) VALUES (%s, %s, UTC_TIMESTAMP(6)) "
                           "ON DUPLICATE KEY UPDATE value = VALUES(value), updated_at = VALUES(updated_at)",
                           (BREAKER_KEY, self.tripped[:255]))
        else:
            self.db.update("DELETE FROM service_state WHERE name = %s", (BREAKER_KEY,))

    def _power_off(self, droplets):
        """Power off newly held droplets if CP_ORPHAN_POWER_OFF says so; never more at once than the
        breaker lets the monitor destroy (a restore from an old backup holds every newer server)."""
        running = [droplet for droplet in droplets if droplet.status == "active"]
        if self.config.orphan_power_off != "yes" or not running:
            return
        if len(running) > self.config.monitor_max_destroy:
            self.log(f"monitor: {len(running)} held droplets left running: more than CP_MONITOR_MAX_DESTROY "
                     "at once; see cloudprovisioner-admin orphans")
            return
        for droplet in running:
            self._guard_rate_limit()
            try:
                self.cloud.droplet_action(droplet.id, "power_off")
                self.log(f"monitor: powered off held droplet {droplet.id} (CP_ORPHAN_POWER_OFF=yes)")
            except CloudFailed as exc:
                self.log(f"monitor: held droplet {droplet.id} not powered off: {exc.message}")

    def _statuses(self, row_ids):
        """The dead rows among these (error or deleted): only they doom a droplet. A row that turned live
        since this run read the table (an admin's `adopt`) is not among them, so its droplet is kept."""
        found = {}
        for start in range(0, len(row_ids), 500):
            chunk = row_ids[start:start + 500]
            marks = ", ".join(["%s"] * len(chunk))
            for row in self.db.query(f"SELECT id, status FROM servers WHERE id IN ({marks}) "
                                     "AND status IN ('error', 'deleted')", chunk):
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
        if status in ("error", "deleted"):  # its droplet is gone or doomed: the end of its billing (costs.py)
            sets.append("destroyed_at = COALESCE(destroyed_at, UTC_TIMESTAMP(6))")
        for attempt in self.db.transaction():
            with attempt:
                changed = self.db.update(f"UPDATE servers SET {', '.join(sets)} WHERE id = %s AND status = %s",
                                         (*args, row["id"], row["status"]))
                if changed and status in OPERATION_OUTCOME:
                    kind, outcome = OPERATION_OUTCOME[status]
                    operations.finish_open(self.db, row["id"], kind, outcome, reason if outcome == "failed" else "",
                                           result)
                    if status == "deleted":  # or the delete the monitor began itself, at the server's expiry
                        from . import expiry
                        expiry.deleted(self.db, row["id"])
                elif changed and instance_id is not None:
                    self.db.update("UPDATE operations SET status = 'running', updated_at = UTC_TIMESTAMP(6) "
                                   "WHERE target_id = %s AND kind = 'server.create' AND status = 'pending'",
                                   (row["id"],))
        if changed:
            self.counts[counter] += 1
        return changed

    def _destroy(self, droplet, why, count):
        """What a user asked for (a server being deleted): not the monitor's decision, never held."""
        self._guard_rate_limit()
        self.log(f"destroying droplet {droplet.id}: {why}")
        if self.cloud.destroy_droplet(droplet.id) and count:
            self.counts[count] += 1

    def _guard_rate_limit(self):
        remaining = self.cloud.rate_limit.get("remaining")
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


MONITOR_LEASE = 30  # seconds


def lock_name(config):
    """CP_MONITOR_LOCK for this installation: the name of the monitor's lease (its id in the name, as when
    this was a MySQL named lock spanning the whole server, where installations must not make each other's
    monitors step aside)."""
    return f"{config.monitor_lock}.{ownership.install_id(config)}"


def run_once(config, out=sys.stdout, err=sys.stderr):
    """One monitor run. Answer the exit status: 0 done or skipped, 1 failed, refused, or held by the breaker."""
    def log(message):
        out.write(message + "\n")
    started, cloud = time.monotonic(), None
    from . import leases
    db = Database(config)
    lease = None
    try:
        # Short, and renewed by a heartbeat while the run works: a monitor that was killed or cut off from the
        # database keeps the next runs waiting for MONITOR_LEASE seconds at most.
        lease = leases.take(db, lock_name(config), MONITOR_LEASE)
        if lease is None:
            return 0  # Another monitor (maybe on another host) is running: its work, not ours.
        lease.keep_alive(config)
        cloud = provider.Cloud(config, config.monitor_cloud_budget)
        run = Run(config, db, cloud, log, lease)
        run.reconcile()
        if run.changed():
            log(run.summary(time.monotonic() - started))
        result = "tripped" if run.tripped else "ok"
        _record(db, result, time.monotonic() - started, cloud)
        if run.tripped:
            err.write(f"monitor: {run.tripped}\n")
            return 1
        return 0
    except Refused as exc:
        err.write(f"monitor: refused: {exc}\n")
        _record(db, "refused", time.monotonic() - started, cloud)
        return 1
    except (DomainError, configuration.ConfigError) as exc:
        reason = getattr(exc, "reason", "")
        err.write(f"monitor: failed: {exc}{f' ({reason})' if reason else ''}\n")
        _record(db, "failed", time.monotonic() - started, cloud)
        return 1
    finally:
        if lease is not None:
            lease.release()
        db.close()


def _record(db, result, seconds, cloud):
    """What /health and /api/metrics report: the run's result, time, cloud calls (those of this run's
    `cloud`, None when the run never got as far as making one) and rate-limit headroom."""
    from . import telemetry
    calls, rate_limit = (cloud.calls, cloud.rate_limit) if cloud is not None else (0, {})
    try:
        telemetry.count(db, "monitor_runs_total", result)
        telemetry.count(db, "cloud_api_calls_total", "monitor", calls)
        state = {f"cloud.ratelimit_{key}": value for key, value in rate_limit.items()
                 if key in ("remaining", "limit")}
        if result in ("ok", "tripped"):  # a tripped run did all but destroy
            state.update({"monitor.last_success": "ok", "monitor.last_success_epoch": int(time.time()),
                          "monitor.last_duration": f"{seconds:.3f}"})
        telemetry.remember(db, **state)
    except DomainError:
        pass  # the database is what failed: nothing to record it in


def main(argv=None):
    config = configuration.load_for_command("monitor_new_node", "Reconcile the servers table with the cloud once.",
                                            argv)
    return run_once(config)
