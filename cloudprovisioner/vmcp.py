"""VMCP: tenants' VM configurations for the CernVM WebAPI, their signing keys, and the responder.

A web page asks the CernVM WebAPI browser extension to start a VM; the
extension fetches the VM's configuration from a VM Configuration Point and
starts the VM only if the reply is signed with the page's domain key. Here a
tenant stores configurations (`/api/vmcp-configs`) and, optionally, a key of
its own (`/api/vmcp-key`); the responder (`GET /cgi-bin/vmcp?config=<id>` or
`GET /vmcp/<id>`, public, as the extension calls it) answers a configuration
signed for the caller's salt. The signed text and the cryptography are in
vmcpkeys.py.

The client keeps only string and integer values (others are dropped, and the
signature then fails), so the API takes nothing else. A configuration's
`secret` is write-only here: it goes to the extension in the signed reply and
nowhere else (never into a log, the audit log or an API answer).
"""

import json

from .config import ConfigError
from .errors import Conflict, NotFound, Unavailable, invalid, no_such
from .ids import new_id
from .validation import Field, byte_text, integer, text, validate

COLUMNS = "id, name, parameters, created_at, updated_at"
NAME_PATTERN = r"[a-zA-Z0-9+\-_~]+"
SALT_PATTERN = r"[a-zA-Z0-9-]{64}"
HOSTID_PATTERN = r"[a-zA-Z0-9._:-]{1,128}"
FLAG_BITS = {1: "64-bit guest", 2: "boot from diskURL", 4: "guest additions", 8: "floppy I/O", 16: "headful",
             32: "graphical", 64: "dual NIC", 128: "serial log file"}
ALIASES = {"ram": "memory"}  # what older configurations (and the VMCP tutorial) call it -> what the client reads


def _url(value):
    return text(2048, r"https?://[^\s]+", "must be an http:// or https:// URL")(value)


def parameter_schema():
    """The configuration's parameters the client reads, each a string or an integer."""
    return {
        "memory": Field(integer(64, 1048576)),
        "cpus": Field(integer(1, 128)),
        "disk": Field(integer(1, 16777216)),
        "executionCap": Field(integer(1, 100)),
        "flags": Field(integer(0, 255)),  # every bit of 0-255 is one the client knows (FLAG_BITS)
        "userData": Field(byte_text(65536)),
        "cernvmVersion": Field(text(32, r"[0-9][0-9A-Za-z.\-]*", "must be a version like 2026.06-1")),
        "cernvmFlavor": Field(text(32, r"[a-z][a-z0-9-]*", "must be a flavour like prod, testing or devel")),
        "diskURL": Field(_url),
        "diskChecksum": Field(text(128, r"[0-9a-f]{40}|[0-9a-f]{64}|[0-9a-f]{128}",
                                   "must be a lower-case hex SHA-1, SHA-256 or SHA-512 digest")),
        "apiPort": Field(integer(1, 65535)),
        "canOverride": Field(text(1000, r"[A-Za-z0-9,]*", "must be comma-separated parameter names")),
    }


def schema(partial=False):
    return {"name": Field(text(100, NAME_PATTERN, "may hold only letters, digits and + - _ ~", allow_empty=False),
                          required=not partial),
            "secret": Field(text(255, r"[^\x00-\x1f\x7f]+", "must be printable text", allow_empty=False),
                        required=not partial),
            **parameter_schema()}


def _types_first(body):
    """Refuse what the client would drop (floats, booleans, null, lists, objects) before anything else,
    naming each such field; PATCH may send null to remove a parameter."""
    errors = {}
    for key, value in body.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            kind = {bool: "a boolean", float: "a number with a fraction", list: "a list", dict: "an object"}.get(
                type(value), type(value).__name__)
            errors[key] = (f"is {kind}; the CernVM WebAPI keeps only strings and whole numbers (it would drop this "
                           "value and the signature would no longer verify)")
        elif isinstance(value, str) and "\x00" in value:
            errors[key] = "holds a NUL character, where the client's JSON reader would cut the text short"
    if errors:
        raise invalid(errors)


def _unalias(body):
    """`ram` -> `memory`, with a note for the reply."""
    notes = []
    for alias, name in ALIASES.items():
        if alias in body:
            if name in body:
                raise invalid({alias: f"give {name} or {alias}, not both"})
            body[name] = body.pop(alias)
            notes.append(f"'{alias}' was stored as '{name}': the CernVM WebAPI reads only '{name}'")
    return notes


def _check_together(parameters):
    if ("diskURL" in parameters) != ("diskChecksum" in parameters):
        raise invalid({"diskURL": "diskURL and diskChecksum go together: the client checks the disk it downloads"})


def represent(row, notes=()):
    body = {"id": row["id"], "name": row["name"], **json.loads(row["parameters"]), "secret_set": True,
            "url": f"/vmcp/{row['id']}",  # where the responder serves it (also /cgi-bin/vmcp?config=<id>)
            "created_at": row["created_at"], "updated_at": row["updated_at"]}
    if notes:
        body["notes"] = list(notes)
    return body


def load_row(ctx, config_id, lock=False):
    return ctx.db.existing("VMCP configuration", f"SELECT {COLUMNS} FROM vmcp_configs WHERE id = %s AND "
                           "tenant_id = %s" + (" FOR UPDATE" if lock else ""), (config_id, ctx.tenant_id))


def listing(ctx, args):
    """One page of the tenant's configurations (args: limit, cursor)."""
    return ctx.db.page(f"SELECT {COLUMNS} FROM vmcp_configs", ["tenant_id = %s"], [ctx.tenant_id], args)


def _name_taken(name):
    return Conflict(f"you already have a configuration named {name!r}", "vmcp-config-name-taken")


def create(ctx, body):
    """A new configuration from the fields of `body`: (its row, notes for the answer)."""
    _types_first(body)
    notes = _unalias(body)
    fields = validate(body, schema())
    parameters = {key: value for key, value in fields.items() if key not in ("name", "secret")}
    _check_together(parameters)
    config_id = ctx.target = new_id()
    if not ctx.db.insert_new(
            "INSERT INTO vmcp_configs (id, tenant_id, name, secret, parameters, created_at, updated_at) VALUES "
            "(%s, %s, %s, %s, %s, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
            (config_id, ctx.tenant_id, fields["name"], fields["secret"], json.dumps(parameters))):
        raise _name_taken(fields["name"])
    return load_row(ctx, config_id), notes


def update(ctx, config_id, body):
    """The fields given change; a parameter sent as null is removed: (the row now, notes for the answer)."""
    _types_first(body)
    notes = _unalias(body)
    removed = [key for key, value in body.items() if value is None]
    for key in removed:
        if key in ("name", "secret"):
            raise invalid({key: "cannot be removed"})
    fields = validate({key: value for key, value in body.items() if value is not None}, schema(partial=True))
    unknown = [key for key in removed if key not in parameter_schema()]
    if unknown:
        raise invalid({key: "unknown field" for key in unknown})
    db = ctx.db
    ctx.target = config_id
    for attempt in db.transaction():
        with attempt:
            row = load_row(ctx, config_id, lock=True)
            parameters = json.loads(row["parameters"])
            parameters.update({key: value for key, value in fields.items() if key not in ("name", "secret")})
            for key in removed:
                parameters.pop(key, None)
            _check_together(parameters)
            sets, args = ["parameters = %s", "updated_at = UTC_TIMESTAMP(6)"], [json.dumps(parameters)]
            for column in ("name", "secret"):
                if column in fields:
                    sets.append(f"{column} = %s")
                    args.append(fields[column])
            if "name" in fields and db.one("SELECT 1 AS taken FROM vmcp_configs WHERE tenant_id = %s AND name = %s "
                                           "AND id <> %s", (ctx.tenant_id, fields["name"], config_id)):
                raise _name_taken(fields["name"])
            db.update(f"UPDATE vmcp_configs SET {', '.join(sets)} WHERE id = %s", (*args, config_id))
    return load_row(ctx, config_id), notes


def delete(ctx, config_id):
    ctx.target = config_id
    load_row(ctx, config_id)
    ctx.db.update("DELETE FROM vmcp_configs WHERE id = %s AND tenant_id = %s", (config_id, ctx.tenant_id))


# ---------------------------------------------------------------- signing keys


def key(ctx):
    """The public half of the key that signs this tenant's configurations: its own, or the platform's."""
    from . import vmcpkeys
    row = ctx.db.one("SELECT public_key_base64, bits, fingerprint, created_at FROM vmcp_keys "
                     "WHERE tenant_id = %s", (ctx.tenant_id,))
    if row is None:
        forms = vmcpkeys.public_forms(_platform_key(ctx.config))
        return {"source": "platform", **forms, "created_at": None}
    pem = _pem_of(row["public_key_base64"])
    return {"source": "tenant", "public_key_base64": row["public_key_base64"], "public_key_pem": pem,
            "bits": row["bits"], "fingerprint": row["fingerprint"], "created_at": row["created_at"]}


def _pem_of(der_base64):
    lines = [der_base64[i:i + 64] for i in range(0, len(der_base64), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"


def set_key(ctx, fields):
    """{"private_key": PEM} or {"generate": true, "bits": 2048}: the tenant's own key (replacing any earlier
    one), stored encrypted; answers only its public half, as `key` does."""
    from . import vmcpkeys
    from .validation import boolean
    fields = validate(fields, {"private_key": Field(text(65536, allow_empty=False)),
                               "generate": Field(boolean, default=False),
                               "bits": Field(_key_size)})
    if fields["generate"] == ("private_key" in fields):
        raise invalid({"private_key": "send either private_key (PEM) or generate: true"})
    if "bits" in fields and not fields["generate"]:
        raise invalid({"bits": "only with generate: true"})
    try:
        private_key = (vmcpkeys.generate(fields.get("bits", 2048)) if fields["generate"]
                       else vmcpkeys.load_private_key(fields["private_key"]))
    except ValueError as exc:
        raise invalid({"private_key": str(exc)}) from None
    tenant_id = ctx.target = ctx.tenant_id
    sealed = _seal(ctx.config, tenant_id, vmcpkeys.private_pem(private_key).encode())
    forms = vmcpkeys.public_forms(private_key)
    ctx.db.update("REPLACE INTO vmcp_keys (tenant_id, private_key, public_key_base64, bits, fingerprint, "
                  "created_at) VALUES (%s, %s, %s, %s, %s, UTC_TIMESTAMP(6))",
                  (tenant_id, sealed, forms["public_key_base64"], forms["bits"], forms["fingerprint"]))
    return key(ctx)


def _key_size(value):
    """2048, 3072 or 4096, as a number or (from a form) a string of digits."""
    size = integer(2048, 4096)(value)
    if size not in (2048, 3072, 4096):
        raise ValueError("the size must be 2048, 3072 or 4096 bits")
    return size


def delete_key(ctx):
    """Back to the platform's key."""
    ctx.target = ctx.tenant_id
    if not ctx.db.update("DELETE FROM vmcp_keys WHERE tenant_id = %s", (ctx.tenant_id,)):
        raise NotFound("this tenant has no key of its own; the platform's key signs")


def _seal(config, tenant_id, plaintext):
    from . import vmcpkeys
    try:
        return vmcpkeys.encrypt(config.get("CP_VMCP_KEY_SECRET"), tenant_id, plaintext)
    except ValueError as exc:
        raise ConfigError(f"CP_VMCP_KEY_SECRET: {exc}") from None


def _platform_key(config, trusted=False):
    """The platform's key from CP_VMCP_PLATFORM_KEY, or Unavailable when there is none to sign with.
    `trusted` (the responder) skips the key's consistency check; GET /api/vmcp-key runs it."""
    from . import vmcpkeys
    path = config.get("CP_VMCP_PLATFORM_KEY")
    if not path:
        raise Unavailable("no signing key: this tenant has none and CP_VMCP_PLATFORM_KEY is not set",
                          "no-signing-key")
    try:
        with open(path, encoding="ascii") as handle:
            return vmcpkeys.load_private_key(handle.read(), trusted)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"CP_VMCP_PLATFORM_KEY {path}: {exc}") from None


def _signing_key(ctx, tenant_id):
    from . import vmcpkeys
    row = ctx.db.one("SELECT private_key FROM vmcp_keys WHERE tenant_id = %s", (tenant_id,))
    if row is None:
        return _platform_key(ctx.config, trusted=True)
    try:
        pem = vmcpkeys.decrypt(ctx.config.get("CP_VMCP_KEY_SECRET"), tenant_id, row["private_key"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return vmcpkeys.load_private_key(pem.decode(), trusted=True)  # checked when it was stored
    except ValueError as exc:
        # Stored under older limits (a key over RSA_MAX_BITS): every answer signed with it would cost too much.
        raise Conflict(f"This configuration's signing key cannot be used: {exc} The tenant's admin must upload "
                       "another (POST /api/vmcp-key) or delete it (DELETE /api/vmcp-key).",
                       "unusable-signing-key") from None


# ---------------------------------------------------------------- the responder


def signed(ctx, config_id, salt):
    """The configuration `config_id` (any tenant's: the id is the capability) signed for `salt`, as the
    CernVM WebAPI extension asks for it; NotFound when there is none."""
    from . import vmcpkeys
    row = ctx.db.one("SELECT tenant_id, name, secret, parameters FROM vmcp_configs WHERE id = %s", (config_id,))
    if row is None:
        raise no_such("VMCP configuration")
    document = {"name": row["name"], "secret": row["secret"], **json.loads(row["parameters"])}
    private_key = _signing_key(ctx, row["tenant_id"])
    try:
        return vmcpkeys.sign(private_key, document, salt)
    except (TypeError, ValueError) as exc:
        # Stored before the API refused such values (a lone surrogate, a float): only its owner can fix it.
        ctx.log(f"VMCP configuration {config_id} cannot be signed: {exc}")
        raise Conflict("This configuration holds a value that cannot be signed for the CernVM WebAPI; its owner "
                       "must change it (PATCH /api/vmcp-configs/<id>).", "unsignable-vmcp-config") from None
