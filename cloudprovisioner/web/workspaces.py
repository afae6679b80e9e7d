"""GET/POST /api/workspaces and GET /api/workspaces/<name>."""

from .. import workspaces
from .responses import Response, list_page, list_query


def list_workspaces(request):
    args = list_query(request, {})
    return list_page(request, "/workspaces", workspaces.listing(request.ctx, args), args, workspaces.represent)


def create_workspace(request):
    row = workspaces.create(request.ctx, request.fields())
    return Response(201, workspaces.represent(row), [("Location", request.url(f"/workspaces/{row['name']}"))])


def get_workspace(request):
    """The workspace, its servers' counts by status, and its live servers."""
    return Response(200, workspaces.summary(request.ctx, request.params["workspace_name"]))
