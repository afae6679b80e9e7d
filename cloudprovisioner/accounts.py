"""Tenants and their users: registration (verified by mail), passwords and their reset, `me`, user
management by tenant admins, and the attempt limits that guard logins, registrations and mail.

Passwords are hashed with bcrypt. bcrypt reads at most 72 bytes (and 5.0
refuses more), so a longer password is a 422 that says so, never a 500.

With CP_REGISTRATION=verify (the default) a registration makes nothing but a mail: the tenant and its
admin exist once the mail's one-time token comes back, so an address nobody verified never has an
account that can log in. Registering a new address and one that already has an account answer alike;
the account's owner is told by mail instead. Mail goes to the address given and says nothing the
registrant chose, and the mail limits bound what one client address, or anyone, can send to one address.
"""

import secrets
import uuid

from . import apitokens, auth, mailer
from .config import ConfigError
from .errors import Conflict, Forbidden, Throttled, invalid
from .ids import new_id
from .validation import Field, boolean, one_of, text, validate

EMAIL_PATTERN = mailer.ADDRESS_PATTERN  # the address the welcome mail goes to: exactly one
BCRYPT_LIMIT = 72
USER_COLUMNS = ("id, tenant_id, email, email_verified_at, name, role, platform_admin, disabled, created_at, "
                "updated_at")
# A bcrypt hash no password matches (its digest is not of any password we could be given),
# checked when the email is unknown so that answering takes as long as for a real account.
DUMMY_HASH_TAIL = "N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
REGISTRATION_MODES = ("open", "verify", "closed")
# The one-time tokens mailed for a verification or a reset: secrets.token_urlsafe(32).
TOKEN_PATTERN = r"[A-Za-z0-9_-]{43}"
TOKEN_HINT = "must be the code from the mail (43 letters, digits, '-' and '_')"
SPENT_TOKEN = "unknown, expired or already used; ask for a new mail"
MAX_ADDRESS_LENGTH = 64  # REMOTE_ADDR; an IPv6 address is at most 45 characters


def password_rule(config):
    minimum = config.password_min_length

    def check(value):
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if len(value) < minimum:
            raise ValueError(f"must be at least {minimum} characters")
        if len(value.encode("utf-8")) > BCRYPT_LIMIT:
            raise ValueError(f"must be at most {BCRYPT_LIMIT} bytes in UTF-8 (bcrypt reads no more)")
        return value
    return check


def hash_password(config, password):
    import bcrypt
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(config.bcrypt_cost)).decode("ascii")


def check_password(config, password, stored_hash):
    """True if it matches; with no stored hash, spend the same time and answer False."""
    import bcrypt
    candidate = password.encode("utf-8")
    if stored_hash is None or len(candidate) > BCRYPT_LIMIT:
        # Same work as a real check, so the time does not tell whether the account exists.
        stored_hash, candidate = f"$2b${config.bcrypt_cost:02d}${DUMMY_HASH_TAIL}", b"x"
        bcrypt.checkpw(candidate, stored_hash.encode("ascii"))
        return False
    return bcrypt.checkpw(candidate, stored_hash.encode("ascii"))


def email_field():
    return Field(text(mailer.MAX_ADDRESS_LENGTH, EMAIL_PATTERN, mailer.ADDRESS_HINT, allow_empty=False),
                 required=True)


def token_field():
    return Field(text(100, TOKEN_PATTERN, TOKEN_HINT, allow_empty=False), required=True)


def represent(row):
    return {"id": row["id"], "tenant_id": row["tenant_id"], "email": row["email"],
            "email_verified": row["email_verified_at"] is not None, "name": row["name"],
            "role": row["role"], "platform_admin": bool(row["platform_admin"]),
            "disabled": bool(row["disabled"]), "created_at": row["created_at"]}


def require_session(principal, doing):
    """Forbidden to a caller authenticated by an API token: what a token could do here would outlive it
    (a user it made, a password it chose), so only a person logged in may."""
    if principal.token_id is not None:
        raise Forbidden(f"an API token cannot {doing}; log in and do it in your session", "session-required")


def insert_user(db, tenant_id, email, name, password_hash, role, *, platform_admin=False, verified=False):
    """A new user; Conflict when the email is taken (in any tenant, whatever its case)."""
    user_id = new_id()
    inserted = db.insert_new(
        "INSERT INTO users (id, tenant_id, email, email_verified_at, name, password_hash, role, platform_admin, "
        "created_at, updated_at) VALUES (%s, %s, %s, IF(%s, UTC_TIMESTAMP(6), NULL), %s, %s, %s, %s, "
        "UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
        (user_id, tenant_id, email, verified, name, password_hash, role, int(platform_admin)))
    if not inserted:
        raise Conflict("an account with this email already exists", "email-taken")
    return user_id


def _new_tenant(db, tenant_id, tenant_name, email, name, password_hash, *, platform_admin=False, verified=False):
    """A tenant and its first user, its admin (inside the caller's transaction); the user's id."""
    db.update("INSERT INTO tenants (id, name, created_at) VALUES (%s, %s, UTC_TIMESTAMP(6))", (tenant_id, tenant_name))
    return insert_user(db, tenant_id, email, name, password_hash, "admin", platform_admin=platform_admin,
                       verified=verified)


def create_tenant(config, db, tenant_name, fields, platform_admin=False, password_hash=None):
    """A tenant and its first user, its admin, in one transaction with its welcome mail; their ids."""
    tenant_id = str(uuid.uuid4())
    email = fields["email"].strip().lower()
    password_hash = password_hash or hash_password(config, fields["password"])
    for attempt in db.transaction():
        with attempt:
            user_id = _new_tenant(db, tenant_id, tenant_name, email, fields["name"], password_hash,
                                  platform_admin=platform_admin)
            mailer.enqueue(db, email, "Welcome to CloudProvisioner", welcome_text(tenant_id))
    return tenant_id, user_id


# --- mail: fixed words (a registrant's tenant or user name would let anyone mail anyone their own text) ---

def welcome_text(tenant_id):
    return ("Your tenant is ready on CloudProvisioner.\n\n"
            f"Tenant id: {tenant_id}\n\nLog in with your email and password at POST /api/auth/login.\n")


def verification_text(config, tenant_id, token):
    link = _public_link(config, f"/api/verify-email?token={token}")
    within = f"To verify the address within {_lifetime(config.verification_ttl)}, "
    how = f"{within}open this link:\n\n{link}\n\nor send this code" if link else f"{within}send this code"
    return ("Someone, hopefully you, registered a tenant on CloudProvisioner with this\n"
            "address. It is made once the address is verified, with this id:\n\n"
            f"Tenant id: {tenant_id}\n\n"
            f"{how} to\nPOST /api/verify-email as {{\"token\": \"...\"}}:\n\n"
            f"Verification code: {token}\n\n"
            "Then log in with your email and password at POST /api/auth/login.\n"
            "If it was not you, ignore this mail: nothing is made without it.\n")


def taken_text():
    return ("Someone tried to register a new tenant on CloudProvisioner with this\n"
            "address, which already has an account. Nothing was changed.\n\n"
            "If it was you: log in with your email and password at POST /api/auth/login,\n"
            "or ask for a password reset at POST /api/password-reset.\n"
            "If it was not you, you can ignore this mail.\n")


def invitation_text(config, tenant_id, token):
    where = _public_link(config, "/api/invitations/accept") or "POST /api/invitations/accept"
    return ("An administrator of a tenant on CloudProvisioner invited this address to\n"
            "become one of its users:\n\n"
            f"Tenant id: {tenant_id}\n\n"
            f"Invitation code: {token}\n\n"
            f"To accept within {_lifetime(config.verification_ttl)}, send the code with a password of your choice to\n"
            f"{where}\nas {{\"token\": \"...\", \"password\": \"...\"}}. Then log in with your email and that "
            "password\nat POST /api/auth/login.\n"
            "If you do not know this tenant, ignore this mail: nothing is made without it.\n")


def invited_taken_text():
    return ("An administrator of a tenant on CloudProvisioner tried to add this address,\n"
            "which already has an account, as one of its users. Nothing was changed:\n"
            "an address belongs to one account.\n\n"
            "If you meant to join that tenant, its administrator can invite another\n"
            "address of yours. If you do not know this tenant, you can ignore this mail.\n")


def reset_text(config, token):
    where = _public_link(config, "/api/password-reset/confirm") or "POST /api/password-reset/confirm"
    return ("Someone, hopefully you, asked to reset the password of the CloudProvisioner\n"
            "account with this address.\n\n"
            f"Reset code: {token}\n\n"
            f"Within {_lifetime(config.password_reset_ttl)}, send it with your new password to\n{where}\n"
            "as {\"token\": \"...\", \"password\": \"...\"}. It works once, and logs out every session.\n"
            "If you did not ask, ignore this mail: your password stays as it is.\n")


def _public_link(config, path):
    """`path` under CP_PUBLIC_URL, or None when it is not set: a link is never made from the request's Host,
    which whoever registers chooses."""
    base = config.public_url.rstrip("/")
    return f"{base}{path}" if base else None


def _lifetime(seconds):
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = max(1, seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


# --- registration ---

def registration_mode(config):
    mode = config.registration
    if mode not in REGISTRATION_MODES:
        raise ConfigError(f"CP_REGISTRATION must be one of {', '.join(REGISTRATION_MODES)}, not {mode!r}")
    return mode


def refuse_if_closed(config):
    """Forbidden unless registration is open or verified by mail: checked before the body is even read."""
    if registration_mode(config) == "closed":
        raise Forbidden("registration is closed; ask an administrator", "registration-closed")


def register(ctx, fields, client_addr):
    """A new tenant and its first user, its admin: (made, answer).

    Open registration makes them now: made is True, the answer {"tenant": {id, name}, "user": the user}, and
    `ctx.actor` names them for the audit log. Verified registration (the default) makes nothing but a mail
    (made is False): to a new address, its tenant id and a one-time token that makes them (verify_email); to
    one with an account, a note saying someone tried; the answer is the same either way, in about the same
    time (both hash the password, both send one mail). Either way it counts against the mail limits first."""
    config, db = ctx.config, ctx.db
    mode = registration_mode(config)
    refuse_if_closed(config)
    fields = validate(fields, {
        "tenant_name": Field(text(255, allow_empty=False), required=True),
        "name": Field(text(255, allow_empty=False), required=True),
        "email": email_field(),
        "password": Field(password_rule(config), required=True),
    })
    email = ctx.target = fields["email"].lower()
    limit_mail(ctx, client_addr, email)
    password_hash = hash_password(config, fields["password"])
    if mode == "open":
        tenant_id, user_id = create_tenant(config, db, fields["tenant_name"], fields, password_hash=password_hash)
        ctx.actor = (tenant_id, user_id)
        mailer.deliver(config, db)  # best effort now; the mail cron job retries
        return True, {"tenant": {"id": tenant_id, "name": fields["tenant_name"]}, "user": load_user(db, tenant_id,
                                                                                                   user_id)}
    _register_pending(config, db, fields, email, password_hash)
    mailer.deliver(config, db)
    return False, {"email": email, "verification_expires_in": config.verification_ttl,
                   "detail": "A mail is on its way to this address: follow it to verify the address, which makes "
                             "the tenant. Then log in."}


def _register_pending(config, db, fields, email, password_hash):
    """The mail a verified registration sends, and the registration it waits with when the address is new."""
    db.update("DELETE FROM registrations WHERE expires_at <= UTC_TIMESTAMP(6)")
    for attempt in db.transaction():
        with attempt:
            if db.one("SELECT id FROM users WHERE email = %s", (email,)):
                mailer.enqueue(db, email, "Someone tried to register with your address", taken_text())
                return
            token, tenant_id = secrets.token_urlsafe(32), str(uuid.uuid4())
            db.update("INSERT INTO registrations (token_hash, email, name, tenant_name, tenant_id, password_hash, "
                      "created_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6), "
                      "UTC_TIMESTAMP(6) + INTERVAL %s SECOND)",
                      (auth.token_hash(token), email, fields["name"], fields["tenant_name"], tenant_id, password_hash,
                       config.verification_ttl))
            mailer.enqueue(db, email, "Verify your address for CloudProvisioner",
                           verification_text(config, tenant_id, token))


def pending_registration(ctx, query):
    """The token of a registration that waits for it ({"token"} from a mail's link), or Invalid."""
    refuse_if_closed(ctx.config)
    token = validate(query, {"token": token_field()})["token"]
    if not ctx.db.one("SELECT 1 AS waiting FROM registrations WHERE token_hash = %s AND used_at IS NULL "
                      "AND expires_at > UTC_TIMESTAMP(6)", (auth.token_hash(token),)):
        raise invalid({"token": SPENT_TOKEN})
    return token


def verify_email(ctx, fields):
    """{token} from a registration's mail: its tenant and admin made now, once, as register makes them when
    registration is open; Conflict when the address has an account by now."""
    config, db = ctx.config, ctx.db
    refuse_if_closed(config)
    digest = auth.token_hash(validate(fields, {"token": token_field()})["token"])
    for attempt in db.transaction():
        with attempt:
            # The conditional update makes the token single-use: of two requests with it, one finds it unused.
            if not db.update("UPDATE registrations SET used_at = UTC_TIMESTAMP(6) WHERE token_hash = %s "
                             "AND used_at IS NULL AND expires_at > UTC_TIMESTAMP(6)", (digest,)):
                raise invalid({"token": SPENT_TOKEN})
            row = db.one("SELECT email, name, tenant_name, tenant_id, password_hash FROM registrations "
                         "WHERE token_hash = %s", (digest,))
            tenant_id = ctx.target = row["tenant_id"]
            user_id = _new_tenant(db, tenant_id, row["tenant_name"], row["email"], row["name"], row["password_hash"],
                                  verified=True)
    ctx.actor = (tenant_id, user_id)
    return {"tenant": {"id": tenant_id, "name": row["tenant_name"]}, "user": load_user(db, tenant_id, user_id)}


# --- passwords ---

def request_password_reset(ctx, fields, client_addr):
    """{email}: a one-time reset token mailed to the account with this address, if there is one. The answer
    is the same either way. The mail goes out with the mail job, not in this request, so that sending it
    does not make this answer slower than one for an address without an account."""
    config, db = ctx.config, ctx.db
    email = ctx.target = validate(fields, {"email": email_field()})["email"].lower()
    limit_mail(ctx, client_addr, email)
    user = db.one("SELECT id, tenant_id FROM users WHERE email = %s AND deleted_at IS NULL AND disabled = 0",
                  (email,))
    if user is not None:
        ctx.actor = (user["tenant_id"], user["id"])
        token = secrets.token_urlsafe(32)
        db.update("DELETE FROM password_resets WHERE expires_at <= UTC_TIMESTAMP(6)")
        for attempt in db.transaction():
            with attempt:
                db.update("INSERT INTO password_resets (token_hash, user_id, created_at, expires_at) VALUES "
                          "(%s, %s, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL %s SECOND)",
                          (auth.token_hash(token), user["id"], config.password_reset_ttl))
                mailer.enqueue(db, email, "Reset your CloudProvisioner password", reset_text(config, token))
    return {"detail": "If an account has this address, a mail with a reset code is on its way to it; the code "
                      f"works once, within {_lifetime(config.password_reset_ttl)}."}


def confirm_password_reset(ctx, fields):
    """{token, password}: the mailed token's user gets the new password, once; every session of theirs ends,
    and their address counts as verified (the token came through it)."""
    config, db = ctx.config, ctx.db
    fields = validate(fields, {"token": token_field(), "password": Field(password_rule(config), required=True)})
    digest = auth.token_hash(fields["token"])
    # Looked up before bcrypt, so that made-up tokens cost no hashing; the update below decides.
    found = db.one("SELECT r.user_id, u.tenant_id FROM password_resets r JOIN users u ON u.id = r.user_id "
                   "WHERE r.token_hash = %s AND r.used_at IS NULL AND r.expires_at > UTC_TIMESTAMP(6) "
                   "AND u.deleted_at IS NULL", (digest,))
    if found is None:
        raise invalid({"token": SPENT_TOKEN})
    user_id = ctx.target = found["user_id"]
    ctx.actor = (found["tenant_id"], user_id)
    password_hash = hash_password(config, fields["password"])
    for attempt in db.transaction():
        with attempt:
            if not db.update("UPDATE password_resets SET used_at = UTC_TIMESTAMP(6) WHERE token_hash = %s "
                             "AND used_at IS NULL AND expires_at > UTC_TIMESTAMP(6)", (digest,)):
                raise invalid({"token": SPENT_TOKEN})
            db.update("UPDATE password_resets SET used_at = UTC_TIMESTAMP(6) WHERE user_id = %s AND used_at IS NULL",
                      (user_id,))
            db.update("UPDATE users SET password_hash = %s, email_verified_at = COALESCE(email_verified_at, "
                      "UTC_TIMESTAMP(6)), updated_at = UTC_TIMESTAMP(6) WHERE id = %s", (password_hash, user_id))
            auth.revoke_sessions(db, "password reset", user_id=user_id)
            # A reset is how an owner takes back an account someone else may hold: what that someone may have
            # minted goes too (a change in a session keeps them: whoever changes it knew the password).
            apitokens.revoke_all(db, user_id)


def set_password(db, user_id, password_hash, keep_session):
    """The user's new password; every session of theirs ends but `keep_session` (the one that changed it)."""
    for attempt in db.transaction():
        with attempt:
            db.update("UPDATE users SET password_hash = %s, updated_at = UTC_TIMESTAMP(6) WHERE id = %s",
                      (password_hash, user_id))
            auth.revoke_sessions(db, "password changed", user_id=user_id, keep=keep_session)


# --- attempt limits: the login limits' machinery, and the mail limits on it ------------------------------
#
# Each attempt is counted (reserved) before the work it asks for, in one short transaction over every scope it
# falls under (a row of login_throttle each), so however many arrive at once no scope ever gets more than its
# limit: the attempt that reaches the limit sets the block itself, and whoever comes next finds it. After a
# block, each further attempt doubles it (up to `block_max`); a scope with no attempt for `window` seconds after
# its last attempt and any block starts again from nothing. sessions.py says which scopes a login counts in.

# Assignments run left to right (MySQL and MariaDB, without SIMULTANEOUS_ASSIGNMENT): `blocked_until`
# reads the count just made, and the forgetting reads the old `last_at`.
_RESERVE = (
    "UPDATE login_throttle SET "
    "failures = IF(GREATEST(last_at, COALESCE(blocked_until, last_at)) "
    "<= UTC_TIMESTAMP(6) - INTERVAL %s SECOND, 0, failures) + 1, "
    "blocked_until = IF(failures >= %s, UTC_TIMESTAMP(6) + INTERVAL LEAST(%s, %s << LEAST(failures - %s, 32)) "
    "SECOND, blocked_until), "
    "last_at = UTC_TIMESTAMP(6) "
    "WHERE scope = %s AND (blocked_until IS NULL OR blocked_until <= UTC_TIMESTAMP(6))")


def reserve_attempt(db, scopes, window, block, block_max, refusal):
    """Count one attempt in every (scope, limit) of `scopes`, taken in this order, or in none and raise
    refusal(scope, seconds until its block ends) (a Throttled) for the first one that is blocked."""
    names = [scope for scope, _ in scopes]
    db.update("INSERT INTO login_throttle (scope, failures, last_at) VALUES "
              + ", ".join(["(%s, 0, UTC_TIMESTAMP(6))"] * len(names)) + " ON DUPLICATE KEY UPDATE scope = scope",
              names)
    for attempt in db.transaction():
        with attempt:  # a refusal rolls back what the other scopes counted
            for scope, limit in scopes:
                counted = db.update(_RESERVE, (window, limit, block_max, block, limit, scope))
                wait = None if counted else _blocked_for(db, scope)
                if wait is not None:
                    raise refusal(scope, wait)


def _blocked_for(db, scope):
    """Seconds until the scope's block ends (rounded up), or None when it is not blocked."""
    row = db.one("SELECT TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(6), blocked_until) AS wait FROM login_throttle "
                 "WHERE scope = %s AND blocked_until > UTC_TIMESTAMP(6)", (scope,))
    return None if row is None else row["wait"] + 1


def limit_mail(ctx, client_addr, email):
    """Count a request that mails `email` (a registration, an invitation, a password reset), whether or not it has
    an account, or Throttled: at most CP_MAIL_MAX_PER_ADDRESS such requests from one client address and
    CP_MAIL_MAX_PER_RECIPIENT mails to one address per CP_MAIL_LIMIT_WINDOW; then one more per window, until a
    window passes without any. Per recipient, so that nobody can use this service to flood an address."""
    config = ctx.config
    window = config.mail_limit_window
    scopes = [(f"mail-from:{client_addr[:MAX_ADDRESS_LENGTH]}", config.mail_max_per_address),
              (f"mail-to:{email}", config.mail_max_per_recipient)]
    reserve_attempt(ctx.db, scopes, window, window, window, _mail_refusal)


def _mail_refusal(scope, wait):
    if scope.startswith("mail-from:"):
        return Throttled("too many requests that send mail (registrations, invitations, password resets) from your "
                         f"address; try again in {wait} s",
                         "too-many-requests", retry_after=wait)
    return Throttled(f"this address has been sent enough mail for now; try again in {wait} s", "too-much-mail",
                     retry_after=wait)


# --- who you are, and the tenant's users ---

def load_user(db, tenant_id, user_id):
    return represent(db.existing(
        "user", f"SELECT {USER_COLUMNS} FROM users WHERE id = %s AND tenant_id = %s AND deleted_at IS NULL",
        (user_id, tenant_id)))


def me(ctx):
    """The caller as a user, with its tenant and how it authenticated (a session or an API token)."""
    principal = ctx.principal
    user = load_user(ctx.db, principal.tenant_id, principal.user_id)
    tenant = ctx.db.one("SELECT id, name FROM tenants WHERE id = %s", (principal.tenant_id,))
    via = {"type": "api_token", "token_id": principal.token_id} if principal.token_id else \
        {"type": "session", "session_id": principal.session_id}
    return {**user, "role": principal.role, "tenant": tenant, "authenticated_by": via}


def listing(ctx):
    """Every user of the caller's tenant (rows)."""
    return ctx.db.query(f"SELECT {USER_COLUMNS} FROM users WHERE tenant_id = %s AND deleted_at IS NULL "
                        "ORDER BY id", (ctx.tenant_id,))


def create_user(ctx, fields, client_addr):
    """POST /api/users, for a person logged in (a user with a password a token chose would keep the token's
    access after it is revoked): (made, answer).

    When registration is open, the user is made now with the password given: made is True and the answer the
    user. Otherwise (made is False) the address is invited: it gets a one-time token with which its owner
    chooses a password, which makes the user (accept_invitation); an address that already has an account, in
    any tenant, gets a note instead. The answer is the same either way, so that an admin learns neither who
    has an account elsewhere nor can take an address that is not theirs. It counts against the mail limits."""
    require_session(ctx.principal, "create users")
    config = ctx.config
    rules = {"name": Field(text(255, allow_empty=False), required=True), "email": email_field(),
             "role": Field(one_of(auth.ROLES, "role"), required=True)}
    if registration_mode(config) == "open":
        fields = validate(fields, {**rules, "password": Field(password_rule(config), required=True)})
        user_id = ctx.target = insert_user(ctx.db, ctx.tenant_id, fields["email"].lower(), fields["name"],
                                           hash_password(config, fields["password"]), fields["role"])
        return True, load_user(ctx.db, ctx.tenant_id, user_id)
    if isinstance(fields, dict) and "password" in fields:
        raise invalid({"password": "the invited user chooses their own password when they accept; leave it out"})
    fields = validate(fields, rules)
    email = ctx.target = fields["email"].lower()
    limit_mail(ctx, client_addr, email)
    _invite(ctx, fields, email)
    mailer.deliver(config, ctx.db)  # best effort now; the mail cron job retries
    return False, {"email": email, "invitation_expires_in": config.verification_ttl,
                   "detail": "A mail is on its way to this address: the user is made when its owner accepts the "
                             "invitation with a password of their own."}


def _invite(ctx, fields, email):
    """The invitation's mail, and the invitation it waits with when the address has no account."""
    db, config = ctx.db, ctx.config
    db.update("DELETE FROM invitations WHERE expires_at <= UTC_TIMESTAMP(6)")
    for attempt in db.transaction():
        with attempt:
            if db.one("SELECT id FROM users WHERE email = %s", (email,)):
                mailer.enqueue(db, email, "Someone tried to add your address to a CloudProvisioner tenant",
                               invited_taken_text())
                return
            token = secrets.token_urlsafe(32)
            db.update("INSERT INTO invitations (token_hash, tenant_id, email, name, role, invited_by, created_at, "
                      "expires_at) VALUES (%s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6), "
                      "UTC_TIMESTAMP(6) + INTERVAL %s SECOND)",
                      (auth.token_hash(token), ctx.tenant_id, email, fields["name"], fields["role"],
                       ctx.principal.user_id, config.verification_ttl))
            mailer.enqueue(db, email, "You are invited to CloudProvisioner",
                           invitation_text(config, ctx.tenant_id, token))


def accept_invitation(ctx, fields):
    """{token, password} from an invitation's mail: the invited user made now, once, with this password and
    their address verified (the token came through it). Refused when the inviting admin is no longer an
    active admin of the tenant: an invitation carries no more authority than whoever sent it still has.
    Conflict when the address has an account by now."""
    config, db = ctx.config, ctx.db
    fields = validate(fields, {"token": token_field(), "password": Field(password_rule(config), required=True)})
    digest = auth.token_hash(fields["token"])
    password_hash = hash_password(config, fields["password"])
    for attempt in db.transaction():
        with attempt:
            # The conditional update makes the token single-use: of two requests with it, one finds it unused.
            if not db.update("UPDATE invitations i JOIN users u ON u.id = i.invited_by AND u.tenant_id = i.tenant_id "
                             "SET i.used_at = UTC_TIMESTAMP(6) WHERE i.token_hash = %s AND i.used_at IS NULL "
                             "AND i.expires_at > UTC_TIMESTAMP(6) AND u.role = 'admin' AND u.disabled = 0 "
                             "AND u.deleted_at IS NULL", (digest,)):
                raise invalid({"token": SPENT_TOKEN})
            row = db.one("SELECT tenant_id, email, name, role FROM invitations WHERE token_hash = %s", (digest,))
            tenant_id = row["tenant_id"]
            user_id = ctx.target = insert_user(db, tenant_id, row["email"], row["name"], password_hash, row["role"],
                                               verified=True)
    ctx.actor = (tenant_id, user_id)
    return load_user(db, tenant_id, user_id)


def update_user(ctx, user_id, fields):
    """Role, name, disabled. A tenant keeps at least one active admin. Disabling ends the user's sessions and
    revokes their API tokens for good: enabling them again brings back neither. A role or an account
    switched on or off outlives the API token that would do it (a friend's account made admin, the real
    admin disabled), so only a person logged in may; a token may rename."""
    fields = validate(fields, {
        "name": Field(text(255, allow_empty=False)),
        "role": Field(one_of(auth.ROLES, "role")),
        "disabled": Field(boolean),
    })
    if "role" in fields or "disabled" in fields:
        require_session(ctx.principal, "change a user's role or disable or enable a user")
    db, tenant_id = ctx.db, ctx.tenant_id
    ctx.target = user_id
    for attempt in db.transaction():
        with attempt:
            current = _locked_user(db, tenant_id, user_id)
            stays_admin = fields.get("role", current["role"]) == "admin" and not fields.get("disabled", False)
            if current["role"] == "admin" and not current["disabled"] and not stays_admin:
                _keep_an_admin(db, tenant_id, user_id)
            for column in ("name", "role", "disabled"):
                if column in fields:
                    db.update(f"UPDATE users SET {column} = %s, updated_at = UTC_TIMESTAMP(6) WHERE id = %s",
                              (fields[column], user_id))
            if fields.get("disabled"):
                auth.revoke_sessions(db, "account disabled", user_id=user_id)
                apitokens.revoke_all(db, user_id)
    return load_user(db, tenant_id, user_id)


def delete_user(ctx, user_id):
    """The account goes (its email freed), its history stays. Not through an API token, for the reason
    update_user gives: a leaked token must not be able to remove the people who would revoke it."""
    require_session(ctx.principal, "delete users")
    db, tenant_id = ctx.db, ctx.tenant_id
    ctx.target = user_id
    for attempt in db.transaction():
        with attempt:
            current = _locked_user(db, tenant_id, user_id)
            if current["role"] == "admin" and not current["disabled"]:
                _keep_an_admin(db, tenant_id, user_id)
            db.update("UPDATE users SET disabled = 1, deleted_at = UTC_TIMESTAMP(6), email = %s, "
                      "updated_at = UTC_TIMESTAMP(6) WHERE id = %s", (f"deleted-{user_id}@deleted.invalid", user_id))
            apitokens.revoke_all(db, user_id)
            auth.revoke_sessions(db, "account deleted", user_id=user_id)


def set_platform_admin(db, email, flag):
    """The platform admin flag of the live user with this email set to `flag`: the user as shown now."""
    user = db.existing("user", f"SELECT {USER_COLUMNS} FROM users WHERE email = %s AND deleted_at IS NULL",
                       (email.strip().lower(),))
    db.update("UPDATE users SET platform_admin = %s, updated_at = UTC_TIMESTAMP(6) WHERE id = %s",
              (int(flag), user["id"]))
    return represent({**user, "platform_admin": flag})


def _locked_user(db, tenant_id, user_id):
    return db.existing("user", "SELECT id, role, disabled FROM users WHERE id = %s AND tenant_id = %s "
                               "AND deleted_at IS NULL FOR UPDATE", (user_id, tenant_id))


def _keep_an_admin(db, tenant_id, leaving_id):
    others = db.one("SELECT COUNT(*) AS n FROM users WHERE tenant_id = %s AND role = 'admin' AND disabled = 0 "
                    "AND deleted_at IS NULL AND id <> %s FOR UPDATE", (tenant_id, leaving_id))
    if others["n"] == 0:
        raise Conflict("this is the tenant's last active admin; make another admin first", "last-admin")
