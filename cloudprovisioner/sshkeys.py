"""Users' SSH public keys: parsing the one line of a .pub file into a checked `PublicKey`,
and the API over a tenant's keys (GET/POST/DELETE /api/ssh-keys, at the end).

`parse` takes exactly what a user pasted and either returns the key (its kind,
strength, comment, canonical line and the fingerprints DigitalOcean and
`ssh-keygen -l` show) or raises ValueError with one sentence saying what is
wrong and what to do. Those messages never quote the pasted text: it may be a
private key pasted by mistake, and messages end up in answers and logs.

The SSH wire format (RFC 4251 section 5, RFC 4253 section 6.6, RFC 5656,
RFC 8709) is read here by hand: importing `cryptography` would cost every CGI
request its start-up time.
"""

import base64
import binascii
import hashlib
import re

from .errors import Problem, invalid
from .ids import new_id
from .validation import Field, one_of, text, validate
from .web import Response, list_page, list_query, log

MAX_INPUT_BYTES = 16 * 1024
MAX_COMMENT = 255
RSA_MIN_BITS = 2048
RSA_MAX_BITS = 16384  # OpenSSH's own ceiling (OPENSSH_RSA_MAX_MODULUS_SIZE)

# NIST curves: the curve's name inside the blob, its size, the field prime p and the coefficient b
# of y^2 = x^3 - 3x + b (FIPS 186-4, appendix D.1.2), for checking that a point lies on its curve.
CURVES = {
    "ecdsa-sha2-nistp256": ("nistp256", 256, 2**256 - 2**224 + 2**192 + 2**96 - 1, int(
        "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b", 16)),
    "ecdsa-sha2-nistp384": ("nistp384", 384, 2**384 - 2**128 - 2**96 + 2**32 - 1, int(
        "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875a"
        "c656398d8a2ed19d2a85c8edd3ec2aef", 16)),
    "ecdsa-sha2-nistp521": ("nistp521", 521, 2**521 - 1, int(
        "0051953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef1"
        "09e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b50"
        "3f00", 16)),
}
ACCEPTED = ("ssh-ed25519", *CURVES, "ssh-rsa")
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
    kind, bits = _check_blob(algorithm, blob)
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


def _check_blob(algorithm, blob):
    """(kind, bits) after checking the blob holds what its declared type says, and nothing more."""
    try:
        reader = _Reader(blob)
        if reader.text() != algorithm:
            raise _Malformed
        kind, bits = _READERS[algorithm](algorithm, reader)
        if not reader.done():
            raise _Malformed
    except _Malformed:
        raise ValueError(_invalid(algorithm)) from None
    if kind == "rsa" and bits < RSA_MIN_BITS:
        raise ValueError(f"This RSA key has {bits} bits, fewer than the {RSA_MIN_BITS} required: "
                         "create a new key with `ssh-keygen -t ed25519` (or `ssh-keygen -t rsa -b 4096`).")
    if kind == "rsa" and bits > RSA_MAX_BITS:
        raise ValueError(f"This RSA key has {bits} bits, more than the {RSA_MAX_BITS} OpenSSH accepts: "
                         "create a new key with `ssh-keygen -t ed25519`.")
    return kind, bits


def _ed25519(algorithm, reader):
    if len(reader.string()) != 32:
        raise _Malformed
    return "ed25519", 256


def _ecdsa(algorithm, reader):
    curve, bits, p, b = CURVES[algorithm]
    if reader.text() != curve:
        raise _Malformed
    point = reader.string()
    size = (bits + 7) // 8
    # Only the uncompressed form (0x04 || X || Y) is valid in SSH (RFC 5656 section 3.1).
    if len(point) != 1 + 2 * size or point[0] != 4:
        raise _Malformed
    x, y = int.from_bytes(point[1:1 + size], "big"), int.from_bytes(point[1 + size:], "big")
    if x >= p or y >= p or (y * y - (x * x * x - 3 * x + b)) % p:
        raise _Malformed
    return "ecdsa", bits


def _rsa(algorithm, reader):
    exponent, modulus = reader.mpint(), reader.mpint()
    if exponent < 3 or exponent % 2 == 0 or modulus % 2 == 0:
        raise _Malformed
    return "rsa", modulus.bit_length()


_READERS = {"ssh-ed25519": _ed25519, "ssh-rsa": _rsa, **dict.fromkeys(CURVES, _ecdsa)}


def _check_comment(comment):
    if len(comment) > MAX_COMMENT:
        raise ValueError(COMMENT_TOO_LONG)
    if not comment.isprintable():
        raise ValueError(COMMENT_UNPRINTABLE)
    return comment


class _Malformed(Exception):
    """The blob does not hold a key of its declared type (always reported as one sentence by the caller)."""


class _Reader:
    """Reads SSH wire-format fields from a blob; any shortfall is _Malformed."""

    def __init__(self, blob):
        self.blob, self.offset = blob, 0

    def string(self):
        if self.offset + 4 > len(self.blob):
            raise _Malformed
        length = int.from_bytes(self.blob[self.offset:self.offset + 4], "big")
        start, self.offset = self.offset + 4, self.offset + 4 + length
        if self.offset > len(self.blob):
            raise _Malformed
        return self.blob[start:self.offset]

    def text(self):
        try:
            return self.string().decode("ascii")
        except UnicodeDecodeError:
            raise _Malformed from None

    def mpint(self):
        """A non-negative mpint (RFC 4251 section 5): a set top bit would make it negative. Only the minimal
        encoding is taken: OpenSSH drops needless leading zeros before it fingerprints a key, so a blob with
        any would be fingerprinted here unlike `ssh-keygen -l` does, and one key could be added twice."""
        data = self.string()
        if not data or data[0] & 0x80 or (data[0] == 0 and (len(data) == 1 or not data[1] & 0x80)):
            raise _Malformed
        return int.from_bytes(data, "big")

    def done(self):
        return self.offset == len(self.blob)


# ---------------------------------------------------------------- API
#
# A user's keys are theirs: developers and up add and delete their own (admins
# anyone's in the tenant); everyone in the tenant can read them, since a
# server may be given any colleague's key. The cloud hears of a key only when
# a server is first created with it; keys are shared in the cloud account by
# fingerprint, so two users (or tenants) with one key use one account key.

COLUMNS = "id, user_id, name, public_key, algorithm, bits, fingerprint, sha256, created_at"


def _represent(row):
    return {"id": row["id"], "user_id": row["user_id"], "name": row["name"], "public_key": row["public_key"],
            "type": row["algorithm"], "bits": row["bits"], "fingerprint": row["fingerprint"],
            "sha256": row["sha256"], "created_at": row["created_at"]}


def _public_key(value):
    if not isinstance(value, str):
        raise ValueError("must be a string: the contents of your .pub file")
    return parse(value)


def list_keys(request):
    args = list_query(request, {"owner": Field(one_of(("me", "anyone"), "owner"), default="anyone")})
    where, params = ["tenant_id = %s"], [request.principal.tenant_id]
    if args["owner"] == "me":
        where.append("user_id = %s")
        params.append(request.principal.user_id)
    return list_page(request, "/ssh-keys", f"SELECT {COLUMNS} FROM ssh_keys", where, params, args, _represent)


def _load(request, key_id):
    return request.db.one_or_404("SSH key", f"SELECT {COLUMNS}, cloud_key_id FROM ssh_keys WHERE id = %s "
                                 "AND tenant_id = %s", (key_id, request.principal.tenant_id))


def get_key(request):
    return Response(200, _represent(_load(request, request.params["key_id"])))


def create_key(request):
    """POST /api/ssh-keys {"name", "public_key"}: 201; the same key twice for one user is a 409."""
    fields = validate(request.fields(), {
        "name": Field(text(100, r"[^\x00-\x1f\x7f]+", "must be printable text", allow_empty=False), required=True),
        "public_key": Field(_public_key, required=True)})
    key, principal = fields["public_key"], request.principal
    key_id = request.audit_target = new_id()
    clash = request.db.one("SELECT name, fingerprint = %s AS same FROM ssh_keys WHERE tenant_id = %s AND user_id = %s "
                           "AND (fingerprint = %s OR name = %s)",
                           (key.fingerprint, principal.tenant_id, principal.user_id, key.fingerprint, fields["name"]))
    if clash:
        raise (Problem(409, "ssh-key-exists", f"you already have this key, named {clash['name']!r}") if clash["same"]
               else Problem(409, "ssh-key-name-taken", f"you already have a key named {fields['name']!r}"))
    if not request.db.insert_new(
            "INSERT INTO ssh_keys (id, tenant_id, user_id, name, public_key, algorithm, bits, fingerprint, sha256, "
            "created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6))",
            (key_id, principal.tenant_id, principal.user_id, fields["name"], key.line, key.algorithm, key.bits,
             key.fingerprint, key.sha256)):
        raise Problem(409, "ssh-key-exists", "you already have this key")
    return Response(201, _represent(_load(request, key_id)), [("Location", request.url(f"/ssh-keys/{key_id}"))])


def delete_key(request):
    """DELETE /api/ssh-keys/<id>: your own key (an admin: anyone's). Servers that have it keep it."""
    from . import auth
    row = _load(request, request.params["key_id"])
    request.audit_target = row["id"]
    principal = request.principal
    if row["user_id"] != principal.user_id and auth.RANK[principal.role] < auth.RANK["admin"]:
        raise Problem(403, "forbidden", "this key belongs to another user; only they or an admin can delete it")
    request.db.update("DELETE FROM ssh_keys WHERE id = %s", (row["id"],))
    if row["cloud_key_id"]:
        _forget_in_cloud(request, row)
    return Response(204)


def _forget_in_cloud(request, row):
    """Remove the account key when no one on the platform has it any more, and only if this
    installation added it (its name says so): the same key may have been in the account before,
    added by hand or by another installation, and is theirs too (best effort: a key left in the
    account is only used when we name it)."""
    from . import ownership, provider
    if request.db.one("SELECT 1 AS used FROM ssh_keys WHERE fingerprint = %s LIMIT 1", (row["fingerprint"],)):
        return
    config = request.config
    try:
        budget = provider.request_budget(config)
        key = provider.account_key(config, budget, row["cloud_key_id"])
        if key is None or key.get("name") != ownership.key_name(config, row["fingerprint"]):
            return
        provider.delete_key(config, budget, row["cloud_key_id"])
    except provider.CloudError as exc:
        log(request.environ, f"account key {row['cloud_key_id']} not removed: {exc.message}")


def cloud_ids(request, key_ids):
    """The cloud account's key ids for the tenant's keys named in a server create (a 422 names an
    unknown key). Each is looked up by fingerprint every time, one call a key: a key someone removed
    from the account behind our back is added again instead of failing the create."""
    from . import ownership, provider
    from .servers import cloud_problem
    if not key_ids:
        return []
    rows = request.db.tenant_rows("ssh_keys", "id, name, public_key, fingerprint, cloud_key_id",
                                  request.principal.tenant_id, key_ids)
    missing = [key_id for key_id in key_ids if key_id not in rows]
    if missing:
        raise invalid({"ssh_keys": f"no SSH key {missing[0]}; add it with POST /api/ssh-keys"})
    found = []
    for key_id in key_ids:
        row = rows[key_id]
        try:
            cloud_key_id = provider.register_key(
                request.config, provider.request_budget(request.config), public_key=row["public_key"],
                name=ownership.key_name(request.config, row["fingerprint"]),
                fingerprint=row["fingerprint"])
        except provider.CloudError as exc:
            raise cloud_problem(exc) from None
        if cloud_key_id != row["cloud_key_id"]:
            request.db.update("UPDATE ssh_keys SET cloud_key_id = %s WHERE fingerprint = %s",
                              (cloud_key_id, row["fingerprint"]))
        found.append(cloud_key_id)
    return found
