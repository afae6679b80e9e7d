"""Users' SSH public keys: parsing the one line of a .pub file into a checked `PublicKey`,
and a tenant's keys (behind GET/POST/DELETE /api/ssh-keys, web/sshkeys.py; at the end).

`parse` takes exactly what a user pasted and either returns the key (its kind,
strength, comment, canonical line and the fingerprints DigitalOcean and
`ssh-keygen -l` show) or raises ValueError with one sentence saying what is
wrong and what to do. Those messages never quote the pasted text: it may be a
private key pasted by mistake, and messages end up in answers and logs.

The key itself (the SSH wire format: RFC 4251 section 5, RFC 4253 section 6.6,
RFC 5656, RFC 8709) is read by `cryptography`'s load_ssh_public_key, imported
inside _read_key() as vmcpkeys.py does: only a request that parses a key (POST
/api/ssh-keys) pays for the import. The checks before it are ours, for the
sentences: cryptography refuses with vaguer messages, and accepts kinds we
refuse (ssh-dss, sk-...@openssh.com, certificates: it returns a certificate's
key) or numbers ssh-keygen fingerprints differently (an mpint with a needless
leading zero), hence the comparison with its canonical blob in _read_key().
"""

import base64
import binascii
import hashlib
import re

from .errors import CloudFailed, Conflict, Forbidden, invalid
from .ids import new_id
from .validation import Field, text, validate

MAX_INPUT_BYTES = 16 * 1024
MAX_COMMENT = 255
RSA_MIN_BITS = 2048
RSA_MAX_BITS = 16384  # OpenSSH's own ceiling (OPENSSH_RSA_MAX_MODULUS_SIZE)

ACCEPTED = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
# Names a pasted line may start with that we recognise but refuse (or that mark authorized_keys options).
KNOWN_TYPE = re.compile(r"ssh-ed25519|ecdsa-sha2-nistp\d+|ssh-rsa|ssh-dss"
                        r"|sk-\S+@openssh\.com|\S+-cert-v01@openssh\.com")
# A key type followed by the start of a blob (every blob starts with a length below 2**24: "AAAA").
KEY_START = re.compile(r"(?:^|\s)(?:" + KNOWN_TYPE.pattern + r")\s+AAAA")

# PEM and OpenSSH armour, PuTTY's .ppk, and the base64 of "openssh-key-v1" (a private key without its armour).
PRIVATE_KEY = re.compile(r"BEGIN [A-Z0-9 ]*PRIVATE KEY|PuTTY-User-Key-File|b3BlbnNzaC1rZXktdjE")
SSH2_PUBLIC_KEY = re.compile(r"-+ ?BEGIN SSH2 PUBLIC KEY ?-+", re.IGNORECASE)
PEM_PUBLIC_KEY = re.compile(r"-----BEGIN (RSA )?PUBLIC KEY-----")

TOO_LONG = f"The public key is too long: paste one OpenSSH public key of at most {MAX_INPUT_BYTES // 1024} KiB."
EMPTY = "No public key was given: paste the contents of your .pub file, e.g. ~/.ssh/id_ed25519.pub."
PRIVATE = ("This is a private key: paste only the public key (the .pub file, e.g. ~/.ssh/id_ed25519.pub), "
           "and consider the private key you pasted exposed: replace it with a new key pair.")
SSH2 = ("This is an SSH2 (RFC 4716) public key: convert it to OpenSSH format with `ssh-keygen -i -f key.pub` "
        "and paste the result.")
PEM = ("This is a PEM public key: convert it to OpenSSH format with `ssh-keygen -i -m PKCS8 -f key.pem` "
       "(`-m PEM` for BEGIN RSA PUBLIC KEY) and paste the result.")
SEVERAL = "Paste one key per request: this text holds several lines or several keys."
OPTIONS = ("authorized_keys options before the key type are not accepted: "
           "paste the key alone, starting with its type (e.g. ssh-ed25519).")
NOT_A_KEY = ("This is not an OpenSSH public key: paste the one line of your .pub file, which starts with "
             "ssh-ed25519, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521 or ssh-rsa.")
DSA = "DSA keys (ssh-dss) are not accepted as they are weak: create an ed25519 key with `ssh-keygen -t ed25519`."
SECURITY_KEY = ("Security-key (FIDO) keys (sk-...@openssh.com) are not supported: "
                "use an ed25519 key made with `ssh-keygen -t ed25519`.")
CERTIFICATE = "SSH certificates (...-cert-v01@openssh.com) are not supported: paste the plain public key instead."
COMMENT_TOO_LONG = f"The key's comment is too long: keep it to at most {MAX_COMMENT} characters."
COMMENT_UNPRINTABLE = "The key's comment must be printable text, without control characters such as tabs."


class PublicKey:
    """A checked OpenSSH public key; `line` is the canonical form ("type base64[ comment]")."""

    __slots__ = ("kind", "algorithm", "bits", "comment", "line", "fingerprint", "sha256")

    def __init__(self, kind, algorithm, bits, comment, blob):
        self.kind = kind
        self.algorithm = algorithm
        self.bits = bits
        self.comment = comment
        self.line = f"{algorithm} {base64.b64encode(blob).decode('ascii')}" + (f" {comment}" if comment else "")
        # MD5 only names the key (as DigitalOcean does); it protects nothing, hence usedforsecurity=False.
        self.fingerprint = hashlib.md5(blob, usedforsecurity=False).digest().hex(":")
        self.sha256 = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")

    def __repr__(self):
        return f"PublicKey({self.algorithm}, {self.bits} bits, {self.sha256})"


def parse(text):
    """The key in `text` (one .pub line), or ValueError with a sentence for the user."""
    line = _one_line(text)
    algorithm, encoded, comment = _fields(line)
    blob = _decode(algorithm, encoded)
    kind, bits = _check_key(algorithm, blob)
    return PublicKey(kind, algorithm, bits, _check_comment(comment), blob)


def _one_line(text):
    if not isinstance(text, str):
        raise ValueError(NOT_A_KEY)
    if len(text) > MAX_INPUT_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_INPUT_BYTES:
        raise ValueError(TOO_LONG)
    # A private key is named first, wherever it sits: it matters more than any other mistake.
    if PRIVATE_KEY.search(text):
        raise ValueError(PRIVATE)
    if SSH2_PUBLIC_KEY.search(text):
        raise ValueError(SSH2)
    if PEM_PUBLIC_KEY.search(text):
        raise ValueError(PEM)
    line = text.strip()
    if not line:
        raise ValueError(EMPTY)
    if "\n" in line or "\r" in line:
        raise ValueError(SEVERAL)
    return line


def _fields(line):
    """(type, base64, comment) of a line that starts with a recognised type."""
    parts = line.split(None, 2)
    algorithm = parts[0]
    if algorithm not in ACCEPTED:
        raise ValueError(_refusal(line, algorithm))
    if len(parts) < 2:
        raise ValueError(f"This {algorithm} key has no key data: paste the whole line of your .pub file.")
    comment = parts[2] if len(parts) == 3 else ""
    # Two keys on one line would otherwise pass, the second one as the first one's comment.
    if KEY_START.search(comment):
        raise ValueError(SEVERAL)
    return algorithm, parts[1], comment


def _refusal(line, first):
    """Why a line whose first word is not an accepted type is refused."""
    if first == "ssh-dss":
        return DSA
    if first.startswith("sk-") and first.endswith("@openssh.com"):
        return SECURITY_KEY
    if first.endswith("-cert-v01@openssh.com"):
        return CERTIFICATE
    # authorized_keys options (from="...", no-pty, command="a b") come before the type and blob.
    if KEY_START.search(line, len(first)):
        return OPTIONS
    return NOT_A_KEY


def _decode(algorithm, encoded):
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(_invalid(algorithm)) from None


def _invalid(algorithm):
    return f"This is not a valid {algorithm} public key: paste the line from your .pub file again, unchanged."


def _check_key(algorithm, blob):
    """(kind, bits) of the key in the blob, after checking it holds what its declared type says, and nothing more."""
    kind, bits = _read_key(algorithm, blob)
    if kind == "rsa" and bits < RSA_MIN_BITS:
        raise ValueError(f"This RSA key has {bits} bits, fewer than the {RSA_MIN_BITS} required: "
                         "create a new key with `ssh-keygen -t ed25519` (or `ssh-keygen -t rsa -b 4096`).")
    if kind == "rsa" and bits > RSA_MAX_BITS:
        raise ValueError(f"This RSA key has {bits} bits, more than the {RSA_MAX_BITS} OpenSSH accepts: "
                         "create a new key with `ssh-keygen -t ed25519`.")
    return kind, bits


def _read_key(algorithm, blob):
    """(kind, bits) of the key `cryptography` reads from the blob, or ValueError(_invalid(algorithm)).

    cryptography checks the type named inside the blob against the line's, an Ed25519 key's length, that
    an ECDSA point is uncompressed (NotImplementedError otherwise), within its field and on its curve, that
    an RSA exponent is odd, >= 3 and below the modulus, and that nothing follows the key. It takes an RSA
    number with a needless leading zero, which ssh-keygen reads but fingerprints without the zero: taking
    it would store a fingerprint that ssh-keygen does not give the key, and let one key be added twice. So
    the blob must also be the one cryptography writes back for the key (public_bytes), which makes the
    fingerprints (of the pasted blob) those ssh-keygen shows."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_ssh_public_key
    line = algorithm.encode("ascii") + b" " + base64.b64encode(blob)
    try:
        key = load_ssh_public_key(line)
        canonical = key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    except (ValueError, NotImplementedError, UnsupportedAlgorithm):
        raise ValueError(_invalid(algorithm)) from None
    if canonical != line:
        raise ValueError(_invalid(algorithm))
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 256
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ecdsa", key.curve.key_size
    if isinstance(key, rsa.RSAPublicKey) and key.public_numbers().n % 2:  # cryptography takes an even modulus
        return "rsa", key.key_size
    raise ValueError(_invalid(algorithm))


def _check_comment(comment):
    if len(comment) > MAX_COMMENT:
        raise ValueError(COMMENT_TOO_LONG)
    if not comment.isprintable():
        raise ValueError(COMMENT_UNPRINTABLE)
    return comment


# ---------------------------------------------------------------- API
#
# A user's keys are theirs: developers and up add and delete their own (admins
# anyone's in the tenant); everyone in the tenant can read them, since a
# server may be given any colleague's key. The cloud hears of a key only when
# a server is first created with it; keys are shared in the cloud account by
# fingerprint, so two users (or tenants) with one key use one account key.
# A key the account already holds is used as it is, whoever added it; only a
# key this installation added itself (`account_keys_added`) is ever removed.

COLUMNS = "id, user_id, name, public_key, algorithm, bits, fingerprint, sha256, created_at"


def represent(row):
    return {"id": row["id"], "user_id": row["user_id"], "name": row["name"], "public_key": row["public_key"],
            "type": row["algorithm"], "bits": row["bits"], "fingerprint": row["fingerprint"],
            "sha256": row["sha256"], "created_at": row["created_at"]}


def _public_key(value):
    if not isinstance(value, str):
        raise ValueError("must be a string: the contents of your .pub file")
    return parse(value)


def listing(ctx, args):
    """One page of the tenant's keys (args: limit, cursor, owner)."""
    where, params = ["tenant_id = %s"], [ctx.tenant_id]
    if args["owner"] == "me":
        where.append("user_id = %s")
        params.append(ctx.principal.user_id)
    return ctx.db.page(f"SELECT {COLUMNS} FROM ssh_keys", where, params, args)


def load(ctx, key_id):
    return ctx.db.existing("SSH key", f"SELECT {COLUMNS}, cloud_key_id FROM ssh_keys WHERE id = %s "
                           "AND tenant_id = %s", (key_id, ctx.tenant_id))


def create(ctx, fields):
    """POST /api/ssh-keys {"name", "public_key"}: the new key's row; the same key twice for one user is a
    Conflict."""
    fields = validate(fields, {
        "name": Field(text(100, r"[^\x00-\x1f\x7f]+", "must be printable text", allow_empty=False), required=True),
        "public_key": Field(_public_key, required=True)})
    key, principal = fields["public_key"], ctx.principal
    key_id = ctx.target = new_id()
    clash = ctx.db.one("SELECT name, fingerprint = %s AS same FROM ssh_keys WHERE tenant_id = %s AND user_id = %s "
                       "AND (fingerprint = %s OR name = %s)",
                       (key.fingerprint, principal.tenant_id, principal.user_id, key.fingerprint, fields["name"]))
    if clash:
        raise (Conflict(f"you already have this key, named {clash['name']!r}", "ssh-key-exists") if clash["same"]
               else Conflict(f"you already have a key named {fields['name']!r}", "ssh-key-name-taken"))
    if not ctx.db.insert_new(
            "INSERT INTO ssh_keys (id, tenant_id, user_id, name, public_key, algorithm, bits, fingerprint, sha256, "
            "created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6))",
            (key_id, principal.tenant_id, principal.user_id, fields["name"], key.line, key.algorithm, key.bits,
             key.fingerprint, key.sha256)):
        raise Conflict("you already have this key", "ssh-key-exists")
    return load(ctx, key_id)


def delete(ctx, key_id):
    """DELETE /api/ssh-keys/<id>: your own key (an admin: anyone's). Servers that have it keep it.
    An account key that could not be removed is a line in the operator's log (`ctx.log`)."""
    from . import auth, limits
    row = load(ctx, key_id)
    ctx.target = row["id"]
    principal = ctx.principal
    if row["user_id"] != principal.user_id and auth.RANK[principal.role] < auth.RANK["admin"]:
        raise Forbidden("this key belongs to another user; only they or an admin can delete it")
    added = _added_here(ctx, row)
    if added:
        limits.spend(ctx, "cloud")
    ctx.db.update("DELETE FROM ssh_keys WHERE id = %s", (row["id"],))
    if added:
        _forget_in_cloud(ctx, row)


def _added_here(ctx, row):
    """Whether deleting this row may remove its account key: it is the last row with the key, and the
    key in the account is one this installation added itself."""
    db = ctx.db
    if not row["cloud_key_id"] or db.one("SELECT 1 AS used FROM ssh_keys WHERE fingerprint = %s AND id <> %s "
                                         "LIMIT 1", (row["fingerprint"], row["id"])):
        return False
    added = db.one("SELECT 1 AS ours FROM account_keys_added WHERE cloud_key_id = %s", (row["cloud_key_id"],))
    return added is not None


def _forget_in_cloud(ctx, row):
    """Remove the account key this installation added, unless someone on the platform has the key again,
    or it is no longer named as we named it. The same key may be in the account for someone else too (an
    operator renamed it, or another installation uses it): best effort, since a key left in the account
    is only used when we name it."""
    from . import ownership
    db, cloud_key_id = ctx.db, row["cloud_key_id"]
    if db.one("SELECT 1 AS used FROM ssh_keys WHERE fingerprint = %s LIMIT 1", (row["fingerprint"],)):
        return
    try:
        key = ctx.cloud.account_key(cloud_key_id)
        if key is not None and key.get("name") == ownership.key_name(ctx.config, row["fingerprint"]):
            ctx.cloud.delete_key(cloud_key_id)
    except CloudFailed as exc:
        ctx.log(f"account key {cloud_key_id} not removed: {exc.message}")
        return
    db.update("DELETE FROM account_keys_added WHERE cloud_key_id = %s", (cloud_key_id,))


def cloud_ids(ctx, key_ids):
    """The cloud account's key ids for the tenant's keys named in a server create (Invalid names an
    unknown key; the cloud failing is CloudFailed). Each is looked up by fingerprint every time, one
    call a key the account has: a key someone removed from the account behind our back is added again
    instead of failing the create."""
    if not key_ids:
        return []
    rows = named(ctx, key_ids)
    found = []
    for key_id in key_ids:
        row = rows[key_id]
        cloud_key_id = _account_key(ctx, row)
        if cloud_key_id != row["cloud_key_id"]:
            ctx.db.update("UPDATE ssh_keys SET cloud_key_id = %s WHERE fingerprint = %s",
                          (cloud_key_id, row["fingerprint"]))
        found.append(cloud_key_id)
    return found


def named(ctx, key_ids):
    """{id: row} of the tenant's keys named in a server create, or Invalid naming the first unknown one."""
    rows = ctx.db.tenant_rows("ssh_keys", "id, name, public_key, fingerprint, cloud_key_id", ctx.tenant_id, key_ids)
    missing = [key_id for key_id in key_ids if key_id not in rows]
    if missing:
        raise invalid({"ssh_keys": f"no SSH key {missing[0]}; add it with POST /api/ssh-keys"})
    return rows


def _account_key(ctx, row):
    """The account's key for this row's key: the one already there, whoever added it (used, never
    removed), or one added now and recorded as this installation's. A key someone else adds between the
    look and the add is recorded too, but it does not carry our name, which removing it also needs."""
    from . import ownership
    there = ctx.cloud.account_key(row["fingerprint"])
    if there is not None:
        return there["id"]
    cloud_key_id = ctx.cloud.register_key(public_key=row["public_key"], fingerprint=row["fingerprint"],
                                          name=ownership.key_name(ctx.config, row["fingerprint"]))
    ctx.db.update("INSERT INTO account_keys_added (cloud_key_id, fingerprint, added_at) VALUES "
                  "(%s, %s, UTC_TIMESTAMP(6)) ON DUPLICATE KEY UPDATE fingerprint = VALUES(fingerprint)",
                  (cloud_key_id, row["fingerprint"]))
    return cloud_key_id
