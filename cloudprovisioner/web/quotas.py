"""GET /api/quota (the caller's tenant), GET/PATCH /api/tenants/<id>/quota (platform admins)."""

from .. import quotas
from .responses import Response


def get_own_quota(request):
    """GET /api/quota: the tenant's quotas, each with its use now."""
    ctx = request.ctx
    return Response(200, quotas.report(ctx.db, ctx.config, ctx.tenant_id))


def get_tenant_quota(request):
    """GET /api/tenants/<id>/quota (platform admins): any tenant's quotas."""
    return Response(200, quotas.tenant_report(request.ctx, request.params["tenant_id"]))


def set_tenant_quota(request):
    """PATCH /api/tenants/<id>/quota (platform admins): override quotas; null restores the default."""
    return Response(200, quotas.set_overrides(request.ctx, request.params["tenant_id"], request.fields()))
