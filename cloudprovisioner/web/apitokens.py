"""GET/POST /api/tokens and DELETE /api/tokens/<id>: the caller's personal API tokens; GET
/api/users/<id>/tokens and DELETE /api/users/<id>/tokens/<token_id>: any user's, for the tenant's admins."""

from .. import apitokens
from .responses import NO_STORE, Response


def create_token(request):
    """POST /api/tokens {name, role?, expires_in_days?}: the secret is in this answer only."""
    apitokens.refuse_token_callers(request.principal)  # before the body is read: a 403 whatever it holds
    row, secret = apitokens.create(request.ctx, request.fields())
    return Response(201, {**apitokens.represent(row), "token": secret},
                    [("Location", request.url(f"/tokens/{row['id']}")), NO_STORE])


def list_tokens(request):
    return Response(200, [apitokens.represent(row) for row in apitokens.listing(request.ctx)])


def delete_token(request):
    apitokens.revoke(request.ctx, request.params["token_id"])
    return Response(204)


def list_user_tokens(request):
    """GET /api/users/<id>/tokens: a user's tokens, for the tenant's admins."""
    rows = apitokens.user_listing(request.ctx, request.params["user_id"])
    return Response(200, [apitokens.represent(row) for row in rows])


def revoke_user_token(request):
    """DELETE /api/users/<id>/tokens/<token_id>: an admin revokes a user's token."""
    apitokens.revoke_users_token(request.ctx, request.params["user_id"], request.params["token_id"])
    return Response(204)
