"""The cloud's droplet sizes, cached in the database: what each gives (vCPUs, memory, disk) and costs.

The monitor refreshes the cache (`refresh_if_stale`: one listing per run at most, when the cache is older
than CP_SIZES_MAX_AGE); requests only read it (`known`, `every`). Prices are whole micro-dollars.
"""

MICRO = 1_000_000  # micro-dollars in a dollar

COLUMNS = "slug, vcpus, memory_mb, disk_gb, price_hourly_micro, price_monthly_micro, available, fetched_at"


def micro(dollars):
    """A price in dollars as the cloud gives it (a JSON number: 0.00893, 6.0) as whole micro-dollars. Through
    its decimal text, so that 0.00893 is 8930 and not 8929.999..."""
    whole, _, fraction = f"{float(dollars):.6f}".partition(".")
    sign = -1 if whole.startswith("-") else 1
    return sign * (abs(int(whole)) * MICRO + int(fraction))


def _row(size):
    return (size["slug"], int(size["vcpus"]), int(size["memory"]), int(size["disk"]), micro(size["price_hourly"]),
            micro(size["price_monthly"]), int(bool(size.get("available", True))))


def store(db, listed):
    """Write a /v2/sizes listing into the cache (every size, the whole list at one time); answers how many."""
    rows = [_row(size) for size in listed]
    if rows:
        db.update("INSERT INTO cloud_sizes (slug, vcpus, memory_mb, disk_gb, price_hourly_micro, "
                  "price_monthly_micro, available, fetched_at) VALUES "
                  + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6))"] * len(rows))
                  + " ON DUPLICATE KEY UPDATE vcpus = VALUES(vcpus), memory_mb = VALUES(memory_mb), "
                  "disk_gb = VALUES(disk_gb), price_hourly_micro = VALUES(price_hourly_micro), "
                  "price_monthly_micro = VALUES(price_monthly_micro), available = VALUES(available), "
                  "fetched_at = VALUES(fetched_at)", [value for row in rows for value in row])
    return len(rows)


def is_stale(db, max_age):
    """True when the cache is empty or its newest listing is older than `max_age` seconds."""
    row = db.one("SELECT TIMESTAMPDIFF(SECOND, MAX(fetched_at), UTC_TIMESTAMP(6)) AS age FROM cloud_sizes")
    return row["age"] is None or row["age"] >= max_age


def refresh_if_stale(db, cloud, max_age):
    """The monitor's: list the cloud's sizes into the cache when it is stale (one cloud call); answers how
    many sizes were stored, 0 when the cache was fresh."""
    if not is_stale(db, max_age):
        return 0
    return store(db, cloud.list_all("sizes", "sizes"))


def known(db, slug):
    """The cached size (a row of COLUMNS), or None when the monitor has not listed it (yet)."""
    return db.one(f"SELECT {COLUMNS} FROM cloud_sizes WHERE slug = %s", (slug,))


def every(db, slugs):
    """{slug: row} for those of `slugs` the cache holds."""
    if not slugs:
        return {}
    marks = ", ".join(["%s"] * len(slugs))
    return {row["slug"]: row for row in db.query(f"SELECT {COLUMNS} FROM cloud_sizes WHERE slug IN ({marks})",
                                                 tuple(slugs))}
