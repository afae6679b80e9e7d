"""Login sessions: login, refresh (rotating), logout, a password change, and the login limits.

A session is one family of refresh tokens (RFC 9700 4.14.2): each refresh
token is used once and replaced; presenting a used one again means it was
stolen or replayed, and the whole session is revoked. Access tokens are
short-lived JWTs naming their session, so revoking the session ends them too.
"""

import secrets
import time

from . import accounts, auth
from .errors import Throttled, Unauthenticated, invalid
from .ids import new_id
from .validation import Field, text, validate

WRONG_CREDENTIALS = "the email or password is wrong"

# Nobody is logged in yet when these run: each sets `ctx.actor` to the (tenant_id, user_id) it found, for the
# audit log, as soon as it knows it (a failed login of a real account is that account's too).


def login(ctx, fields, client_addr):
    """{email, password} from `client_addr` -> access and refresh tokens, within the login limits."""
    config, db = ctx.config, ctx.db
    fields = validate(fields, {"email": Field(text(254), required=True),
                               "password": Field(text(1024), required=True)})
    email = fields["email"].strip().lower()
    ctx.target = email
    scopes = _login_scopes(config, db, email, client_addr[:MAX_ADDRESS_LENGTH])
    _reserve_attempt(db, config, scopes)
    user = db.one("SELECT id, tenant_id, role, disabled, password_hash FROM users "
                  "WHERE email = %s AND deleted_at IS NULL", (email,))
    if user is not None:
        ctx.actor = (user["tenant_id"], user["id"])
    matches = accounts.check_password(config, fields["password"], user and user["password_hash"])
    if not matches or user["disabled"]:
        raise Unauthenticated(WRONG_CREDENTIALS, None)  # its reserved attempt stays counted: a failure
    _give_back_attempt(db, config, scopes)
    session_id = new_id()
    db.update("INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES "
              "(%s, %s, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL %s SECOND)",
              (session_id, user["id"], config.session_max_age))
    return _tokens(config, db, user, session_id)


def refresh(ctx, fields):
    """{refresh_token} -> a new pair; the old refresh token dies."""
    config, db = ctx.config, ctx.db
    fields = validate(fields, {"refresh_token": Field(text(200), required=True)})
    digest = auth.token_hash(fields["refresh_token"])
    for attempt in db.transaction():
        with attempt:
            row = db.one(
                "SELECT r.session_id, r.used_at, r.expires_at <= UTC_TIMESTAMP(6) AS expired, s.revoked_at, "
                "s.expires_at <= UTC_TIMESTAMP(6) AS ended, u.id, u.tenant_id, u.role, u.disabled "
                "FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id JOIN users u ON u.id = s.user_id "
                "WHERE r.token_hash = %s FOR UPDATE", (digest,))
            refusal = _refresh_refusal(row)
            if refusal is None:
                ctx.actor = (row["tenant_id"], row["id"])
                ctx.target = row["session_id"]
                db.update("UPDATE refresh_tokens SET used_at = UTC_TIMESTAMP(6) WHERE token_hash = %s", (digest,))
                return _tokens(config, db, row, row["session_id"])
            if row is not None and row["used_at"] and not row["revoked_at"]:
                # A replay: whoever holds the newer token, the session can no longer be trusted.
                auth.revoke_sessions(db, "refresh token reused", session_id=row["session_id"])
                ctx.actor = (row["tenant_id"], row["id"])
                ctx.target = row["session_id"]
    raise Unauthenticated(refusal)


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


def by_access_token(bearer):
    """True when a logout with this bearer token ends the token's own session (and needs no body)."""
    return bearer is not None and not bearer.startswith(auth.API_TOKEN_PREFIX)


def logout(ctx, bearer, fields=None):
    """End the session of the bearer access token, or else of the refresh token in `fields`.

    `bearer` is the bearer token sent, if any; `fields` (the body's) are read only when it is not an access
    token (see by_access_token)."""
    config, db = ctx.config, ctx.db
    if by_access_token(bearer):
        claims = auth.verify_jwt(bearer, auth.signing_key(config), "access")
        ctx.actor = (claims["tenant"], claims["sub"])
        session_id = str(claims["sid"])
    else:
        fields = validate(fields or {}, {"refresh_token": Field(text(200), required=True)})
        row = db.one("SELECT session_id FROM refresh_tokens WHERE token_hash = %s",
                     (auth.token_hash(fields["refresh_token"]),))
        if row is None:
            raise Unauthenticated("unknown refresh token")
        session_id = row["session_id"]
    ctx.target = session_id
    auth.revoke_sessions(db, "logout", session_id=session_id)


def change_password(ctx, fields):
    """{current_password, password}: the caller's new password. Every other session of the user ends (their
    refresh tokens with them); the caller's own stays. Only in a login session: an API token may not set a
    password. Wrong current passwords count like failed logins, per user, before the check."""
    config, db, principal = ctx.config, ctx.db, ctx.principal
    accounts.require_session(principal, "change a password")
    fields = validate(fields, {"current_password": Field(text(1024), required=True),
                               "password": Field(accounts.password_rule(config), required=True)})
    ctx.target = principal.user_id
    scope = f"password:{principal.user_id}"
    accounts.reserve_attempt(db, [(scope, config.login_max_failures)], config.login_window, config.login_block,
                             config.login_block_max, _password_refusal)
    stored = db.one("SELECT password_hash FROM users WHERE id = %s", (principal.user_id,))
    if not accounts.check_password(config, fields["current_password"], stored["password_hash"]):
        raise invalid({"current_password": "is not your current password"})
    db.update("UPDATE login_throttle SET failures = 0, blocked_until = NULL WHERE scope = %s", (scope,))
    accounts.set_password(db, principal.user_id, accounts.hash_password(config, fields["password"]),
                          principal.session_id)


def _password_refusal(_scope, wait):
    return Throttled(f"too many wrong current passwords; try again in {wait} s", "too-many-failures",
                     retry_after=wait)


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


# --- login limits ---------------------------------------------------------------------------------------
#
# Each attempt is counted (reserved) before its password is checked, in one short transaction over every
# scope it falls under (accounts.reserve_attempt), so however many arrive at once no scope ever has more
# passwords checked than its limit: the attempt that reaches the limit sets the block itself, before its own
# check, and whoever comes next finds it. An attempt that succeeds takes its count back. After a block, each
# further attempt doubles it (CP_LOGIN_BLOCK, up to CP_LOGIN_BLOCK_MAX); a scope with no attempt for
# CP_LOGIN_WINDOW seconds after its last attempt and any block starts again from nothing.
#
# The scopes: the (address, account) pair, so that a stranger's failures at another address never lock the
# account's owner out; the address, so that one address cannot try many accounts; and the account, as a
# ceiling on guesses spread over many addresses, which spares addresses the account has logged in from
# within CP_LOGIN_KNOWN_ADDRESS_AGE. That ceiling can lock a user out of new addresses, never out of one they
# have used: an account-wide block that spared nobody would hand anyone a way to lock any user out.

MAX_ADDRESS_LENGTH = accounts.MAX_ADDRESS_LENGTH


def _login_scopes(config, db, email, address):
    """[(scope, limit)] an attempt for `email` from `address` counts against, in the one order every login
    takes their rows in (no two logins wait on each other in a circle)."""
    pair = f"pair:{address} {email}"
    scopes = [(pair, config.login_max_failures)]
    if config.login_max_failures_per_account > 0 and not _known_address(db, pair):
        scopes.append((f"account:{email}", config.login_max_failures_per_account))
    scopes.append((f"addr:{address}", config.login_max_failures_per_address))
    return scopes


def _known_address(db, pair):
    row = db.one("SELECT known_until > UTC_TIMESTAMP(6) AS known FROM login_throttle WHERE scope = %s", (pair,))
    return bool(row and row["known"])


def _reserve_attempt(db, config, scopes):
    """Count this attempt in every scope, or in none and Throttled when one of them is blocked."""
    accounts.reserve_attempt(db, scopes, config.login_window, config.login_block, config.login_block_max,
                             _login_refusal)


def _login_refusal(_scope, wait):
    return Throttled(f"too many failed logins; try again in {wait} s", "too-many-failures", retry_after=wait)


def _give_back_attempt(db, config, scopes):
    """A success: the pair starts afresh and its address is now known to the account; the address and
    the account take back the one attempt, and lift a block it alone brought them to."""
    (pair, _), *others = scopes
    db.update("UPDATE login_throttle SET failures = 0, blocked_until = NULL, "
              "known_until = UTC_TIMESTAMP(6) + INTERVAL %s SECOND WHERE scope = %s",
              (config.login_known_address_age, pair))
    for scope, limit in others:
        db.update("UPDATE login_throttle SET failures = GREATEST(failures, 1) - 1, "
                  "blocked_until = IF(failures < %s, NULL, blocked_until) WHERE scope = %s", (limit, scope))
