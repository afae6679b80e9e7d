"""Personal API tokens for CI: named, optionally expiring, never stronger than their creator.

The token is shown once, at creation; only its SHA-256 is stored. It is sent
as `Authorization: Bearer cpt_...` like an access token.
"""

import secrets

from . import auth
from .errors import Problem
from .ids import new_id
from .responses import Response
from .validation import Field, integer, one_of, text, validate

COLUMNS = ("id, name, role, created_at, expires_at, revoked_at, "
           "expires_at IS NOT NULL AND expires_at <= UTC_TIMESTAMP(6) AS expired")


def represent(row):
    state = "revoked" if row["revoked_at"] else "expired" if row["expired"] else "active"
    return {"id": row["id"], "name": row["name"], "role": row["role"], "created_at": row["created_at"],
            "expires_at": row["expires_at"], "state": state}


def create_token(request):
    """POST /api/tokens {name, role?, expires_in_days?}: the secret is in this answer only."""
    principal = request.principal
    if principal.token_id is not None:
        raise Problem(403, "forbidden", "an API token cannot create API tokens; log in to make one")
    fields = validate(request.fields(), {
        "name": Field(text(100, allow_empty=False), required=True),
        "role": Field(one_of(auth.ROLES, "role"), default=principal.role),
        "expires_in_days": Field(integer(1, 3650)),
    })
    if auth.RANK[fields["role"]] > auth.RANK[principal.role]:
        from .errors import invalid
        raise invalid({"role": f"must be no higher than your own role ({principal.role})"})
    token_id = request.audit_target = new_id()
    secret = auth.API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    days = fields.get("expires_in_days")
    request.db.update(
        "INSERT INTO api_tokens (id, user_id, name, role, token_hash, created_at, expires_at) VALUES "
        "(%s, %s, %s, %s, %s, UTC_TIMESTAMP(6), "
        "IF(%s IS NULL, NULL, UTC_TIMESTAMP(6) + INTERVAL %s DAY))",
        (token_id, principal.user_id, fields["name"], fields["role"], auth.token_hash(secret), days, days or 0))
    row = _load(request, token_id)
    return Response(201, {**represent(row), "token": secret},
                    [("Location", request.url(f"/tokens/{token_id}")), ("Cache-Control", "no-store")])


def list_tokens(request):
    rows = request.db.query(f"SELECT {COLUMNS} FROM api_tokens WHERE user_id = %s ORDER BY id",
                            (request.principal.user_id,))
    return Response(200, [represent(row) for row in rows])


def delete_token(request):
    token_id = request.audit_target = request.params["token_id"]
    _load(request, token_id)
    request.db.update("UPDATE api_tokens SET revoked_at = UTC_TIMESTAMP(6) "
                      "WHERE id = %s AND revoked_at IS NULL", (token_id,))
    return Response(204)


def _load(request, token_id):
    """One of the caller's own tokens; anyone else's is unknown."""
    return request.db.one_or_404("token", f"SELECT {COLUMNS} FROM api_tokens WHERE id = %s AND user_id = %s",
                                 (token_id, request.principal.user_id))
