"""Who is calling, and may they: bearer credentials and the one permission table.

This runs on every authenticated request, so it stays light: an access token
(a JWT) is verified here with `hmac` from the standard library rather than
PyJWT, whose import alone costs ~65 ms per CGI request (measured: see
verify_jwt). The verifier is deliberately narrow: one algorithm (HS256, the
one we sign with), a strict token shape, required claims, and a constant-time
signature check; the tests check it against PyJWT on valid, forged, expired,
`alg: none` and wrong-type tokens. Tokens are issued with PyJWT (sessions.py),
where the cost is paid once.

After the signature, one query reads the user and the session as they are
now: a disabled user, a revoked session or a changed role take effect at
once, not when the token expires.
"""

import hashlib
import hmac
import json
import time
from binascii import Error as Base64Error
from binascii import a2b_base64, b2a_base64

from .config import ConfigError
from .errors import Forbidden, Unauthenticated

ROLES = ("viewer", "developer", "operator", "admin")
RANK = {role: rank for rank, role in enumerate(ROLES)}

# The one permission table: every endpoint names one of these (web/app.py's routes),
# and each is granted to a least role and every role above it.
PERMISSIONS = {
    "me:read": "viewer",
    "password:own": "viewer",
    "servers:read": "viewer",
    "tokens:own": "viewer",
    "network:read": "viewer",
    "sshkeys:own": "developer",
    "network:write": "operator",
    "vmcp:read": "viewer",
    "vmcp:write": "operator",
    "vmcp:keys": "admin",
    "servers:write": "operator",
    "users:manage": "admin",
    "audit:read": "admin",
    "metrics:read": "admin",
    "platform:read": "admin",
    "platform:write": "admin",
}
# Permissions over the whole platform, not one tenant: an admin who is also a platform admin
# (`cloudprovisioner-admin create-admin` or `platform-admin`; registration never makes one). The metrics
# hold every tenant's figures, so a tenant's admin gets none of them.
PLATFORM_PERMISSIONS = ("platform:read", "platform:write", "metrics:read")

API_TOKEN_PREFIX = "cpt_"
REFRESH_TOKEN_PREFIX = "cpr_"
MIN_SECRET_LENGTH = 32
ACCESS_CLAIMS = ("sub", "tenant", "role", "iat", "exp", "typ", "sid")
CLOCK_SKEW = 60  # seconds a token's iat may lie in our future
# Ours are about 400 characters; anything far longer is not ours, and is refused before any work.
MAX_TOKEN_LENGTH = 4096


class Principal:
    """The caller: a user, through a login session or an API token."""

    def __init__(self, user_id, tenant_id, role, *, session_id=None, token_id=None, platform_admin=False):
        self.user_id = user_id
        self.tenant_id = tenant_id
        self.role = role
        self.session_id = session_id
        self.token_id = token_id
        self.platform_admin = platform_admin


def revoke_sessions(db, reason, *, user_id=None, session_id=None, keep=None):
    """End one login session, or every live one of a user but `keep`: the one revoking query."""
    column, value = ("id", session_id) if session_id else ("user_id", user_id)
    db.update(f"UPDATE sessions SET revoked_at = UTC_TIMESTAMP(6), revoked_reason = %s "
              f"WHERE {column} = %s AND id <> %s AND revoked_at IS NULL", (reason, value, keep or ""))


def signing_key(config):
    """The HS256 key; refusing to work without a real one (the web layer answers 503 to a ConfigError)."""
    secret = config.get("CP_JWT_SECRET")
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"CP_JWT_SECRET is shorter than {MIN_SECRET_LENGTH} characters")
    return secret.encode("utf-8")


def token_hash(token):
    """API and refresh tokens are stored only as this digest."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def authenticate(db, config, token):
    """The Principal a bearer token (an API token or an access JWT) stands for, or Unauthenticated."""
    if token is None:
        raise Unauthenticated("send Authorization: Bearer <token>", None)
    if token.startswith(API_TOKEN_PREFIX):
        return _api_token_principal(db, token)
    claims = verify_jwt(token, signing_key(config), "access")
    return _session_principal(db, claims)


def authorize(principal, permission):
    least = PERMISSIONS[permission]
    if RANK[principal.role] < RANK[least]:
        raise Forbidden(f"the {principal.role} role may not do this ({permission} needs {least})")
    if permission in PLATFORM_PERMISSIONS and not principal.platform_admin:
        raise Forbidden(f"only a platform admin may do this ({permission})")


def _b64url(part):
    """The bytes of one token part, which must be canonical base64url: no padding, only `A-Za-z0-9-_`, and
    no stray bits in the last character. Anything a lenient decoder would also take (a trailing `=`, `+`
    and `/`, other unused bits) is another spelling of the same token, and a token has one spelling."""
    try:
        data = a2b_base64(part.translate(_URLSAFE) + "=" * (-len(part) % 4), strict_mode=True)
    except (Base64Error, ValueError):
        raise Unauthenticated("malformed token") from None
    if b2a_base64(data, newline=False).decode("ascii").rstrip("=").translate(_BACK_TO_URLSAFE) != part:
        raise Unauthenticated("malformed token")
    return data


_URLSAFE = str.maketrans("-_", "+/")
_BACK_TO_URLSAFE = str.maketrans("+/", "-_")


def _json_part(data):
    """A part's JSON, parsed only once the signature says we wrote it; still never a 500 if it is odd."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise Unauthenticated("malformed token") from None


def verify_jwt(token, key, expected_type, now=None):
    """The claims of an HS256 JWT we signed, or Unauthenticated saying what is wrong.

    Hand-written instead of PyJWT's jwt.decode(), which would be imported by every authenticated request.
    Measured 2026-11-29 on the 2-core test host (dev venv, median of 15 runs, load average ~3 from other
    jobs): importing PyJWT costs ~60-70 ms, most of it jwt.algorithms importing `cryptography` (~42 ms)
    and jwt.jwks_client importing urllib.request (~12 ms); a whole `python -c "import jwt"` takes ~88 ms
    against ~20 ms for `python -c pass`. Re-measure with (cumulative column, microseconds):
        .venv/bin/python -X importtime -c "import jwt" 2>&1 | tail -1

    The signature is checked before the header or the claims are parsed, so a stranger's JSON (nested a
    thousand deep, say) is never parsed at all; only HS256 can make a signature that passes, so checking
    `alg` after it loses nothing.
    """
    parts = token.split(".")
    if len(parts) != 3 or not token.isascii() or len(token) > MAX_TOKEN_LENGTH:
        raise Unauthenticated("malformed token")
    header_part, payload_part, _ = parts
    header_bytes, payload_bytes, signature = (_b64url(part) for part in parts)
    expected = hmac.digest(key, f"{header_part}.{payload_part}".encode("ascii"), "sha256")
    if not hmac.compare_digest(expected, signature):
        raise Unauthenticated("bad token signature")
    header, claims = _json_part(header_bytes), _json_part(payload_bytes)
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise Unauthenticated("unsupported token algorithm")
    if not isinstance(claims, dict) or any(name not in claims for name in ACCESS_CLAIMS):
        raise Unauthenticated("token lacks required claims")
    if claims["typ"] != expected_type:
        raise Unauthenticated(f"not an {expected_type} token")
    now = time.time() if now is None else now
    if not isinstance(claims["exp"], int) or claims["exp"] <= now:
        raise Unauthenticated("token expired")
    if not isinstance(claims["iat"], int) or claims["iat"] > now + CLOCK_SKEW:
        raise Unauthenticated("token issued in the future")
    return claims


def _session_principal(db, claims):
    row = db.one(
        "SELECT u.tenant_id, u.role, u.disabled, u.platform_admin, s.revoked_at, "
        "s.expires_at <= UTC_TIMESTAMP(6) AS ended "
        "FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = %s AND u.id = %s",
        (str(claims["sid"]), str(claims["sub"])))
    if row is None or row["revoked_at"] or row["ended"]:
        raise Unauthenticated("the session has ended; log in again")
    if row["disabled"] or row["tenant_id"] != claims["tenant"]:
        raise Unauthenticated("the account is disabled")
    return Principal(claims["sub"], row["tenant_id"], row["role"], session_id=claims["sid"],
                     platform_admin=bool(row["platform_admin"]))


def _api_token_principal(db, token):
    row = db.one(
        "SELECT t.id, t.role AS token_role, t.revoked_at, "
        "t.expires_at IS NOT NULL AND t.expires_at <= UTC_TIMESTAMP(6) AS expired, "
        "u.id AS user_id, u.tenant_id, u.role, u.disabled, u.platform_admin "
        "FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = %s",
        (token_hash(token),))
    if row is None or row["revoked_at"]:
        raise Unauthenticated("unknown or revoked API token")
    if row["expired"]:
        raise Unauthenticated("API token expired")
    if row["disabled"]:
        raise Unauthenticated("the account is disabled")
    # Never more than its creator has now, whatever it was made with.
    role = min(row["token_role"], row["role"], key=RANK.__getitem__)
    return Principal(row["user_id"], row["tenant_id"], role, token_id=row["id"],
                     platform_admin=bool(row["platform_admin"]))
