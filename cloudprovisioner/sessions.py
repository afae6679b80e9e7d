"""Login sessions: login, refresh (rotating), logout, and login throttling.

A session is one family of refresh tokens (RFC 9700 4.14.2): each refresh
token is used once and replaced; presenting a used one again means it was
stolen or replayed, and the whole session is revoked. Access tokens are
short-lived JWTs naming their session, so revoking the session ends them too.
"""

import secrets
import time

from . import accounts, auth
from .errors import Problem
from .ids import new_id
from .responses import Response
from .validation import Field, text, validate

WRONG_CREDENTIALS = "the email or password is wrong"


def login(request):
    """POST /api/auth/login {email, password} -> access and refresh tokens."""
    config, db = request.config, request.db
    fields = validate(request.fields(), {"email": Field(text(254), required=True),
                                         "password": Field(text(1024), required=True)})
    email = fields["email"].strip().lower()
    request.audit_target = email
    scopes = [f"email:{email}", f"addr:{request.environ.get('REMOTE_ADDR', '')}"]
    _refuse_if_blocked(db, scopes)
    user = db.one("SELECT id, tenant_id, role, disabled, password_hash FROM users "
                  "WHERE email = %s AND deleted_at IS NULL", (email,))
    if user is not None:
        request.audit_actor = (user["tenant_id"], user["id"])
    matches = accounts.check_password(config, fields["password"], user and user["password_hash"])
    if not matches or user["disabled"]:
        _count_failure(db, config, scopes)
        raise auth.unauthorized(WRONG_CREDENTIALS, error=None)
    db.update("DELETE FROM login_throttle WHERE scope = %s", (scopes[0],))
    session_id = new_id()
    db.update("INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES "
              "(%s, %s, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL %s SECOND)",
              (session_id, user["id"], config.session_max_age))
    return Response(200, _tokens(config, db, user, session_id), [("Cache-Control", "no-store")])


def refresh(request):
    """POST /api/auth/refresh {refresh_token} -> a new pair; the old refresh token dies."""
    config, db = request.config, request.db
    fields = validate(request.fields(), {"refresh_token": Field(text(200), required=True)})
    digest = auth.token_hash(fields["refresh_token"])
    with db.transaction():
        row = db.one(
            "SELECT r.session_id, r.used_at, r.expires_at <= UTC_TIMESTAMP(6) AS expired, s.revoked_at, "
            "s.expires_at <= UTC_TIMESTAMP(6) AS ended, u.id, u.tenant_id, u.role, u.disabled "
            "FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id JOIN users u ON u.id = s.user_id "
            "WHERE r.token_hash = %s FOR UPDATE", (digest,))
        refusal = _refresh_refusal(row)
        if refusal is None:
            request.audit_actor = (row["tenant_id"], row["id"])
            request.audit_target = row["session_id"]
            db.update("UPDATE refresh_tokens SET used_at = UTC_TIMESTAMP(6) WHERE token_hash = %s", (digest,))
            return Response(200, _tokens(config, db, row, row["session_id"]), [("Cache-Control", "no-store")])
        if row is not None and row["used_at"] and not row["revoked_at"]:
            # A replay: whoever holds the newer token, the session can no longer be trusted.
            auth.revoke_sessions(db, "refresh token reused", session_id=row["session_id"])
            request.audit_actor = (row["tenant_id"], row["id"])
            request.audit_target = row["session_id"]
    raise auth.unauthorized(refusal)


def _refresh_refusal(row):
    if row is None:
        return "unknown refresh token"
    if row["used_at"]:
        return "this refresh token was already used; the session is revoked, log in again"
    if row["revoked_at"] or row["ended"] or row["expired"]:
        return "the session has ended; log in again"
    if row["disabled"]:
        return "the account is disabled"
    return None


def logout(request):
    """POST /api/auth/logout: ends the session of the bearer access token or of a refresh token."""
    config, db = request.config, request.db
    token = auth.bearer_token(request)
    if token is not None and not token.startswith(auth.API_TOKEN_PREFIX):
        claims = auth.verify_jwt(token, auth.signing_key(config), "access")
        request.audit_actor = (claims["tenant"], claims["sub"])
        session_id = str(claims["sid"])
    else:
        fields = validate(request.fields(), {"refresh_token": Field(text(200), required=True)})
        row = db.one("SELECT session_id FROM refresh_tokens WHERE token_hash = %s",
                     (auth.token_hash(fields["refresh_token"]),))
        if row is None:
            raise auth.unauthorized("unknown refresh token")
        session_id = row["session_id"]
    request.audit_target = session_id
    auth.revoke_sessions(db, "logout", session_id=session_id)
    return Response(204)


def access_token(config, user, session_id):
    import jwt
    now = int(time.time())
    claims = {"sub": user["id"], "tenant": user["tenant_id"], "role": user["role"], "iat": now,
              "exp": now + config.access_token_ttl, "typ": "access", "sid": session_id, "jti": new_id()}
    return jwt.encode(claims, auth.signing_key(config), algorithm="HS256")


def _tokens(config, db, user, session_id):
    refresh_token = auth.REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.update("INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES "
              "(%s, %s, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL %s SECOND)",
              (auth.token_hash(refresh_token), session_id, config.refresh_token_ttl))
    return {"access_token": access_token(config, user, session_id), "token_type": "Bearer",
            "expires_in": config.access_token_ttl, "refresh_token": refresh_token,
            "refresh_expires_in": config.refresh_token_ttl}


def _refuse_if_blocked(db, scopes):
    row = db.one("SELECT MAX(TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(6), blocked_until)) AS wait "
                 "FROM login_throttle WHERE scope IN (%s, %s) AND blocked_until > UTC_TIMESTAMP(6)", scopes)
    if row and row["wait"] is not None:
        wait = max(1, row["wait"] + 1)
        raise Problem(429, "too-many-failures", f"too many failed logins; try again in {wait} s",
                      headers=[("Retry-After", str(wait))])


def _count_failure(db, config, scopes):
    """One more failure for the account and the address; block either at its limit."""
    limits = (config.login_max_failures, config.login_max_failures_per_address)
    for scope, limit in zip(scopes, limits, strict=True):
        db.update("INSERT INTO login_throttle (scope, failures, window_start) VALUES (%s, 1, UTC_TIMESTAMP(6)) "
                  "ON DUPLICATE KEY UPDATE failures = IF(window_start < UTC_TIMESTAMP(6) - INTERVAL %s SECOND, "
                  "1, failures + 1), window_start = IF(failures = 1, UTC_TIMESTAMP(6), window_start)",
                  (scope, config.login_window))
        db.update("UPDATE login_throttle SET blocked_until = UTC_TIMESTAMP(6) + INTERVAL %s SECOND, "
                  "failures = 0, window_start = UTC_TIMESTAMP(6) WHERE scope = %s AND failures >= %s",
                  (config.login_block, scope, limit))
