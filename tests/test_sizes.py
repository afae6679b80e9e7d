"""The cloud's sizes and prices, cached in the database by the monitor: exact micro-dollars, one listing per run at
most and only when the copy is older than CP_SIZES_MAX_AGE, and nothing but the cache on a request's path."""

import io

import pytest

from cloudprovisioner import monitor, sizes
from tests.support import knob, make_config


@pytest.mark.unit
@pytest.mark.parametrize(("dollars", "micro"), [
    (0.00893, 8930), (6.0, 6_000_000), (0.00744, 7440), (4, 4_000_000), (0.01786, 17860), (0, 0),
    (1234.56789, 1_234_567_890), (0.0000015, 2),
])
def test_prices_are_whole_micro_dollars(dollars, micro):
    assert sizes.micro(dollars) == micro


def run_monitor(values):
    out, err = io.StringIO(), io.StringIO()
    assert monitor.run_once(make_config(values), out, err) == 0, err.getvalue()
    return out.getvalue()


def size_listings(sandbox):
    stats = knob(sandbox, "GET", "/_sandbox/stats").json["requests"]
    return sum(count for call, count in stats.items() if "/v2/sizes" in call)


def test_the_monitor_caches_the_clouds_sizes_once_per_max_age(values, db, sandbox):
    assert db.one("SELECT COUNT(*) AS n FROM cloud_sizes")["n"] == 0
    assert run_monitor(values) == ""  # quietly
    row = sizes.known(db, "s-1vcpu-1gb")
    assert (row["vcpus"], row["memory_mb"], row["disk_gb"], row["price_monthly_micro"], row["available"]) == (
        1, 1024, 25, 6_000_000, 1)
    assert row["price_hourly_micro"] == 8930  # the local cloud's 6.0 / 672, to 5 places, as DigitalOcean's
    assert set(sizes.every(db, ["s-1vcpu-1gb", "s-2vcpu-2gb", "no-such-size"])) == {"s-1vcpu-1gb", "s-2vcpu-2gb"}
    listed = size_listings(sandbox)
    assert listed == 1

    run_monitor(values)
    assert size_listings(sandbox) == listed  # fresh: not listed again

    db.update("UPDATE cloud_sizes SET fetched_at = fetched_at - INTERVAL 3601 SECOND")
    run_monitor(values)
    assert size_listings(sandbox) == listed + 1
    assert not sizes.is_stale(db, 3600)


def test_a_cloud_failure_leaves_the_cache_as_it_was(values, db, sandbox):
    run_monitor(values)
    db.update("UPDATE cloud_sizes SET fetched_at = fetched_at - INTERVAL 7200 SECOND")
    before = db.query(f"SELECT {sizes.COLUMNS} FROM cloud_sizes ORDER BY slug")
    knob(sandbox, "POST", "/_sandbox/faults", {"path_prefix": "/v2/sizes", "status": 500, "count": 1000})
    out = run_monitor({**values, "CP_MONITOR_CLOUD_BUDGET": "3"})  # gives up after a retry or two
    assert "sizes and prices not refreshed" in out
    assert db.query(f"SELECT {sizes.COLUMNS} FROM cloud_sizes ORDER BY slug") == before
