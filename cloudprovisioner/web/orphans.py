"""GET /api/admin/orphans."""

from .. import orphans
from .responses import Response


def list_orphans(request):
    """GET /api/admin/orphans (platform admins): what the monitor holds for a person."""
    return Response(200, [orphans.represent(row) for row in orphans.listing(request.ctx)])
