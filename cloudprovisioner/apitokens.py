"""Personal API tokens for CI: named, optionally expiring, never stronger than their creator.

The token is shown once, at creation; only its SHA-256 is stored. It is sent
as `Authorization: Bearer cpt_...` like an access token. Tenant admins see and
revoke any user's tokens in their tenant; disabling or deleting a user revokes
theirs for good.
"""

import secrets

from . import auth
from .errors import Forbidden, invalid
from .ids import new_id
from .validation import Field, integer, one_of, text, validate

COLUMNS = ("id, name, role, created_at, expires_at, revoked_at, "
           "expires_at IS NOT NULL AND expires_at <= UTC_TIMESTAMP(6) AS expired")


def represent(row):
    state = "revoked" if row["revoked_at"] else "expired" if row["expired"] else "active"
    return {"id": row["id"], "name": row["name"], "role": row["role"], "created_at": row["created_at"],
            "expires_at": row["expires_at"], "state": state}


def refuse_token_callers(principal):
    """Forbidden to a caller authenticated by an API token: only a login session makes tokens."""
    if principal.token_id is not None:
        raise Forbidden("an API token cannot create API tokens; log in to make one")


def create(ctx, fields):
    """A new token {name, role?, expires_in_days?} of the caller's: (its row, its secret), the secret shown
    this once and stored only as its digest."""
    principal = ctx.principal
    refuse_token_callers(principal)
    fields = validate(fields, {
        "name": Field(text(100, allow_empty=False), required=True),
        "role": Field(one_of(auth.ROLES, "role"), default=principal.role),
        "expires_in_days": Field(integer(1, 3650)),
    })
    if auth.RANK[fields["role"]] > auth.RANK[principal.role]:
        raise invalid({"role": f"must be no higher than your own role ({principal.role})"})
    token_id = ctx.target = new_id()
    secret = auth.API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    days = fields.get("expires_in_days")
    ctx.db.update(
        "INSERT INTO api_tokens (id, user_id, name, role, token_hash, created_at, expires_at) VALUES "
        "(%s, %s, %s, %s, %s, UTC_TIMESTAMP(6), "
        "IF(%s IS NULL, NULL, UTC_TIMESTAMP(6) + INTERVAL %s DAY))",
        (token_id, principal.user_id, fields["name"], fields["role"], auth.token_hash(secret), days, days or 0))
    return _load(ctx, token_id, principal.user_id), secret


def listing(ctx):
    """Every token of the caller's (rows), revoked and expired ones included."""
    return ctx.db.query(f"SELECT {COLUMNS} FROM api_tokens WHERE user_id = %s ORDER BY id",
                        (ctx.principal.user_id,))


def revoke(ctx, token_id):
    ctx.target = token_id
    _load(ctx, token_id, ctx.principal.user_id)
    _revoke(ctx.db, token_id)


def user_listing(ctx, user_id):
    """Every token of a user of the caller's tenant (rows), revoked and expired ones included."""
    _tenant_user(ctx, user_id)
    return ctx.db.query(f"SELECT {COLUMNS} FROM api_tokens WHERE user_id = %s ORDER BY id", (user_id,))


def revoke_users_token(ctx, user_id, token_id):
    """Revoke a token of a user of the caller's tenant (an admin's doing)."""
    ctx.target = token_id
    _tenant_user(ctx, user_id)
    _load(ctx, token_id, user_id)
    _revoke(ctx.db, token_id)


def revoke_all(db, user_id):
    """Every live token of the user revoked (the user is disabled or deleted)."""
    db.update("UPDATE api_tokens SET revoked_at = UTC_TIMESTAMP(6) WHERE user_id = %s AND revoked_at IS NULL",
              (user_id,))


def _revoke(db, token_id):
    db.update("UPDATE api_tokens SET revoked_at = UTC_TIMESTAMP(6) WHERE id = %s AND revoked_at IS NULL",
              (token_id,))


def _tenant_user(ctx, user_id):
    """NotFound unless `user_id` is a live user of the caller's tenant (another tenant's is unknown too)."""
    ctx.db.existing("user", "SELECT id FROM users WHERE id = %s AND tenant_id = %s AND deleted_at IS NULL",
                    (user_id, ctx.tenant_id))


def _load(ctx, token_id, user_id):
    """One of the user's tokens; anyone else's is unknown."""
    return ctx.db.existing("token", f"SELECT {COLUMNS} FROM api_tokens WHERE id = %s AND user_id = %s",
                           (token_id, user_id))
