"""Health, version, metrics and the OpenAPI document.

What they report is telemetry.py's; these render it.
"""

import hmac
import os

from .. import __version__, telemetry
from .responses import NO_STORE, Response

# os.path, not pathlib (~5 ms to import): /health and /version are CGI requests like any other.
HERE = os.path.dirname(os.path.dirname(__file__))
OPENAPI_DOCUMENT = os.path.join(HERE, "openapi.json")
REVISION_FILE = os.path.join(HERE, "REVISION")  # written by `make install` from git


# --- GET /api/openapi.json and /api/version ---

def openapi_document(request):
    response = Response(200)
    with open(OPENAPI_DOCUMENT, "rb") as document:
        response.body = document.read()
    response.headers.append(("Content-Type", "application/json"))
    return response


def version(request):
    try:
        with open(REVISION_FILE, encoding="ascii") as handle:
            revision = handle.read().strip()
    except OSError:
        revision = None
    return Response(200, {"version": __version__, "revision": revision or None,
                          "schema_version": telemetry.schema_version(request.db)})


# --- GET /health (for load balancers) and GET /api/health (for clients made from the document) ---

def health(request):
    """The health report: 503 when unhealthy, so a load balancer takes the host out."""
    report = telemetry.health(request.config, request.db)
    return Response(503 if report["status"] == "unhealthy" else 200, report, [NO_STORE])


# --- GET /api/metrics ---

def metrics(request):
    """Prometheus text format, for a platform admin or the configured scrape token: every tenant's figures
    are in it, so a tenant's own admin is refused (auth.PLATFORM_PERMISSIONS)."""
    from .. import auth
    token = request.bearer_token() or ""
    scrape_token = request.config.metrics_token
    if not (scrape_token and hmac.compare_digest(token.encode(), scrape_token.encode())):
        request.principal = auth.authenticate(request.db, request.config, token or None)
        auth.authorize(request.principal, "metrics:read")
    from prometheus_client import CollectorRegistry, generate_latest
    registry = CollectorRegistry(auto_describe=False)
    registry.register(telemetry.Collector(request.db))
    response = Response(200)
    response.body = generate_latest(registry)
    # The classic text format (0.0.4) that every Prometheus reads; generate_latest writes it.
    response.headers.append(("Content-Type", "text/plain; version=0.0.4; charset=utf-8"))
    return response
