"""POST /api/auth/register, GET /api/me, and GET/POST /api/users, PATCH/DELETE /api/users/<id>."""

from .. import accounts
from .responses import Response


def register(request):
    """POST /api/auth/register: a new tenant and its first user, its admin."""
    accounts.refuse_if_closed(request.config)  # closed is a 403 whatever the body is
    answer = accounts.register(request.ctx, request.fields())
    return Response(201, answer, [("Location", request.url("/me"))])


def me(request):
    return Response(200, accounts.me(request.ctx))


def list_users(request):
    return Response(200, [accounts.represent(row) for row in accounts.listing(request.ctx)])


def create_user(request):
    user = accounts.create_user(request.ctx, request.fields())
    return Response(201, user, [("Location", request.url(f"/users/{user['id']}"))])


def update_user(request):
    """PATCH /api/users/<id>: role, name, disabled. A tenant keeps at least one active admin."""
    return Response(200, accounts.update_user(request.ctx, request.params["user_id"], request.fields()))


def delete_user(request):
    """DELETE /api/users/<id>: the account goes (its email freed), its history stays."""
    accounts.delete_user(request.ctx, request.params["user_id"])
    return Response(204)
