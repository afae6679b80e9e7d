"""A local, stateful stand-in for the DigitalOcean API v2: the "sandbox".

The demo and the end-to-end tests provision against this server on loopback
instead of the real cloud. It serves the part of API v2 that CloudProvisioner
and python-digitalocean use, shaped like DigitalOcean's own response models
(../shared/do-openapi/), and keeps droplets, actions, SSH keys, tags, VPCs
and firewalls in SQLite so they survive a restart. Knobs under /_sandbox/
inject faults, tune timings, count API calls, bulk-load droplets and show what
a droplet was created with; they need no token because the server only ever
listens on loopback.

    python -m cloudprovisioner.sandbox --port 0 --state /tmp/sandbox.sqlite3

Standard library only, so it starts fast and runs with any Python 3.11+.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import re
import signal
import socket
import sqlite3
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

# ---------------------------------------------------------------- catalog

REGION_NAMES = {
    "nyc1": "New York 1", "nyc3": "New York 3", "sfo3": "San Francisco 3",
    "ams3": "Amsterdam 3", "fra1": "Frankfurt 1", "lon1": "London 1",
    "sgp1": "Singapore 1", "tor1": "Toronto 1",
}
REGION_FEATURES = ["backups", "ipv6", "metadata", "install_agent", "storage",
                   "image_transfer"]

# slug: (memory MiB, vcpus, disk GiB, transfer TiB, USD per month)
SIZE_SPECS = {
    "s-1vcpu-512mb-10gb": (512, 1, 10, 0.5, 4.0),
    "s-1vcpu-1gb": (1024, 1, 25, 1.0, 6.0),
    "s-1vcpu-2gb": (2048, 1, 50, 2.0, 12.0),
    "s-2vcpu-2gb": (2048, 2, 60, 3.0, 18.0),
    "s-2vcpu-4gb": (4096, 2, 80, 4.0, 24.0),
    "s-4vcpu-8gb": (8192, 4, 160, 5.0, 48.0),
}
HOURS_PER_MONTH = 672  # DigitalOcean prices a month as 28 days

# id: (slug, name, distribution, min_disk_size GiB, size_gigabytes, created_at)
IMAGE_SPECS = {
    163000001: ("ubuntu-24-04-x64", "24.04 (LTS) x64", "Ubuntu", 7, 2.36,
                "2024-07-01T14:20:05Z"),
    163000002: ("ubuntu-22-04-x64", "22.04 (LTS) x64", "Ubuntu", 7, 2.28,
                "2024-07-01T14:18:41Z"),
    163000003: ("debian-12-x64", "12 x64", "Debian", 7, 1.03, "2024-07-02T09:11:52Z"),
    163000004: ("rockylinux-9-x64", "9 x64", "Rocky Linux", 10, 1.61,
                "2024-07-03T11:47:10Z"),
}

DEFAULT_REGION = "nyc3"  # the API lets a create omit the region
BULK_DEFAULTS = {"region": DEFAULT_REGION, "size": "s-1vcpu-1gb",
                 "image": "ubuntu-24-04-x64", "name_prefix": "bulk"}


def _size(slug, memory, vcpus, disk, transfer, monthly):
    return {
        "slug": slug, "memory": memory, "vcpus": vcpus, "disk": disk,
        "transfer": transfer, "price_monthly": monthly,
        "price_hourly": round(monthly / HOURS_PER_MONTH, 5),
        "regions": sorted(REGION_NAMES), "available": True, "description": "Basic",
        "disk_info": [{"type": "local", "size": {"amount": disk, "unit": "gib"}}],
    }


def _image(image_id, slug, name, distribution, min_disk, gigabytes, created_at):
    return {
        "id": image_id, "name": name, "type": "base", "distribution": distribution,
        "slug": slug, "public": True, "regions": sorted(REGION_NAMES),
        "created_at": created_at, "min_disk_size": min_disk,
        "size_gigabytes": gigabytes, "description": f"{distribution} {name}",
        "tags": [], "status": "available", "error_message": "",
    }


SIZES = {slug: _size(slug, *spec) for slug, spec in SIZE_SPECS.items()}
REGIONS = {
    slug: {"name": name, "slug": slug, "features": REGION_FEATURES,
           "available": True, "sizes": list(SIZES)}
    for slug, name in REGION_NAMES.items()
}
IMAGES = {image_id: _image(image_id, *spec) for image_id, spec in IMAGE_SPECS.items()}
IMAGES_BY_SLUG = {image["slug"]: image for image in IMAGES.values()}

ACCOUNT = {
    # Sized for the 10,000-droplet load tests; the sandbox does not enforce it.
    "droplet_limit": 10000, "floating_ip_limit": 3,
    "email": "sandbox@example.com", "name": "Sandbox",
    "uuid": "5a9d2f3e8c1b4d7f9e0a6b2c4d8e1f3a5b7c9d0e",
    "email_verified": True, "status": "active", "status_message": "",
    "team": {"uuid": "0c4f7a2e9b1d3c5e7f8a0b2d4c6e8f1a3b5d7c9e", "name": "Sandbox Team"},
}

# ---------------------------------------------------------------- addresses

# Public addresses come from the documentation ranges (RFC 5737) so nothing
# the sandbox hands out can ever be a real host. .1 is each range's gateway.
PUBLIC_V4_NETS = tuple(ipaddress.ip_network(net) for net in
                       ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
HOSTS_PER_PUBLIC_NET = 253  # .2 to .254
PUBLIC_V6_NET = ipaddress.ip_network("2001:db8:1::/64")  # RFC 3849


def _v4(net, offset, kind):
    return {"ip_address": str(net.network_address + offset), "netmask": str(net.netmask),
            "gateway": str(net.network_address + 1), "type": kind}


def public_v4(droplet_id):
    """Consecutive ids get distinct addresses; the 759 addresses then repeat."""
    index = droplet_id % (len(PUBLIC_V4_NETS) * HOSTS_PER_PUBLIC_NET)
    net = PUBLIC_V4_NETS[index // HOSTS_PER_PUBLIC_NET]
    return _v4(net, 2 + index % HOSTS_PER_PUBLIC_NET, "public")


def private_v4(droplet_id, ip_range):
    """An address inside the droplet's VPC, skipping the network address, the
    gateway (.1) and the broadcast address; consecutive ids get distinct
    addresses until the range wraps around."""
    net = ipaddress.ip_network(ip_range)
    return _v4(net, 2 + droplet_id % (net.num_addresses - 3), "private")


def public_v6(droplet_id):
    base = PUBLIC_V6_NET.network_address
    return {"ip_address": str(base + 2 + droplet_id), "netmask": 64,
            "gateway": str(base + 1), "type": "public"}


# VPC ranges the sandbox picks itself: each region's default VPC is a /20
# inside 10.16.0.0/12, and a VPC created without an ip_range gets a free /20
# from 10.100.0.0/14. Both stay clear of 172.16.0.0/12, where the product
# allocates tenant VPCs, so its choices never collide with ours.
DEFAULT_VPC_NET = ipaddress.ip_network("10.16.0.0/12")
AUTO_VPC_NET = ipaddress.ip_network("10.100.0.0/14")
AUTO_VPC_PREFIX = 20
RFC1918_NETS = tuple(ipaddress.ip_network(net) for net in
                     ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
VPC_PREFIXES = range(16, 29)  # /16 (largest) to /28 (smallest), as DigitalOcean allows


def default_vpc_uuid(region):
    # Stable per region, like the account's default VPC on DigitalOcean.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cloudprovisioner-sandbox:vpc:{region}"))


def default_vpc_range(region):
    """The region's default VPC: the n-th /20 of DEFAULT_VPC_NET, n its catalog position."""
    size = 2 ** (32 - AUTO_VPC_PREFIX)
    start = DEFAULT_VPC_NET.network_address + list(REGION_NAMES).index(region) * size
    return ipaddress.ip_network(f"{start}/{AUTO_VPC_PREFIX}")


DEFAULT_VPC_IDS = {default_vpc_uuid(region): region for region in REGION_NAMES}


# ---------------------------------------------------------------- errors


class ApiError(Exception):
    """An error answer in DigitalOcean's shape: {"id", "message", "request_id"}."""

    def __init__(self, status, error_id, message, headers=None):
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message
        self.headers = headers or {}


def is_number(text):
    """Only ASCII digits: str.isdigit() also accepts "²", which int() rejects."""
    return text.isascii() and text.isdigit()


def not_found():
    return ApiError(404, "not_found", "The resource you were accessing could not be found.")


def unprocessable(message):
    return ApiError(422, "unprocessable_entity", message)


def bad_request(message):
    return ApiError(400, "bad_request", message)


def forbidden(message):
    return ApiError(403, "forbidden", message)


# ---------------------------------------------------------------- storage

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
"""
# Links from a firewall to what it applies to; they go with the firewall.
FIREWALL_LINKS = ("firewall_droplets", "firewall_tags")

# A droplet row with its VPC's range, which its private address comes from.
DROPLET_COLUMNS = ("d.*, v.ip_range AS vpc_ip_range FROM droplets d"
                   " LEFT JOIN vpcs v ON v.id = d.vpc_uuid")

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
            for table in ("droplets", "droplet_tags", "tags", "actions", "ssh_keys",
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

    def list_droplets(self, tag, name, offset, limit):
        """One page of (row, tags) in id order, and the total."""
        source, where, args = "droplets d", "", []
        if tag is not None:
            source = "droplet_tags t JOIN droplets d ON d.id = t.droplet_id AND t.tag = ?"
            args.append(tag)
        if name is not None:
            where = " WHERE d.name = ?"
            args.append(name)
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM {source}{where}", args).fetchone()[0]
            rows = self._db.execute(
                f"SELECT d.*, v.ip_range AS vpc_ip_range FROM {source}"
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
            self._db.execute("DELETE FROM droplet_tags WHERE droplet_id = ?", (droplet_id,))
            self._db.execute("DELETE FROM firewall_droplets WHERE droplet_id = ?", (droplet_id,))
        return deleted > 0

    def delete_tagged_droplets(self, tag):
        """Delete every droplet with the tag; False if there is no such tag."""
        with self._lock, self._db:
            if not self._tag_exists(tag):
                return False
            self._db.execute("DELETE FROM droplets WHERE id IN"
                             " (SELECT droplet_id FROM droplet_tags WHERE tag = ?)", (tag,))
            for table in ("droplet_tags", "firewall_droplets"):
                self._db.execute(f"DELETE FROM {table} WHERE droplet_id NOT IN"
                                 " (SELECT id FROM droplets)")
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


# ---------------------------------------------------------------- rendering

ACTION_SECONDS = 1.0  # how long a power action stays in progress, at most


def iso(timestamp):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


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
    return {"v4": [public_v4(row["id"]), private_v4(row["id"], ip_range)], "v6": v6}


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


def render_key(row):
    return {"id": row["id"], "fingerprint": row["fingerprint"],
            "public_key": row["public_key"], "name": row["name"]}


def render_vpc(row):
    return {"id": row["id"], "urn": f"do:vpc:{row['id']}", "name": row["name"],
            "description": row["description"], "region": row["region"],
            "ip_range": row["ip_range"], "default": row["id"] in DEFAULT_VPC_IDS,
            "created_at": iso(row["created_at"])}


def render_vpc_member(row):
    return {"urn": f"do:droplet:{row['id']}", "name": row["name"],
            "created_at": iso(row["created_at"])}


def render_firewall(view, now, activate_after):
    """The firewall as the API shows it: "waiting", with a pending change per
    droplet, until the activation delay has passed since the last change."""
    row, tags, droplet_ids = view
    waiting = now < row["changed_at"] + activate_after
    return {
        "id": row["id"], "name": row["name"], "status": "waiting" if waiting else "succeeded",
        "created_at": iso(row["created_at"]),
        "pending_changes": [{"droplet_id": droplet_id, "removing": False, "status": "waiting"}
                            for droplet_id in droplet_ids] if waiting else [],
        "inbound_rules": json.loads(row["inbound_rules"]),
        "outbound_rules": json.loads(row["outbound_rules"]),
        "droplet_ids": droplet_ids, "tags": tags,
    }


def render_tag(summary, base_url):
    name, count, last_droplet_id = summary
    droplets = {"count": count}
    if last_droplet_id is not None:
        droplets["last_tagged_uri"] = f"{base_url}/v2/droplets/{last_droplet_id}"
    empty = {"count": 0}
    return {"name": name, "resources": {
        **droplets, "droplets": droplets, "images": empty, "volumes": empty,
        "volume_snapshots": empty, "databases": empty}}


# ---------------------------------------------------------------- validation

NAME_RE = re.compile(r"^[a-zA-Z0-9]?[a-z0-9A-Z.\-]*[a-z0-9A-Z]$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_\-\:]+$")
MAX_NAME = 255
MAX_USER_DATA = 64 * 1024
MAX_MULTI_CREATE = 10
MAX_BULK = 100000


def _checked_name(name, pattern, required, invalid):
    """One name rule for droplets, VPCs and firewalls: present, a string, at most 255, matching."""
    if name is None:
        raise unprocessable(required)
    if not isinstance(name, str) or len(name) > MAX_NAME or not pattern.fullmatch(name):
        raise unprocessable(invalid.format(name=name))
    return name


def check_name(name):
    _checked_name(name, NAME_RE, "Name is required.", "Name {name!r} is invalid: only valid hostname characters"
                  " are allowed (a-z, A-Z, 0-9, . and -), at most 255.")


def check_tag(tag):
    if not isinstance(tag, str) or len(tag) > MAX_NAME or not TAG_RE.fullmatch(tag):
        raise unprocessable(f"Tag {tag!r} is invalid: tags may contain letters, numbers,"
                            " colons, dashes and underscores, at most 255.")


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


def find_image(ref):
    if isinstance(ref, bool):
        return None
    if isinstance(ref, str) and is_number(ref):
        ref = int(ref)
    if isinstance(ref, int):
        return IMAGES.get(ref)
    return IMAGES_BY_SLUG.get(ref) if isinstance(ref, str) else None


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


def _parse_tags(tags):
    if tags is None:
        return ()
    if not isinstance(tags, list):
        raise unprocessable("tags must be a list of tag names.")
    for tag in tags:
        check_tag(tag)
    return tuple(dict.fromkeys(tags))


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
        tags=_parse_tags(body.get("tags")))


def ssh_fingerprint(public_key):
    """The MD5 fingerprint DigitalOcean shows (aa:bb:...), or 422 for a bad key."""
    fields = public_key.split() if isinstance(public_key, str) else []
    digest = hashlib.md5(_key_blob(fields), usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _key_blob(fields):
    # A key line is "<type> <base64 blob> [comment]", and the blob starts with
    # the length-prefixed type name again: checking that catches truncated and
    # mis-pasted keys, not just bad base64.
    if len(fields) >= 2:
        try:
            blob = base64.b64decode(fields[1], validate=True)
        except binascii.Error:
            blob = b""
        type_end = 4 + int.from_bytes(blob[:4], "big")
        if blob[4:type_end] == fields[0].encode() and len(blob) > type_end:
            return blob
    raise unprocessable("Key invalid, key should be of the format `type key [comment]`.")


# ---------------------------------------------------------------- VPC and firewall validation

VPC_NAME_RE = re.compile(r"^[a-zA-Z0-9\-\.]+$")
MAX_DESCRIPTION = 255


def check_vpc_name(name):
    return _checked_name(name, VPC_NAME_RE, "name is required.", "VPC name {name!r} is invalid: only letters,"
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


FIREWALL_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\.-]+$")
PROTOCOLS = ("tcp", "udp", "icmp")
MAX_PORT = 65535
# Rule lists and the key of each rule's targets.
RULE_LISTS = {"inbound_rules": "sources", "outbound_rules": "destinations"}


def check_firewall_name(name):
    return _checked_name(name, FIREWALL_NAME_RE, "name is required.", "Firewall name {name!r} is invalid: a"
                         " letter or digit, then at least one letter, digit, period or dash, at most 255.")


def _parse_ports(protocol, ports, where):
    if protocol == "icmp":
        # ICMP has no ports: DigitalOcean takes none and shows "0".
        if ports not in (None, "", "0"):
            raise unprocessable(f"{where}.ports must be left out for icmp rules.")
        return "0"
    bounds = ports.split("-") if isinstance(ports, str) else []
    if ports == "0" or (len(bounds) in (1, 2) and all(map(is_number, bounds))
                        and 1 <= int(bounds[0]) <= int(bounds[-1]) <= MAX_PORT):
        return ports
    raise unprocessable(f'{where}.ports {ports!r} is invalid: give a port ("22"), a range'
                        ' ("8000-9000") or "0" for all ports.')


def _check_address(value, where):
    try:
        # Host bits are allowed ("1.2.3.4/8"): only the shape is checked.
        ipaddress.ip_network(value if isinstance(value, str) else "-", strict=False)
    except ValueError:
        raise unprocessable(f"{where}: {value!r} is not an IPv4 or IPv6 address or CIDR.") from None


def _check_droplet_id(value, where):
    if isinstance(value, bool) or not isinstance(value, int):
        raise unprocessable(f"{where}: {value!r} is not a droplet id.")


def _no_such(kind):
    """A check for ids of things the sandbox never has, so any id is unknown."""
    def check(value, where):
        if not isinstance(value, str):
            raise unprocessable(f"{where}: {value!r} is not an id.")
        raise unprocessable(f"{where}: {kind} {value!r} was not found (the sandbox has none).")
    return check


# What each list in a rule's sources or destinations holds, in the order the API shows them.
TARGET_CHECKS = {
    "addresses": _check_address, "droplet_ids": _check_droplet_id,
    "load_balancer_uids": _no_such("load balancer"),
    "kubernetes_ids": _no_such("Kubernetes cluster"),
    "tags": lambda value, where: check_tag(value),
}


def _parse_targets(targets, where):
    if not isinstance(targets, dict):
        raise unprocessable(f"You specified an invalid type for {where}: it must be an object.")
    parsed = {}
    for kind, check in TARGET_CHECKS.items():
        values = targets.get(kind)
        if values is None:
            continue
        if not isinstance(values, list):
            raise unprocessable(f"{where}.{kind} must be a list.")
        for value in values:
            check(value, f"{where}.{kind}")
        if values:  # empty lists are left out, as DigitalOcean shows rules
            parsed[kind] = list(dict.fromkeys(values))
    if not parsed:
        raise unprocessable(f"{where} is empty: give at least one address, droplet id or tag.")
    return parsed


def _parse_rule(rule, where, target_key):
    if not isinstance(rule, dict):
        raise unprocessable(f"{where} must be an object with protocol, ports and {target_key}.")
    protocol = rule.get("protocol")
    if not isinstance(protocol, str) or protocol not in PROTOCOLS:
        raise unprocessable(f"{where}.protocol {protocol!r} is invalid: use tcp, udp or icmp.")
    return {"protocol": protocol, "ports": _parse_ports(protocol, rule.get("ports"), where),
            target_key: _parse_targets(rule.get(target_key), f"{where}.{target_key}")}


def parse_rules(body):
    """(inbound, outbound) rules of a request, in the shape the API shows them;
    there must be at least one."""
    parsed = []
    for key, target_key in RULE_LISTS.items():
        rules = body.get(key) or []
        if not isinstance(rules, list):
            raise unprocessable(f"{key} must be a list of rules.")
        parsed.append([_parse_rule(rule, f"{key}[{n}]", target_key) for n, rule in enumerate(rules)])
    if not any(parsed):
        raise unprocessable("At least one inbound or outbound rule is required.")
    return parsed


def rule_tags(rules):
    return [tag for rule in rules for key in RULE_LISTS.values() for tag in rule.get(key, {}).get("tags", [])]


def parse_droplet_ids(body):
    droplet_ids = body.get("droplet_ids")
    if droplet_ids is None:
        return ()
    if not isinstance(droplet_ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in droplet_ids):
        raise unprocessable("droplet_ids must be a list of droplet ids.")
    return tuple(dict.fromkeys(droplet_ids))


def require_droplets(store, droplet_ids):
    missing = set(droplet_ids) - store.existing_droplet_ids(droplet_ids) if droplet_ids else ()
    if missing:
        raise unprocessable(f"Droplet {min(missing)} does not exist.")


def require_tags(store, tags):
    # The model's existing_tags_array: a firewall only refers to tags that exist.
    missing = store.missing_tags(tags) if tags else []
    if missing:
        raise unprocessable(f"Tag {missing[0]!r} does not exist: create it first"
                            " (POST /v2/tags).")


def parse_firewall(store, body):
    """Validate a firewall create or PUT body; what it omits is reset to empty."""
    name = check_firewall_name(body.get("name"))
    inbound, outbound = parse_rules(body)
    droplet_ids = parse_droplet_ids(body)
    tags = _parse_tags(body.get("tags"))
    require_droplets(store, droplet_ids)
    require_tags(store, [*tags, *rule_tags(inbound + outbound)])
    return FirewallSpec(name, tuple(inbound), tuple(outbound), droplet_ids, tags)


def _int_field(body, key, default, low, high):
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_request(f"{key} must be an integer from {low} to {high}.")
    return value


def _number_field(body, key, default, low):
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        raise bad_request(f"{key} must be a number of at least {low}.")
    return float(value)


# ---------------------------------------------------------------- request plumbing

MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 20


@dataclass
class Request:
    method: str
    path: str  # no query, no trailing slash
    query: dict[str, str]
    raw_body: bytes
    base_url: str  # scheme and authority, for the absolute links DO returns
    params: dict[str, str] = field(default_factory=dict)  # from the path template

    def json(self):
        if not self.raw_body.strip():
            return {}
        try:
            body = json.loads(self.raw_body)
        except ValueError:
            raise bad_request("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise unprocessable("The request body must be a JSON object.")
        return body

    def int_param(self, name):
        return int(self.params[name])

    def query_int(self, name, default):
        value = self.query.get(name)
        if value is None:
            return default
        if not is_number(value):
            raise unprocessable(f"{name} must be a positive integer.")
        return int(value)


@dataclass
class Reply:
    status: int
    payload: object = None
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(error):
    body = {"id": error.error_id, "message": error.message, "request_id": str(uuid.uuid4())}
    return Reply(error.status, body, dict(error.headers))


def paging(req):
    page = max(req.query_int("page", 1), 1)
    per_page = min(max(req.query_int("per_page", DEFAULT_PER_PAGE), 1), MAX_PER_PAGE)
    return page, per_page


def page_links(req, page, per_page, total):
    """links.pages as DigitalOcean builds them: absolute URLs that keep the
    request's filters; first/prev only after page 1, next/last only before
    the last page."""
    last = max(1, -(-total // per_page))
    filters = {k: v for k, v in req.query.items() if k not in ("page", "per_page")}

    def url(number):
        query = urlencode({"page": number, "per_page": per_page, **filters})
        return f"{req.base_url}{req.path}?{query}"
    pages = {}
    if page > 1:
        pages.update(first=url(1), prev=url(page - 1))
    if page < last:
        pages.update(next=url(page + 1), last=url(last))
    return {"pages": pages} if pages else {}


def listing(req, key, items, total, page, per_page):
    return Reply(200, {key: items, "links": page_links(req, page, per_page, total),
                       "meta": {"total": total}})


def static_listing(req, key, items):
    """A listing of a small in-memory collection, paged like the rest."""
    page, per_page = paging(req)
    start = (page - 1) * per_page
    return listing(req, key, items[start:start + per_page], len(items), page, per_page)


class Route:
    # Numeric placeholders only match digits, so /v2/droplets/abc is a 404.
    NUMERIC = {"id", "action_id"}

    def __init__(self, method, template, handler):
        self.method = method
        self.template = template
        self.handler = handler
        pattern = re.sub(r"\{(\w+)\}", self._placeholder, template)
        self.regex = re.compile(pattern)

    def _placeholder(self, match):
        name = match.group(1)
        return f"(?P<{name}>\\d+)" if name in self.NUMERIC else f"(?P<{name}>[^/]+)"


def find_route(routes, method, path):
    """(route or None, path params, whether some route has this path)."""
    path_known = False
    for route in routes:
        match = route.regex.fullmatch(path)
        if match:
            if route.method == method:
                return route, {k: unquote(v) for k, v in match.groupdict().items()}, True
            path_known = True
    return None, {}, path_known


# ---------------------------------------------------------------- API v2 handlers


def get_account(app, req):
    return Reply(200, {"account": ACCOUNT})


def list_regions(app, req):
    return static_listing(req, "regions", list(REGIONS.values()))


def list_sizes(app, req):
    return static_listing(req, "sizes", list(SIZES.values()))


def list_images(app, req):
    # Every catalog image is a public distribution image: other types and
    # private (user) images are empty lists.
    kind = req.query.get("type")
    private = req.query.get("private") == "true"
    images = [] if private or kind not in (None, "distribution") else list(IMAGES.values())
    return static_listing(req, "images", images)


def get_image(app, req):
    image = find_image(req.params["image"])
    if image is None:
        raise not_found()
    return Reply(200, {"image": image})


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


def list_droplets(app, req):
    page, per_page = paging(req)
    found, total = app.store.list_droplets(req.query.get("tag_name"), req.query.get("name"),
                                           (page - 1) * per_page, per_page)
    now = time.time()
    droplets = [_render(app, item, now) for item in found]
    return listing(req, "droplets", droplets, total, page, per_page)


def get_droplet(app, req):
    found = app.store.get_droplet(req.int_param("id"))
    if found is None:
        raise not_found()
    return Reply(200, {"droplet": _render(app, found, time.time())})


def delete_droplet(app, req):
    if not app.store.delete_droplet(req.int_param("id")):
        raise not_found()
    return Reply(204)


def delete_droplets_by_tag(app, req):
    # The tag must be in the query string, as on DigitalOcean: the JSON body
    # python-digitalocean sends with every DELETE is ignored, so a tag there
    # can never turn into "delete every droplet".
    tag = req.query.get("tag_name")
    if not tag:
        raise unprocessable("DELETE /v2/droplets needs the tag_name query parameter.")
    if not app.store.delete_tagged_droplets(tag):
        raise not_found()
    return Reply(204)


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


def list_keys(app, req):
    return static_listing(req, "ssh_keys", [render_key(row) for row in app.store.list_keys()])


def _key_name(body):
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise unprocessable("name is required (at most 255 characters).")
    return name


def create_key(app, req):
    body = req.json()
    name = _key_name(body)
    fingerprint = ssh_fingerprint(body.get("public_key"))
    row = app.store.add_key(name, body["public_key"].strip(), fingerprint)
    if row is None:
        raise unprocessable("SSH Key is already in use on your account.")
    return Reply(201, {"ssh_key": render_key(row)})


def _existing_key(app, req):
    row = app.store.find_key(req.params["key"])
    if row is None:
        raise not_found()
    return row


def get_key(app, req):
    return Reply(200, {"ssh_key": render_key(_existing_key(app, req))})


def update_key(app, req):
    row = _existing_key(app, req)
    app.store.rename_key(row["id"], _key_name(req.json()))
    return Reply(200, {"ssh_key": render_key(app.store.find_key(row["id"]))})


def delete_key(app, req):
    app.store.delete_key(_existing_key(app, req)["id"])
    return Reply(204)


def list_tags(app, req):
    tags = [render_tag(summary, req.base_url) for summary in app.store.tag_summaries()]
    return static_listing(req, "tags", tags)


def create_tag(app, req):
    name = req.json().get("name")
    check_tag(name)
    app.store.create_tag(name)
    return Reply(201, {"tag": render_tag(app.store.tag_summaries(name)[0], req.base_url)})


def get_tag(app, req):
    summaries = app.store.tag_summaries(req.params["name"])
    if not summaries:
        raise not_found()
    return Reply(200, {"tag": render_tag(summaries[0], req.base_url)})


def delete_tag(app, req):
    if not app.store.delete_tag(req.params["name"]):
        raise not_found()
    return Reply(204)


def _tagged_droplet_ids(app, req):
    """The droplet ids in a tag (un)assign body, all existing, for an existing tag."""
    resources = req.json().get("resources")
    if not isinstance(resources, list) or not resources:
        raise unprocessable("resources must be a non-empty list.")
    ids = []
    for item in resources:
        if not isinstance(item, dict) or item.get("resource_type") != "droplet":
            raise unprocessable("Only droplets can be tagged in the sandbox.")
        ids.append(item.get("resource_id"))
    if not all(is_number(str(i)) for i in ids):
        raise unprocessable("resource_id must be a droplet id.")
    ids = [int(i) for i in ids]
    if not app.store.tag_exists(req.params["name"]):
        raise not_found()
    if set(ids) - app.store.existing_droplet_ids(ids):
        raise not_found()
    return ids


def tag_resources(app, req):
    app.store.tag_droplets(req.params["name"], _tagged_droplet_ids(app, req))
    return Reply(204)


def untag_resources(app, req):
    app.store.untag_droplets(req.params["name"], _tagged_droplet_ids(app, req))
    return Reply(204)


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


def _firewall_reply(app, status, firewall_id):
    view = app.store.get_firewall(firewall_id)
    if view is None:
        raise not_found()
    return Reply(status, {"firewall": render_firewall(view, time.time(), app.activate_after)})


def _existing_firewall(app, req):
    firewall_id = req.params["firewall_id"]
    if not app.store.firewall_exists(firewall_id):
        raise not_found()
    return firewall_id


def list_firewalls(app, req):
    page, per_page = paging(req)
    views, total = app.store.list_firewalls((page - 1) * per_page, per_page)
    now = time.time()
    firewalls = [render_firewall(view, now, app.activate_after) for view in views]
    return listing(req, "firewalls", firewalls, total, page, per_page)


def create_firewall(app, req):
    spec = parse_firewall(app.store, req.json())
    return _firewall_reply(app, 202, app.store.add_firewall(spec, time.time()))


def get_firewall(app, req):
    return _firewall_reply(app, 200, req.params["firewall_id"])


def update_firewall(app, req):
    firewall_id = _existing_firewall(app, req)
    spec = parse_firewall(app.store, req.json())
    if not app.store.replace_firewall(firewall_id, spec, time.time()):
        raise not_found()
    return _firewall_reply(app, 200, firewall_id)


def delete_firewall(app, req):
    if not app.store.delete_firewall(req.params["firewall_id"]):
        raise not_found()
    return Reply(204)


def _required(body, key):
    if body.get(key) is None:
        raise unprocessable(f"{key} is required.")
    return body


def _link_firewall(app, req, table, add):
    """Add or remove droplets or tags; only additions must name existing ones."""
    firewall_id = _existing_firewall(app, req)
    body = req.json()
    if table == "firewall_tags":
        values = _parse_tags(_required(body, "tags")["tags"])
        if add:
            require_tags(app.store, values)
    else:
        values = parse_droplet_ids(_required(body, "droplet_ids"))
        if add:
            require_droplets(app.store, values)
    if not app.store.link_firewall(firewall_id, table, values, add, time.time()):
        raise not_found()
    return Reply(204)


def add_firewall_tags(app, req):
    return _link_firewall(app, req, "firewall_tags", add=True)


def remove_firewall_tags(app, req):
    return _link_firewall(app, req, "firewall_tags", add=False)


def add_firewall_droplets(app, req):
    return _link_firewall(app, req, "firewall_droplets", add=True)


def remove_firewall_droplets(app, req):
    return _link_firewall(app, req, "firewall_droplets", add=False)


def with_rules(rules, added):
    """`rules` and then each added rule not already there."""
    merged = list(rules)
    merged.extend(rule for n, rule in enumerate(added) if rule not in rules and rule not in added[:n])
    return merged


def without_rules(rules, removed):
    # A rule goes when it equals one given; given rules that match none are ignored.
    return [rule for rule in rules if rule not in removed]


def _change_rules(app, req, combine):
    firewall_id = _existing_firewall(app, req)
    inbound, outbound = parse_rules(req.json())
    if combine is with_rules:  # removing may name a tag deleted since
        require_tags(app.store, rule_tags(inbound + outbound))
    if not app.store.change_firewall_rules(firewall_id, combine, inbound, outbound, time.time()):
        raise not_found()
    return Reply(204)


def add_firewall_rules(app, req):
    return _change_rules(app, req, with_rules)


def remove_firewall_rules(app, req):
    return _change_rules(app, req, without_rules)


API_ROUTES = [
    Route("GET", "/v2/account", get_account),
    Route("GET", "/v2/account/keys", list_keys),
    Route("POST", "/v2/account/keys", create_key),
    Route("GET", "/v2/account/keys/{key}", get_key),
    Route("PUT", "/v2/account/keys/{key}", update_key),
    Route("DELETE", "/v2/account/keys/{key}", delete_key),
    Route("GET", "/v2/regions", list_regions),
    Route("GET", "/v2/sizes", list_sizes),
    Route("GET", "/v2/images", list_images),
    Route("GET", "/v2/images/{image}", get_image),
    Route("GET", "/v2/droplets", list_droplets),
    Route("POST", "/v2/droplets", create_droplets),
    Route("DELETE", "/v2/droplets", delete_droplets_by_tag),
    Route("GET", "/v2/droplets/{id}", get_droplet),
    Route("DELETE", "/v2/droplets/{id}", delete_droplet),
    Route("GET", "/v2/droplets/{id}/actions", list_droplet_actions),
    Route("POST", "/v2/droplets/{id}/actions", create_droplet_action),
    Route("GET", "/v2/droplets/{id}/actions/{action_id}", get_droplet_action),
    Route("GET", "/v2/actions", list_actions),
    Route("GET", "/v2/actions/{id}", get_action),
    Route("GET", "/v2/tags", list_tags),
    Route("POST", "/v2/tags", create_tag),
    Route("GET", "/v2/tags/{name}", get_tag),
    Route("DELETE", "/v2/tags/{name}", delete_tag),
    Route("POST", "/v2/tags/{name}/resources", tag_resources),
    Route("DELETE", "/v2/tags/{name}/resources", untag_resources),
    Route("GET", "/v2/vpcs", list_vpcs),
    Route("POST", "/v2/vpcs", create_vpc),
    Route("GET", "/v2/vpcs/{vpc_id}", get_vpc),
    Route("PUT", "/v2/vpcs/{vpc_id}", replace_vpc),
    Route("PATCH", "/v2/vpcs/{vpc_id}", patch_vpc),
    Route("DELETE", "/v2/vpcs/{vpc_id}", delete_vpc),
    Route("GET", "/v2/vpcs/{vpc_id}/members", list_vpc_members),
    Route("GET", "/v2/firewalls", list_firewalls),
    Route("POST", "/v2/firewalls", create_firewall),
    Route("GET", "/v2/firewalls/{firewall_id}", get_firewall),
    Route("PUT", "/v2/firewalls/{firewall_id}", update_firewall),
    Route("DELETE", "/v2/firewalls/{firewall_id}", delete_firewall),
    Route("POST", "/v2/firewalls/{firewall_id}/tags", add_firewall_tags),
    Route("DELETE", "/v2/firewalls/{firewall_id}/tags", remove_firewall_tags),
    Route("POST", "/v2/firewalls/{firewall_id}/droplets", add_firewall_droplets),
    Route("DELETE", "/v2/firewalls/{firewall_id}/droplets", remove_firewall_droplets),
    Route("POST", "/v2/firewalls/{firewall_id}/rules", add_firewall_rules),
    Route("DELETE", "/v2/firewalls/{firewall_id}/rules", remove_firewall_rules),
]

# ---------------------------------------------------------------- rate limit, faults, stats


class RateLimiter:
    """DigitalOcean's hourly quota as headers: every request is remembered for
    an hour. It is reported, not enforced (a 429 comes from a fault rule)."""

    WINDOW = 3600.0

    def __init__(self, limit=5000):
        self.limit = limit
        self._hits = deque()
        self._lock = threading.Lock()

    def hit(self, now):
        with self._lock:
            self._hits.append(now)
            return self._headers(now)

    def headers(self, now):
        with self._lock:
            return self._headers(now)

    def _headers(self, now):
        while self._hits and self._hits[0] <= now - self.WINDOW:
            self._hits.popleft()
        reset = self._hits[0] + self.WINDOW if self._hits else now
        return {"ratelimit-limit": str(self.limit),
                "ratelimit-remaining": str(max(0, self.limit - len(self._hits))),
                "ratelimit-reset": str(int(reset))}

    def configure(self, limit, remaining, now):
        """Change the limit and/or pretend limit - remaining calls were just made."""
        with self._lock:
            if limit is not None:
                self.limit = limit
            if remaining is not None:
                self._hits = deque([now] * max(0, self.limit - remaining))

    def clear(self):
        with self._lock:
            self._hits.clear()


FAULT_STATUSES = {429, 500, 502, 503}
FAULT_BODIES = {
    429: ("too_many_requests", "API Rate limit exceeded."),
    500: ("server_error", "Server was unable to give you a response."),
}


def parse_fault(body):
    status = body.get("status")
    if status is not None and status not in FAULT_STATUSES:
        raise bad_request(f"status must be one of {sorted(FAULT_STATUSES)}.")
    delay = _number_field(body, "delay", 0.0, 0.0)
    if status is None and not delay:
        raise bad_request("A fault needs a status, a delay, or both.")
    method, prefix = body.get("method"), body.get("path_prefix", "/v2")
    if method is not None and not isinstance(method, str):
        raise bad_request("method must be a string.")
    if not isinstance(prefix, str) or not prefix.startswith("/v2"):
        raise bad_request("path_prefix must start with /v2.")
    return {
        "status": status, "count": _int_field(body, "count", 1, 1, 10**9),
        "path_prefix": prefix, "method": method.upper() if method else None,
        "delay": delay, "retry_after": _int_field(body, "retry_after", 1, 0, 86400),
        # Let this many matching requests through first, e.g. to fail page 2.
        "skip": _int_field(body, "skip", 0, 0, 10**9),
    }


class Faults:
    """Rules that make the next matching /v2 requests fail or stall."""

    def __init__(self):
        self._rules = []
        self._lock = threading.Lock()

    def add(self, rule):
        with self._lock:
            self._rules.append(rule)

    def list(self):
        with self._lock:
            return [dict(rule) for rule in self._rules]

    def clear(self):
        with self._lock:
            self._rules.clear()

    def take(self, method, path):
        """The rule this request triggers, if any; consumes one use of it."""
        with self._lock:
            for rule in self._rules:
                if path.startswith(rule["path_prefix"]) and rule["method"] in (None, method):
                    return self._consume(rule)
        return None

    def _consume(self, rule):
        if rule["skip"]:
            rule["skip"] -= 1
            return None
        rule["count"] -= 1
        if not rule["count"]:
            self._rules.remove(rule)
        return dict(rule)


def fault_reply(rule):
    error_id, message = FAULT_BODIES.get(rule["status"], FAULT_BODIES[500])
    headers = {}
    if rule["status"] == 429:
        headers = {"retry-after": str(rule["retry_after"]), "ratelimit-remaining": "0"}
    return error_reply(ApiError(rule["status"], error_id, message, headers))


class Stats:
    """API calls counted by "METHOD /path/{template}"."""

    def __init__(self):
        self._counts = Counter()
        self._lock = threading.Lock()

    def count(self, key):
        with self._lock:
            self._counts[key] += 1

    def snapshot(self):
        with self._lock:
            return {"requests": dict(sorted(self._counts.items())),
                    "total": sum(self._counts.values())}

    def clear(self):
        with self._lock:
            self._counts.clear()


# ---------------------------------------------------------------- knob handlers


def add_fault(app, req):
    rule = parse_fault(req.json())
    app.faults.add(rule)
    return Reply(201, {"fault": rule})


def list_faults(app, req):
    return Reply(200, {"faults": app.faults.list()})


def clear_faults(app, req):
    app.faults.clear()
    return Reply(204)


def _config(app):
    quota = app.limiter.headers(time.time())
    return {"activate_after": app.activate_after, "ratelimit_limit": app.limiter.limit,
            "ratelimit_remaining": int(quota["ratelimit-remaining"])}


def get_config(app, req):
    return Reply(200, _config(app))


def set_config(app, req):
    body = req.json()
    unknown = set(body) - {"activate_after", "ratelimit_limit", "ratelimit_remaining"}
    if unknown:
        raise bad_request(f"Unknown settings: {', '.join(sorted(unknown))}.")
    activate_after = _number_field(body, "activate_after", None, 0.0)
    limit = _int_field(body, "ratelimit_limit", app.limiter.limit, 1, 10**9)
    remaining = body.get("ratelimit_remaining")
    if remaining is not None:
        remaining = _int_field(body, "ratelimit_remaining", 0, 0, limit)
    if activate_after is not None:
        app.activate_after = activate_after
    app.limiter.configure(limit, remaining, time.time())
    return Reply(200, _config(app))


def get_stats(app, req):
    return Reply(200, app.stats.snapshot())


def clear_stats(app, req):
    app.stats.clear()
    return Reply(204)


def reset(app, req):
    """Forget every droplet, action, key, tag, firewall and VPC but the
    default ones, the fault rules, the call counts and the quota used; the
    config stays."""
    app.store.reset()
    app.faults.clear()
    app.stats.clear()
    app.limiter.clear()
    return Reply(204)


def bulk_droplets(app, req):
    """Create `count` droplets named <name_prefix>-1..N in one transaction;
    the body may also carry any droplet create option (tags, region, ...), and
    `tag_each`: one more tag per droplet (e.g. the row tag a service gives each)."""
    body = {**BULK_DEFAULTS, **req.json()}
    tag_each = body.pop("tag_each", None)
    count = _int_field(body, "count", None, 1, MAX_BULK)
    prefix = body["name_prefix"]
    if not isinstance(prefix, str):
        raise bad_request("name_prefix must be a string.")
    if tag_each is not None and (not isinstance(tag_each, list) or len(tag_each) != count
                                 or not all(isinstance(t, str) and TAG_RE.fullmatch(t) for t in tag_each)):
        raise bad_request("tag_each must be a list of count valid tags.")
    names = [f"{prefix}-{n}" for n in range(1, count + 1)]
    check_name(names[-1])  # the longest
    created = app.store.create_droplets(parse_spec(app.store, body), names, time.time(), tag_each)
    return Reply(201, {"ids": [droplet_id for droplet_id, _ in created]})


def droplet_facts(app, req):
    """What DigitalOcean was told about a droplet but never shows back (its
    user_data and keys), and the firewalls that apply to it now, so product
    tests can assert them."""
    found = app.store.get_droplet(req.int_param("id"))
    if found is None:
        raise not_found()
    row, tags = found
    return Reply(200, {"id": row["id"], "name": row["name"], "user_data": row["user_data"],
                       "ssh_keys": json.loads(row["ssh_keys"]), "vpc_uuid": row["vpc_uuid"],
                       "tags": tags, "firewall_ids": app.store.firewalls_of(row["id"])})


KNOB_ROUTES = [
    Route("GET", "/_sandbox/faults", list_faults),
    Route("POST", "/_sandbox/faults", add_fault),
    Route("DELETE", "/_sandbox/faults", clear_faults),
    Route("GET", "/_sandbox/config", get_config),
    Route("POST", "/_sandbox/config", set_config),
    Route("GET", "/_sandbox/stats", get_stats),
    Route("DELETE", "/_sandbox/stats", clear_stats),
    Route("POST", "/_sandbox/reset", reset),
    Route("POST", "/_sandbox/droplets/bulk", bulk_droplets),
    Route("GET", "/_sandbox/droplets/{id}", droplet_facts),
]

# ---------------------------------------------------------------- the application


class Sandbox:
    """Routes a request to its handler, with auth, quota headers, faults and
    call counting for /v2."""

    def __init__(self, store, activate_after=5.0, token=None):
        self.store = store
        self.activate_after = float(activate_after)
        self.token = token
        self.limiter = RateLimiter()
        self.faults = Faults()
        self.stats = Stats()

    def handle(self, method, target, headers, body, base_url):
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        req = Request(method, path, query, body, base_url)
        if path == "/v2" or path.startswith("/v2/"):
            return self._api(req, headers.get("Authorization") or "")
        return self._run(*find_route(KNOB_ROUTES, method, path), req)

    def _api(self, req, authorization):
        quota = self.limiter.hit(time.time())
        route, params, path_known = find_route(API_ROUTES, req.method, req.path)
        self.stats.count(f"{req.method} {route.template if route else req.path}")
        reply = self._injected_fault(req)
        if reply is None and not self._authenticated(authorization):
            reply = error_reply(ApiError(401, "unauthorized", "Unable to authenticate you"))
        if reply is None:
            reply = self._run(route, params, path_known, req)
        for name, value in quota.items():
            reply.headers.setdefault(name, value)
        return reply

    def _injected_fault(self, req):
        rule = self.faults.take(req.method, req.path)
        if rule is None:
            return None
        time.sleep(rule["delay"])
        return None if rule["status"] is None else fault_reply(rule)

    def _authenticated(self, authorization):
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        return self.token is None or hmac.compare_digest(token.encode(), self.token.encode())

    def _run(self, route, params, path_known, req):
        try:
            if route is None:
                if path_known:
                    raise ApiError(405, "method_not_allowed",
                                   f"{req.method} is not allowed on {req.path}.")
                raise not_found()
            req.params = params
            return route.handler(self, req)
        except ApiError as error:
            return error_reply(error)
        except Exception:  # a bug: answer like DO's 500, details to stderr
            traceback.print_exc()
            return error_reply(ApiError(500, "server_error",
                                        "Server was unable to give you a response."))


# ---------------------------------------------------------------- HTTP server


class _HTTPHandler(BaseHTTPRequestHandler):
    # Keep-alive, so creating thousands of droplets one by one does not cost a
    # TCP handshake each; idle connections are dropped after `timeout`. Headers
    # and body go out as separate writes: without TCP_NODELAY, Nagle's
    # algorithm meets the client's delayed ACK and every reply waits ~40 ms.
    protocol_version = "HTTP/1.1"
    timeout = 120
    disable_nagle_algorithm = True
    server_version = "cloudprovisioner-sandbox"

    def do_GET(self):
        self._respond()

    def do_POST(self):
        self._respond()

    def do_PUT(self):
        self._respond()

    def do_DELETE(self):
        self._respond()

    def do_PATCH(self):
        self._respond()

    def _respond(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        host = self.headers.get("Host") or ":".join(map(str, self.server.server_address[:2]))
        self._send(self.server.sandbox.handle(self.command, self.path, self.headers, body,
                                              f"http://{host}"))

    def _send(self, reply):
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        data = b""
        if reply.status != 204:
            data = json.dumps(reply.payload).encode()
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code="-", size="-"):
        # No access log: harnesses may pipe our output without reading it, and
        # a line per request would fill the pipe and stall the server.
        pass


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True  # never wait for idle keep-alive connections on exit
    request_queue_size = 128  # the default 5 refuses bursts of parallel clients

    def __init__(self, address, sandbox):
        super().__init__(address, _HTTPHandler)
        self.sandbox = sandbox

    def handle_error(self, request, client_address):
        # Clients dropping keep-alive connections, or hanging up on a delayed
        # reply after their timeout, is routine: no traceback for that.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def require_loopback(host):
    # The knobs have no authentication, so the sandbox must never be
    # reachable from another machine.
    if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
        raise ValueError(f"the sandbox only listens on loopback, not on {host}")


def build_server(host, port, state_path, activate_after=5.0, token=None):
    """A bound, not yet serving, SandboxServer."""
    require_loopback(host)
    return SandboxServer((host, port), Sandbox(Store(state_path), activate_after, token))


def serve(host, port, state_path, activate_after=5.0, token=None):
    """Serve until interrupted; print the ready line harnesses wait for."""
    server = build_server(host, port, state_path, activate_after, token)
    bound_host, bound_port = server.server_address[:2]
    print(f"sandbox listening on http://{bound_host}:{bound_port}/v2/", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        server.sandbox.store.close()


def _parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m cloudprovisioner.sandbox",
                                     description="Local DigitalOcean API v2 sandbox.")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--state", required=True, help="SQLite file holding the state")
    parser.add_argument("--activate-after", type=float, default=5.0, metavar="SECONDS",
                        help="seconds a new droplet stays 'new' (default 5)")
    parser.add_argument("--token", help="the only accepted bearer token (default: any)")
    return parser.parse_args(argv)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(0)  # unwinds serve_forever, so serve() closes the database


def main(argv=None):
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        serve(args.host, args.port, args.state, args.activate_after, args.token)
    except (ValueError, OSError, sqlite3.Error) as error:  # not loopback, port taken, bad --state
        print(f"sandbox: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
