"""GET/POST /api/tokens and DELETE /api/tokens/<id>: the caller's personal API tokens."""

from .. import apitokens
from .responses import Response


def create_token(request):
    """POST /api/tokens {name, role?, expires_in_days?}: the secret is in this answer only."""
    apitokens.refuse_token_callers(request.principal)  # before the body is read: a 403 whatever it holds
    row, secret = apitokens.create(request.ctx, request.fields())
    return Response(201, {**apitokens.represent(row), "token": secret},
                    [("Location", request.url(f"/tokens/{row['id']}")), ("Cache-Control", "no-store")])


def list_tokens(request):
    return Response(200, [apitokens.represent(row) for row in apitokens.listing(request.ctx)])


def delete_token(request):
    apitokens.revoke(request.ctx, request.params["token_id"])
    return Response(204)
