"""GET /api/operations, GET /api/operations/<id> and POST /api/operations/<id>/cancel."""

from .. import operations
from .responses import Response, list_page, list_query


def list_operations(request):
    """GET /api/operations: the tenant's, newest first; filters status, kind, target."""
    args = list_query(request, operations.list_schema())
    return list_page(request, "/operations", operations.listing(request.ctx, args), args, operations.represent)


def get_operation(request):
    return Response(200, operations.represent(operations.get(request.ctx, request.params["operation_id"])))


def cancel_operation(request):
    """POST /api/operations/<id>/cancel: only a create can be cancelled, and only before it finished."""
    row = operations.cancel(request.ctx, request.params["operation_id"])
    return Response(202, operations.represent(row))
