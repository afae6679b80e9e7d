"""The state: every droplet, action, SSH key, tag, VPC and firewall in one
SQLite file, so the sandbox survives a restart; and the validated create
requests (DropletSpec, FirewallSpec) it stores."""

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass

from .addresses import DEFAULT_VPC_IDS, default_vpc_range
from .errors import is_number

SCHEMA = """
CREATE TABLE IF NOT EXISTS droplets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL, region TEXT NOT NULL, size TEXT NOT NULL,
    image INTEGER NOT NULL, created_at REAL NOT NULL,
    powered_on INTEGER NOT NULL DEFAULT 1,
    backups INTEGER NOT NULL, ipv6 INTEGER NOT NULL, monitoring INTEGER NOT NULL,
    agent INTEGER NOT NULL, vpc_uuid TEXT NOT NULL, user_data TEXT,
    ssh_keys TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tags (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS droplet_tags (
    tag TEXT NOT NULL, droplet_id INTEGER NOT NULL,
    PRIMARY KEY (tag, droplet_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS droplet_tags_by_droplet ON droplet_tags (droplet_id);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL, droplet_id INTEGER NOT NULL, region TEXT NOT NULL,
    started_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS actions_by_droplet ON actions (droplet_id, id);
CREATE TABLE IF NOT EXISTS ssh_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL, public_key TEXT NOT NULL, fingerprint TEXT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS droplets_by_vpc ON droplets (vpc_uuid, id);
CREATE TABLE IF NOT EXISTS vpcs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL,
    description TEXT NOT NULL, ip_range TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS firewalls (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at REAL NOT NULL,
    changed_at REAL NOT NULL, inbound_rules TEXT NOT NULL, outbound_rules TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS firewall_droplets (
    firewall_id TEXT NOT NULL, droplet_id INTEGER NOT NULL,
    PRIMARY KEY (firewall_id, droplet_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS firewall_tags (
    firewall_id TEXT NOT NULL, tag TEXT NOT NULL,
    PRIMARY KEY (firewall_id, tag)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS firewall_tags_by_tag ON firewall_tags (tag);
CREATE TABLE IF NOT EXISTS withheld_public_v4 (droplet_id INTEGER PRIMARY KEY);
"""
# Links from a firewall to what it applies to; they go with the firewall.
FIREWALL_LINKS = ("firewall_droplets", "firewall_tags")

# A droplet row with its VPC's range, which its private address comes from,
# and whether a test has the knob holding its public IPv4 address back.
DROPLET_FIELDS = ("d.*, v.ip_range AS vpc_ip_range, EXISTS (SELECT 1 FROM withheld_public_v4 w"
                  " WHERE w.droplet_id = d.id) AS public_v4_withheld")
DROPLET_COLUMNS = f"{DROPLET_FIELDS} FROM droplets d LEFT JOIN vpcs v ON v.id = d.vpc_uuid"
# Tables that hold a droplet's own facts beside its row: they go with the droplet.
DROPLET_LINKS = ("droplet_tags", "firewall_droplets", "withheld_public_v4")

# Each kind of id starts in its own range, as on DigitalOcean, so code that
# mixes up a droplet id with an action id fails in tests instead of passing
# by coincidence.
ID_BASES = {"droplets": 300000000, "actions": 1900000000, "ssh_keys": 40000000}


@dataclass(frozen=True)
class FirewallSpec:
    """A validated firewall create or replace request; rules in the shape the API shows."""

    name: str
    inbound_rules: tuple[dict, ...]
    outbound_rules: tuple[dict, ...]
    droplet_ids: tuple[int, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class DropletSpec:
    """A validated create request, minus the names."""

    region: str
    size: str
    image: int
    backups: bool
    ipv6: bool
    monitoring: bool
    agent: bool
    vpc_uuid: str
    user_data: str | None
    ssh_keys: tuple[int, ...]
    tags: tuple[str, ...]


class Store:
    """All SQLite access. One connection behind one lock: the HTTP server is
    threaded, and serialising is plenty fast for a test double."""

    def __init__(self, path):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._db:
            self._db.executescript(SCHEMA)
            for table, base in ID_BASES.items():
                self._db.execute(
                    "INSERT INTO sqlite_sequence (name, seq) SELECT ?, ? WHERE NOT EXISTS"
                    " (SELECT 1 FROM sqlite_sequence WHERE name = ?)", (table, base, table))
            self._seed_default_vpcs(restore=False)

    def close(self):
        with self._lock:
            self._db.close()

    def reset(self):
        # sqlite_sequence is kept: ids are never reused, even across a reset.
        # The default VPCs stay, as on a fresh DigitalOcean account, with
        # their names and descriptions restored.
        with self._lock, self._db:
            for table in ("droplets", *DROPLET_LINKS, "tags", "actions", "ssh_keys",
                          "firewalls", *FIREWALL_LINKS):
                self._db.execute(f"DELETE FROM {table}")
            marks = ",".join("?" * len(DEFAULT_VPC_IDS))
            self._db.execute(f"DELETE FROM vpcs WHERE id NOT IN ({marks})", list(DEFAULT_VPC_IDS))
            self._seed_default_vpcs(restore=True)

    # droplets

    def create_droplets(self, spec, names, now, tag_each=None):
        """Insert droplets with their tags and create actions in one transaction;
        `tag_each` gives each droplet one more tag of its own. Return [(droplet_id, action_id)]."""
        own_tags = tag_each or [None] * len(names)
        with self._lock, self._db:
            self._db.executemany("INSERT OR IGNORE INTO tags (name) VALUES (?)",
                                 [(tag,) for tag in [*spec.tags, *filter(None, own_tags)]])
            return [self._insert_droplet(spec, name, now, own) for name, own in zip(names, own_tags, strict=True)]

    def _insert_droplet(self, spec, name, now, own_tag=None):
        droplet_id = self._db.execute(
            "INSERT INTO droplets (name, region, size, image, created_at, backups, ipv6,"
            " monitoring, agent, vpc_uuid, user_data, ssh_keys)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, spec.region, spec.size, spec.image, now, spec.backups, spec.ipv6,
             spec.monitoring, spec.agent, spec.vpc_uuid, spec.user_data,
             json.dumps(spec.ssh_keys))).lastrowid
        self._db.executemany("INSERT INTO droplet_tags (tag, droplet_id) VALUES (?, ?)",
                             [(tag, droplet_id) for tag in [*spec.tags, *filter(None, [own_tag])]])
        return droplet_id, self._insert_action(droplet_id, "create", spec.region, now)

    def get_droplet(self, droplet_id):
        """(row, tags), or None."""
        with self._lock:
            row = self._db.execute(f"SELECT {DROPLET_COLUMNS} WHERE d.id = ?",
                                   (droplet_id,)).fetchone()
            return None if row is None else (row, self._tags_of([droplet_id])[droplet_id])

    def list_droplets(self, tag, name, offset, limit, sizes=None):
        """One page of (row, tags) in id order, and the total; `sizes`, when given, keeps the
        droplets of those size slugs only."""
        source, conditions, args = "droplets d", [], []
        if tag is not None:
            source = "droplet_tags t JOIN droplets d ON d.id = t.droplet_id AND t.tag = ?"
            args.append(tag)
        if name is not None:
            conditions.append("d.name = ?")
            args.append(name)
        if sizes is not None:
            conditions.append(f"d.size IN ({','.join('?' * len(sizes))})")
            args.extend(sizes)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM {source}{where}", args).fetchone()[0]
            rows = self._db.execute(
                f"SELECT {DROPLET_FIELDS} FROM {source}"
                f" LEFT JOIN vpcs v ON v.id = d.vpc_uuid{where} ORDER BY d.id LIMIT ? OFFSET ?",
                [*args, limit, offset]).fetchall()
            tags = self._tags_of([row["id"] for row in rows])
        return [(row, tags[row["id"]]) for row in rows], total

    def _tags_of(self, droplet_ids):
        tags = {droplet_id: [] for droplet_id in droplet_ids}
        marks = ",".join("?" * len(droplet_ids))
        for droplet_id, tag in self._db.execute(
                f"SELECT droplet_id, tag FROM droplet_tags WHERE droplet_id IN ({marks})"
                " ORDER BY tag", droplet_ids):
            tags[droplet_id].append(tag)
        return tags

    def delete_droplet(self, droplet_id):
        with self._lock, self._db:
            deleted = self._db.execute("DELETE FROM droplets WHERE id = ?",
                                       (droplet_id,)).rowcount
            for table in DROPLET_LINKS:
                self._db.execute(f"DELETE FROM {table} WHERE droplet_id = ?", (droplet_id,))
        return deleted > 0

    def delete_tagged_droplets(self, tag):
        """Delete every droplet with the tag; False if there is no such tag."""
        with self._lock, self._db:
            if not self._tag_exists(tag):
                return False
            self._db.execute("DELETE FROM droplets WHERE id IN"
                             " (SELECT droplet_id FROM droplet_tags WHERE tag = ?)", (tag,))
            for table in DROPLET_LINKS:
                self._db.execute(f"DELETE FROM {table} WHERE droplet_id NOT IN"
                                 " (SELECT id FROM droplets)")
        return True

    def withhold_public_v4(self, droplet_id, withheld):
        """Hold a droplet's public IPv4 address back (or give it back); False if
        there is no such droplet."""
        with self._lock, self._db:
            if self._db.execute("SELECT 1 FROM droplets WHERE id = ?", (droplet_id,)).fetchone() is None:
                return False
            sql = ("INSERT OR IGNORE INTO withheld_public_v4 (droplet_id) VALUES (?)" if withheld
                   else "DELETE FROM withheld_public_v4 WHERE droplet_id = ?")
            self._db.execute(sql, (droplet_id,))
        return True

    def existing_droplet_ids(self, droplet_ids):
        marks = ",".join("?" * len(droplet_ids))
        with self._lock:
            rows = self._db.execute(f"SELECT id FROM droplets WHERE id IN ({marks})",
                                    list(droplet_ids))
            return {row[0] for row in rows}

    # actions

    def droplet_action(self, droplet_id, action_type, powered_on, now):
        """Record an action (and its power effect, unless None); None if the
        droplet does not exist, else the action id."""
        with self._lock, self._db:
            row = self._db.execute("SELECT region FROM droplets WHERE id = ?",
                                   (droplet_id,)).fetchone()
            if row is None:
                return None
            if powered_on is not None:
                self._db.execute("UPDATE droplets SET powered_on = ? WHERE id = ?",
                                 (powered_on, droplet_id))
            return self._insert_action(droplet_id, action_type, row["region"], now)

    def _insert_action(self, droplet_id, action_type, region, now):
        return self._db.execute(
            "INSERT INTO actions (type, droplet_id, region, started_at) VALUES (?, ?, ?, ?)",
            (action_type, droplet_id, region, now)).lastrowid

    def get_action(self, action_id, droplet_id=None):
        query, args = "SELECT * FROM actions WHERE id = ?", [action_id]
        if droplet_id is not None:
            query += " AND droplet_id = ?"
            args.append(droplet_id)
        with self._lock:
            return self._db.execute(query, args).fetchone()

    def list_actions(self, droplet_id, offset, limit):
        where, args = "", []
        if droplet_id is not None:
            where, args = " WHERE droplet_id = ?", [droplet_id]
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM actions{where}", args).fetchone()[0]
            rows = self._db.execute(f"SELECT * FROM actions{where} ORDER BY id LIMIT ? OFFSET ?",
                                    [*args, limit, offset]).fetchall()
        return rows, total

    # ssh keys

    def add_key(self, name, public_key, fingerprint):
        """The new key's row, or None if its fingerprint is already there."""
        with self._lock, self._db:
            try:
                key_id = self._db.execute(
                    "INSERT INTO ssh_keys (name, public_key, fingerprint) VALUES (?, ?, ?)",
                    (name, public_key, fingerprint)).lastrowid
            except sqlite3.IntegrityError:
                return None
            return self._db.execute("SELECT * FROM ssh_keys WHERE id = ?",
                                    (key_id,)).fetchone()

    def list_keys(self):
        with self._lock:
            return self._db.execute("SELECT * FROM ssh_keys ORDER BY id").fetchall()

    def find_key(self, ref):
        """A key by id (int or digits) or by fingerprint."""
        column = "id" if isinstance(ref, int) or is_number(ref) else "fingerprint"
        with self._lock:
            return self._db.execute(f"SELECT * FROM ssh_keys WHERE {column} = ?",
                                    (ref,)).fetchone()

    def rename_key(self, key_id, name):
        with self._lock, self._db:
            self._db.execute("UPDATE ssh_keys SET name = ? WHERE id = ?", (name, key_id))

    def delete_key(self, key_id):
        with self._lock, self._db:
            self._db.execute("DELETE FROM ssh_keys WHERE id = ?", (key_id,))

    # tags

    def _tag_exists(self, name):
        return self._db.execute("SELECT 1 FROM tags WHERE name = ?", (name,)).fetchone() is not None

    def tag_exists(self, name):
        with self._lock:
            return self._tag_exists(name)

    def create_tag(self, name):
        with self._lock, self._db:
            self._db.execute("INSERT OR IGNORE INTO tags (name) VALUES (?)", (name,))

    def tag_summaries(self, name=None):
        """[(name, droplet count, highest droplet id or None)], by name."""
        where, args = ("WHERE t.name = ?", [name]) if name is not None else ("", [])
        with self._lock:
            return self._db.execute(
                "SELECT t.name, COUNT(dt.droplet_id), MAX(dt.droplet_id) FROM tags t"
                f" LEFT JOIN droplet_tags dt ON dt.tag = t.name {where}"
                " GROUP BY t.name ORDER BY t.name", args).fetchall()

    def delete_tag(self, name):
        with self._lock, self._db:
            deleted = self._db.execute("DELETE FROM tags WHERE name = ?", (name,)).rowcount
            self._db.execute("DELETE FROM droplet_tags WHERE tag = ?", (name,))
            # A firewall stops applying to a deleted tag's droplets.
            self._db.execute("DELETE FROM firewall_tags WHERE tag = ?", (name,))
        return deleted > 0

    def tag_droplets(self, name, droplet_ids):
        with self._lock, self._db:
            self._db.executemany("INSERT OR IGNORE INTO droplet_tags (tag, droplet_id)"
                                 " VALUES (?, ?)", [(name, i) for i in droplet_ids])

    def untag_droplets(self, name, droplet_ids):
        with self._lock, self._db:
            self._db.executemany("DELETE FROM droplet_tags WHERE tag = ? AND droplet_id = ?",
                                 [(name, i) for i in droplet_ids])

    def missing_tags(self, names):
        """The names in `names` that are not tags of the account, in order."""
        with self._lock:
            return [name for name in dict.fromkeys(names) if not self._tag_exists(name)]

    # vpcs

    def _seed_default_vpcs(self, restore):
        """Give every region its default VPC; `restore` also undoes renames."""
        on_conflict = ("DO UPDATE SET name = excluded.name, description = ''" if restore
                       else "DO NOTHING")
        self._db.executemany(
            "INSERT INTO vpcs (id, name, region, description, ip_range, created_at)"
            f" VALUES (?, ?, ?, '', ?, ?) ON CONFLICT (id) {on_conflict}",
            [(vpc_id, f"default-{region}", region, str(default_vpc_range(region)), time.time())
             for vpc_id, region in DEFAULT_VPC_IDS.items()])

    def _vpcs(self):
        return self._db.execute("SELECT * FROM vpcs ORDER BY created_at, id").fetchall()

    def get_vpc(self, vpc_id):
        with self._lock:
            return self._db.execute("SELECT * FROM vpcs WHERE id = ?", (vpc_id,)).fetchone()

    def list_vpcs(self, offset, limit):
        with self._lock:
            total = self._db.execute("SELECT COUNT(*) FROM vpcs").fetchone()[0]
            rows = self._db.execute("SELECT * FROM vpcs ORDER BY created_at, id LIMIT ? OFFSET ?",
                                    (limit, offset)).fetchall()
        return rows, total

    def add_vpc(self, make):
        """Insert the VPC `make(every VPC row)` returns as a dict of columns.
        It runs under the lock, so two creates can never take the same range."""
        with self._lock, self._db:
            vpc = make(self._vpcs())
            self._db.execute(
                "INSERT INTO vpcs (id, name, region, description, ip_range, created_at)"
                " VALUES (:id, :name, :region, :description, :ip_range, :created_at)", vpc)
            return self._db.execute("SELECT * FROM vpcs WHERE id = ?", (vpc["id"],)).fetchone()

    def change_vpc(self, vpc_id, change):
        """Set the (name, description) `change(row, other rows)` returns, under
        the lock so a rename cannot race another; None if there is no such VPC."""
        with self._lock, self._db:
            rows = self._vpcs()
            row = next((r for r in rows if r["id"] == vpc_id), None)
            if row is None:
                return None
            name, description = change(row, [r for r in rows if r["id"] != vpc_id])
            self._db.execute("UPDATE vpcs SET name = ?, description = ? WHERE id = ?",
                             (name, description, vpc_id))
            return self._db.execute("SELECT * FROM vpcs WHERE id = ?", (vpc_id,)).fetchone()

    def delete_vpc(self, vpc_id):
        """True if deleted, False if droplets are still in it, None if there is no such VPC."""
        with self._lock, self._db:
            if self._db.execute("SELECT 1 FROM vpcs WHERE id = ?", (vpc_id,)).fetchone() is None:
                return None
            if self._db.execute("SELECT 1 FROM droplets WHERE vpc_uuid = ? LIMIT 1",
                                (vpc_id,)).fetchone():
                return False
            self._db.execute("DELETE FROM vpcs WHERE id = ?", (vpc_id,))
        return True

    def vpc_droplets(self, vpc_id, offset, limit):
        """One page of the droplets in a VPC, in id order, and the total."""
        with self._lock:
            total = self._db.execute("SELECT COUNT(*) FROM droplets WHERE vpc_uuid = ?",
                                     (vpc_id,)).fetchone()[0]
            rows = self._db.execute("SELECT id, name, created_at FROM droplets WHERE vpc_uuid = ?"
                                    " ORDER BY id LIMIT ? OFFSET ?",
                                    (vpc_id, limit, offset)).fetchall()
        return rows, total

    # firewalls

    def add_firewall(self, spec, now):
        firewall_id = str(uuid.uuid4())
        with self._lock, self._db:
            self._db.execute("INSERT INTO firewalls (id, name, created_at, changed_at, inbound_rules,"
                             " outbound_rules) VALUES (?, ?, ?, ?, '[]', '[]')",
                             (firewall_id, spec.name, now, now))
            self._replace_firewall(firewall_id, spec, now)
        return firewall_id

    def replace_firewall(self, firewall_id, spec, now):
        """PUT: everything but the id and creation time; False if there is no such firewall."""
        with self._lock, self._db:
            if not self._firewall_exists(firewall_id):
                return False
            self._replace_firewall(firewall_id, spec, now)
        return True

    def _replace_firewall(self, firewall_id, spec, now):
        self._db.execute("UPDATE firewalls SET name = ?, inbound_rules = ?, outbound_rules = ?,"
                         " changed_at = ? WHERE id = ?",
                         (spec.name, json.dumps(spec.inbound_rules), json.dumps(spec.outbound_rules),
                          now, firewall_id))
        for table in FIREWALL_LINKS:
            self._db.execute(f"DELETE FROM {table} WHERE firewall_id = ?", (firewall_id,))
        self._link_firewall(firewall_id, "firewall_droplets", spec.droplet_ids, add=True)
        self._link_firewall(firewall_id, "firewall_tags", spec.tags, add=True)

    def _firewall_exists(self, firewall_id):
        return self._db.execute("SELECT 1 FROM firewalls WHERE id = ?",
                                (firewall_id,)).fetchone() is not None

    def firewall_exists(self, firewall_id):
        with self._lock:
            return self._firewall_exists(firewall_id)

    def _link_firewall(self, firewall_id, table, values, add):
        column = "droplet_id" if table == "firewall_droplets" else "tag"
        sql = (f"INSERT OR IGNORE INTO {table} (firewall_id, {column}) VALUES (?, ?)" if add
               else f"DELETE FROM {table} WHERE firewall_id = ? AND {column} = ?")
        self._db.executemany(sql, [(firewall_id, value) for value in values])

    def link_firewall(self, firewall_id, table, values, add, now):
        """Add or remove droplets or tags; False if there is no such firewall."""
        with self._lock, self._db:
            if not self._firewall_exists(firewall_id):
                return False
            self._link_firewall(firewall_id, table, values, add)
            self._db.execute("UPDATE firewalls SET changed_at = ? WHERE id = ?", (now, firewall_id))
        return True

    def change_firewall_rules(self, firewall_id, combine, inbound, outbound, now):
        """Set each rule list to `combine(current rules, given rules)`; False
        if there is no such firewall."""
        with self._lock, self._db:
            row = self._db.execute("SELECT inbound_rules, outbound_rules FROM firewalls"
                                   " WHERE id = ?", (firewall_id,)).fetchone()
            if row is None:
                return False
            self._db.execute("UPDATE firewalls SET inbound_rules = ?, outbound_rules = ?,"
                             " changed_at = ? WHERE id = ?",
                             (json.dumps(combine(json.loads(row[0]), inbound)),
                              json.dumps(combine(json.loads(row[1]), outbound)), now, firewall_id))
        return True

    def get_firewall(self, firewall_id):
        """(row, tags, droplet ids it applies to), or None."""
        with self._lock:
            row = self._db.execute("SELECT * FROM firewalls WHERE id = ?",
                                   (firewall_id,)).fetchone()
            return None if row is None else self._firewall_view(row)

    def list_firewalls(self, offset, limit):
        with self._lock:
            total = self._db.execute("SELECT COUNT(*) FROM firewalls").fetchone()[0]
            rows = self._db.execute("SELECT * FROM firewalls ORDER BY created_at, id"
                                    " LIMIT ? OFFSET ?", (limit, offset)).fetchall()
            return [self._firewall_view(row) for row in rows], total

    def _firewall_view(self, row):
        # The droplets come from the links at read time, so a droplet created
        # later with one of the firewall's tags is covered at once.
        tags = [r[0] for r in self._db.execute(
            "SELECT tag FROM firewall_tags WHERE firewall_id = ? ORDER BY tag", (row["id"],))]
        droplet_ids = [r[0] for r in self._db.execute(
            "SELECT fd.droplet_id FROM firewall_droplets fd JOIN droplets d ON d.id = fd.droplet_id"
            " WHERE fd.firewall_id = ? UNION SELECT dt.droplet_id FROM firewall_tags ft"
            " JOIN droplet_tags dt ON dt.tag = ft.tag WHERE ft.firewall_id = ? ORDER BY 1",
            (row["id"], row["id"]))]
        return row, tags, droplet_ids

    def delete_firewall(self, firewall_id):
        with self._lock, self._db:
            deleted = self._db.execute("DELETE FROM firewalls WHERE id = ?",
                                       (firewall_id,)).rowcount
            for table in FIREWALL_LINKS:
                self._db.execute(f"DELETE FROM {table} WHERE firewall_id = ?", (firewall_id,))
        return deleted > 0

    def firewalls_of(self, droplet_id):
        """Ids of the firewalls that apply to a droplet, directly or by tag, oldest first."""
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT id FROM firewalls WHERE id IN (SELECT firewall_id FROM firewall_droplets"
                " WHERE droplet_id = ? UNION SELECT ft.firewall_id FROM firewall_tags ft"
                " JOIN droplet_tags dt ON dt.tag = ft.tag AND dt.droplet_id = ?)"
                " ORDER BY created_at, id", (droplet_id, droplet_id))]
