"""What the service knows of itself: counters, the state the monitor records, the health report,
and every metric, all kept in (and read from) the database.

CGI processes live for one request, so counters live in MySQL: one upsert per request
(`http_requests_total`), a few per monitor run. Everything else a scrape reports is derived from
the tables at scrape time. Health makes no cloud call: it reads what the monitor last recorded.
"""

from . import SCHEMA_VERSION, __version__
from .errors import DomainError


def count(db, name, labels="", by=1):
    db.update("INSERT INTO counters (name, labels, value) VALUES (%s, %s, %s) "
              "ON DUPLICATE KEY UPDATE value = value + VALUES(value)", (name, labels, by))


def count_request(db, method, route, status):
    """http_requests_total{method and route, status class}: the one write every request adds."""
    count(db, "http_requests_total", f"{method} {route or 'unmatched'}|{status // 100}xx")


def remember(db, **values):
    for name, value in values.items():
        db.update("INSERT INTO service_state (name, value, updated_at) VALUES (%s, %s, UTC_TIMESTAMP(6)) "
                  "ON DUPLICATE KEY UPDATE value = VALUES(value), updated_at = VALUES(updated_at)",
                  (name, str(value)))



def schema_version(db):
    """The schema the database is at, or None when it cannot be read (no database, no table)."""
    try:
        row = db.one("SELECT MAX(version) AS version FROM schema_migrations")
    except DomainError:
        return None
    return row["version"] if row else None


def health(config, db):
    """healthy, degraded (the monitor is stale or never ran, or holds cloud objects for a person) or
    unhealthy (no database, wrong schema): the report, with its checks."""
    schema = schema_version(db)
    database = {"status": "ok" if schema is not None else "down", "schema_version": schema,
                "expected_schema_version": SCHEMA_VERSION}
    state = _state(db) if schema is not None else {}
    monitor = _monitor_check(state, config.monitor_max_age)
    ownership = _ownership_check(db, state) if schema is not None else _ownership_check(None, {})
    cloud = {"rate_limit_remaining": _int(state, "cloud.ratelimit_remaining"),
             "rate_limit_limit": _int(state, "cloud.ratelimit_limit"),
             "observed_at": state.get("cloud.ratelimit_remaining", (None, None))[1]}
    # No database or the wrong schema: nothing works. A stale monitor: requests work, nothing settles.
    # Orphans held, or destroys held by the breaker: nothing is lost yet, but a person must look.
    settled = monitor["status"] == "ok" and ownership["status"] == "ok"
    status = "unhealthy" if schema != SCHEMA_VERSION else "healthy" if settled else "degraded"
    return {"status": status, "version": __version__,
            "checks": {"database": database, "monitor": monitor, "cloud": cloud, "ownership": ownership}}


def _state(db):
    rows = db.query("SELECT name, value, updated_at, TIMESTAMPDIFF(SECOND, updated_at, UTC_TIMESTAMP(6)) AS age "
                    "FROM service_state")
    return {row["name"]: (row["value"], row["updated_at"], row["age"]) for row in rows}


def _monitor_check(state, max_age):
    last = state.get("monitor.last_success")
    if last is None:
        return {"status": "never", "last_success_at": None, "age_seconds": None, "max_age_seconds": max_age}
    _value, at, age = last
    return {"status": "ok" if age <= max_age else "stale", "last_success_at": at, "age_seconds": age,
            "max_age_seconds": max_age}


def _ownership_check(db, state):
    counts = {row["verdict"]: row["n"] for row in db.query(
        "SELECT verdict, COUNT(*) AS n FROM orphans WHERE approved_at IS NULL GROUP BY verdict")} if db else {}
    breaker = state.get("monitor.breaker", (None,))[0]
    attention = breaker or counts
    return {"status": "attention" if attention else "ok", "orphans_held": counts.get("held", 0),
            "awaiting_confirmation": counts.get("breaker", 0), "breaker": breaker}


def _int(state, name):
    value = state.get(name, (None,))[0]
    return int(value) if value is not None and value.lstrip("-").isdigit() else None



class Collector:
    """Every metric, read from the tables at scrape time: the whole platform's (servers by tenant, every
    request and login), for the platform's operators only (web/observability.py)."""

    def __init__(self, db):
        self.db = db

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        db = self.db
        servers = GaugeMetricFamily("cloudprovisioner_servers", "Servers by tenant and status.",
                                    labels=["tenant", "status"])
        for row in db.query("SELECT COALESCE(tenant_id, '') AS tenant, status, COUNT(*) AS n FROM servers "
                            "GROUP BY tenant_id, status"):
            servers.add_metric([row["tenant"], row["status"]], row["n"])
        yield servers
        operations = GaugeMetricFamily("cloudprovisioner_operations", "Operations by kind and status.",
                                       labels=["kind", "status"])
        for row in db.query("SELECT kind, status, COUNT(*) AS n FROM operations GROUP BY kind, status"):
            operations.add_metric([row["kind"], row["status"]], row["n"])
        yield operations
        yield from self._counters()
        yield from self._state(GaugeMetricFamily)
        failures = CounterMetricFamily("cloudprovisioner_login_failures", "Failed or refused logins.")
        failures.add_metric([], db.one("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'sessions.login' "
                                       "AND result <> 'ok'")["n"])
        yield failures
        orphans = GaugeMetricFamily("cloudprovisioner_orphans", "Cloud objects of this installation that no live "
                                    "row explains, held for a person, by kind and verdict (held or breaker).",
                                    labels=["kind", "verdict"])
        for row in db.query("SELECT kind, verdict, COUNT(*) AS n FROM orphans GROUP BY kind, verdict"):
            orphans.add_metric([row["kind"], row["verdict"]], row["n"])
        yield orphans
        yield self._spend(GaugeMetricFamily)
        tripped = GaugeMetricFamily("cloudprovisioner_monitor_breaker_tripped",
                                    "1 while the circuit breaker holds the monitor's destroys.")
        tripped.add_metric([], 1 if db.one("SELECT 1 AS held FROM service_state WHERE name = 'monitor.breaker'")
                           else 0)
        yield tripped

    def _spend(self, family):
        from . import costs
        spend = family("cloudprovisioner_tenant_spend_usd", "What each tenant's servers cost this calendar month "
                       "(UTC) to date, in USD, by DigitalOcean's billing rule and the cached prices.",
                       labels=["tenant"])
        for tenant_id, micro in sorted(costs.tenant_spend_micro(self.db).items()):
            spend.add_metric([tenant_id], costs.dollars(micro))
        return spend

    def _counters(self):
        from prometheus_client.core import CounterMetricFamily
        rows = self.db.query("SELECT name, labels, value FROM counters ORDER BY name, labels")
        requests = CounterMetricFamily("cloudprovisioner_http_requests", "HTTP requests by route and status class.",
                                       labels=["method", "route", "status_class"])
        runs = CounterMetricFamily("cloudprovisioner_monitor_runs", "Monitor runs by result.", labels=["result"])
        calls = CounterMetricFamily("cloudprovisioner_cloud_api_calls", "Cloud API calls made by the monitor.")
        total_calls = 0
        for row in rows:
            if row["name"] == "http_requests_total":
                route, _, status_class = row["labels"].rpartition("|")
                method, _, template = route.partition(" ")
                requests.add_metric([method, template, status_class], row["value"])
            elif row["name"] == "monitor_runs_total":
                runs.add_metric([row["labels"]], row["value"])
            elif row["name"] == "cloud_api_calls_total":
                total_calls += row["value"]
        calls.add_metric([], total_calls)
        yield from (requests, runs, calls)

    def _state(self, gauge):
        state = {row["name"]: row["value"] for row in self.db.query("SELECT name, value FROM service_state")}
        for name, key, help_text in (
                ("cloudprovisioner_monitor_last_duration_seconds", "monitor.last_duration",
                 "How long the monitor's last run took."),
                ("cloudprovisioner_monitor_last_success_timestamp_seconds", "monitor.last_success_epoch",
                 "When the monitor last finished a run (Unix time)."),
                ("cloudprovisioner_cloud_ratelimit_remaining", "cloud.ratelimit_remaining",
                 "The cloud API's last reported ratelimit-remaining."),
                ("cloudprovisioner_cloud_ratelimit_limit", "cloud.ratelimit_limit",
                 "The cloud API's last reported ratelimit-limit.")):
            if key in state:
                metric = gauge(name, help_text)
                metric.add_metric([], float(state[key]))
                yield metric
