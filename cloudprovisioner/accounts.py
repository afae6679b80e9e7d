"""Tenants and their users: registration, passwords, `me`, and user management by tenant admins.

Passwords are hashed with bcrypt. bcrypt reads at most 72 bytes (and 5.0
refuses more), so a longer password is a 422 that says so, never a 500.
"""

import uuid

from . import auth, mailer
from .errors import Conflict, Forbidden
from .ids import new_id
from .validation import Field, boolean, one_of, text, validate

EMAIL_PATTERN = mailer.ADDRESS_PATTERN  # the address the welcome mail goes to: exactly one
BCRYPT_LIMIT = 72
USER_COLUMNS = "id, tenant_id, email, name, role, platform_admin, disabled, created_at, updated_at"
# A bcrypt hash no password matches (its digest is not of any password we could be given),
# checked when the email is unknown so that answering takes as long as for a real account.
DUMMY_HASH_TAIL = "N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"


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


def represent(row):
    return {"id": row["id"], "tenant_id": row["tenant_id"], "email": row["email"], "name": row["name"],
            "role": row["role"], "platform_admin": bool(row["platform_admin"]),
            "disabled": bool(row["disabled"]), "created_at": row["created_at"]}


def insert_user(config, db, tenant_id, fields, role, platform_admin=False):
    """A new user; Conflict when the email is taken (in any tenant, whatever its case)."""
    email = fields["email"].strip().lower()
    if db.one("SELECT id FROM users WHERE email = %s", (email,)):
        raise Conflict("an account with this email already exists", "email-taken")
    user_id = new_id()
    db.update("INSERT INTO users (id, tenant_id, email, name, password_hash, role, platform_admin, "
              "created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6), "
              "UTC_TIMESTAMP(6))",
              (user_id, tenant_id, email, fields["name"], hash_password(config, fields["password"]),
               role, int(platform_admin)))
    return user_id


def create_tenant(config, db, tenant_name, fields, platform_admin=False):
    """A tenant and its first user, its admin, in one transaction; answers their ids."""
    tenant_id = str(uuid.uuid4())
    with db.transaction():
        db.update("INSERT INTO tenants (id, name, created_at) VALUES (%s, %s, UTC_TIMESTAMP(6))",
                  (tenant_id, tenant_name))
        user_id = insert_user(config, db, tenant_id, fields, "admin", platform_admin)
        mailer.enqueue(db, fields["email"].strip().lower(), "Welcome to CloudProvisioner",
                       welcome_text(fields["name"], tenant_name, tenant_id))
    return tenant_id, user_id


def welcome_text(name, tenant_name, tenant_id):
    return (f"Hello {name},\n\nyour tenant \"{tenant_name}\" is ready on CloudProvisioner.\n\n"
            f"Tenant id: {tenant_id}\n\nLog in with your email and password at POST /api/auth/login.\n")


def refuse_if_closed(config):
    """Forbidden unless registration is open: checked before the body is even read."""
    if config.registration != "open":
        raise Forbidden("registration is closed; ask an administrator", "registration-closed")


def register(ctx, fields):
    """A new tenant and its first user, its admin: {"tenant": {id, name}, "user": the user}.

    Nobody is logged in: `ctx.actor` names the new (tenant_id, user_id) for the audit log."""
    config = ctx.config
    refuse_if_closed(config)
    fields = validate(fields, {
        "tenant_name": Field(text(255, allow_empty=False), required=True),
        "name": Field(text(255, allow_empty=False), required=True),
        "email": email_field(),
        "password": Field(password_rule(config), required=True),
    })
    tenant_id, user_id = create_tenant(config, ctx.db, fields["tenant_name"], fields)
    ctx.actor = (tenant_id, user_id)
    ctx.target = tenant_id
    mailer.deliver(config, ctx.db)  # best effort now; the mail cron job retries
    user = load_user(ctx.db, tenant_id, user_id)
    return {"tenant": {"id": tenant_id, "name": fields["tenant_name"]}, "user": user}


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


def create_user(ctx, fields):
    """A new user of the caller's tenant, as shown."""
    config = ctx.config
    fields = validate(fields, {
        "name": Field(text(255, allow_empty=False), required=True),
        "email": email_field(),
        "password": Field(password_rule(config), required=True),
        "role": Field(one_of(auth.ROLES, "role"), required=True),
    })
    tenant_id = ctx.tenant_id
    user_id = insert_user(config, ctx.db, tenant_id, fields, fields["role"])
    ctx.target = user_id
    return load_user(ctx.db, tenant_id, user_id)


def update_user(ctx, user_id, fields):
    """Role, name, disabled. A tenant keeps at least one active admin."""
    fields = validate(fields, {
        "name": Field(text(255, allow_empty=False)),
        "role": Field(one_of(auth.ROLES, "role")),
        "disabled": Field(boolean),
    })
    db, tenant_id = ctx.db, ctx.tenant_id
    ctx.target = user_id
    with db.transaction():
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
    return load_user(db, tenant_id, user_id)


def delete_user(ctx, user_id):
    """The account goes (its email freed), its history stays."""
    db, tenant_id = ctx.db, ctx.tenant_id
    ctx.target = user_id
    with db.transaction():
        current = _locked_user(db, tenant_id, user_id)
        if current["role"] == "admin" and not current["disabled"]:
            _keep_an_admin(db, tenant_id, user_id)
        db.update("UPDATE users SET disabled = 1, deleted_at = UTC_TIMESTAMP(6), email = %s, "
                  "updated_at = UTC_TIMESTAMP(6) WHERE id = %s", (f"deleted-{user_id}@deleted.invalid", user_id))
        db.update("UPDATE api_tokens SET revoked_at = UTC_TIMESTAMP(6) WHERE user_id = %s AND revoked_at IS NULL",
                  (user_id,))
        auth.revoke_sessions(db, "account deleted", user_id=user_id)


def _locked_user(db, tenant_id, user_id):
    return db.existing("user", "SELECT id, role, disabled FROM users WHERE id = %s AND tenant_id = %s "
                               "AND deleted_at IS NULL FOR UPDATE", (user_id, tenant_id))


def _keep_an_admin(db, tenant_id, leaving_id):
    others = db.one("SELECT COUNT(*) AS n FROM users WHERE tenant_id = %s AND role = 'admin' AND disabled = 0 "
                    "AND deleted_at IS NULL AND id <> %s FOR UPDATE", (tenant_id, leaving_id))
    if others["n"] == 0:
        raise Conflict("this is the tenant's last active admin; make another admin first", "last-admin")
