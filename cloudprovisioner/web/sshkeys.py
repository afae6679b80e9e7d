"""GET/POST /api/ssh-keys and GET/DELETE /api/ssh-keys/<id>."""

from .. import sshkeys
from ..validation import Field, one_of
from .responses import Response, list_page, list_query


def list_keys(request):
    """The tenant's keys, or (owner=me) the caller's own."""
    args = list_query(request, {"owner": Field(one_of(("me", "anyone"), "owner"), default="anyone")})
    return list_page(request, "/ssh-keys", sshkeys.listing(request.ctx, args), args, sshkeys.represent)


def get_key(request):
    return Response(200, sshkeys.represent(sshkeys.load(request.ctx, request.params["key_id"])))


def create_key(request):
    """201 with the key; the same key twice for one user is a 409."""
    row = sshkeys.create(request.ctx, request.fields())
    return Response(201, sshkeys.represent(row), [("Location", request.url(f"/ssh-keys/{row['id']}"))])


def delete_key(request):
    sshkeys.delete(request.ctx, request.params["key_id"])
    return Response(204)
