"""GET /api/costs (a tenant's) and GET /api/admin/costs (every tenant's, platform admins)."""

from .. import costs
from ..validation import validate
from .responses import Response


def _args(request, grouped):
    return validate({name: request.arg(name) for name in request.query}, costs.report_schema(grouped))


def get_costs(request):
    """GET /api/costs?month=YYYY-MM[&group_by=workspace|owner|server]: the tenant's month, to date and projected."""
    return Response(200, costs.report(request.ctx, _args(request, grouped=True)))


def get_platform_costs(request):
    """GET /api/admin/costs?month=YYYY-MM: every tenant's month, one line each."""
    return Response(200, costs.platform_report(request.ctx, _args(request, grouped=False)))
