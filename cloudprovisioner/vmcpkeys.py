"""The cryptography of a VM Configuration Point (VMCP) responder: what gets signed, signing it, the
tenant's RSA signing key (checking a pasted PEM, making a new one, its public forms) and keeping that
key encrypted at rest.

The CernVM WebAPI calls a VMCP URL with a `cvm_salt` and accepts the JSON reply only if its
`signature` field verifies under the public key it holds for the domain. It does not verify the
bytes we sent: it rebuilds a text from the JSON it parsed (libcernvm DomainKeystore::signatureValidate)
and verifies that, so `signed_text` must rebuild exactly the same text:

- the keys in byte-wise order (a std::map<std::string, ...>), each line `lowercase(key)=urlencode(value)\\n`,
  the key lowercased only for the line and only in ASCII (C `tolower`), a key that lowercases to
  "signature" left out (it is where the client takes the signature from);
- urlencode keeps `A-Za-z0-9-_.~` and writes every other UTF-8 byte as `%XX`, upper-case hex;
- the salt appended with no newline;
- only strings and 32-bit integers reach the client's map (jsoncpp `isString` / `isInt`): any other value
  would be dropped there and the signature would no longer match, so it is refused here.

Signatures are RSA PKCS#1 v1.5 over SHA-512, base64, since that is all the client verifies.

Every function is pure: no database, no HTTP. `cryptography` is imported inside the functions that
need it, because this module is also imported by requests that never sign. What those imports cost,
measured on the 2-core test host (five runs, warm cache, sum of the cumulative column of the
`cryptography...` lines):
    .venv/bin/python -X importtime -c "import cryptography.hazmat.primitives.serialization,
        cryptography.hazmat.primitives.hashes, cryptography.hazmat.primitives.asymmetric.rsa,
        cryptography.hazmat.primitives.asymmetric.padding, cryptography.hazmat.primitives.ciphers.aead,
        cryptography.hazmat.primitives.kdf.hkdf"
  about 17-18 ms for all of them (35 ms on a cold first run); `serialization` is most of it (its SSH
  module alone ~11 ms). Decrypting only (hashes, ciphers.aead, kdf.hkdf) costs about 9 ms.

Messages about a pasted key never quote it: it is a private key, and messages end up in answers
and logs.
"""

import base64
import binascii
import hashlib
import re

RSA_MIN_BITS = 2048
# What the responder can afford. CPU time on the 2-core test host (time.process_time around
# load_private_key, and around loading trusted + sign per answer): 4,096 bits 0.25 s to check, 3 ms an
# answer; 8,192 bits 3.6 s, 31 ms; 16,384 bits 26.9 s, 212 ms. The size is read from the key's DER first
# (_check_size), so a larger key is refused in well under a millisecond.
RSA_MAX_BITS = 4096
GENERATE_BITS = (2048, 3072, 4096)
MAX_PEM_CHARS = 64 * 1024  # room for certificates pasted beside the key
# The DER of a 4,096-bit RSA key is about 2,400 bytes (PKCS#8); a key of another type that is larger than
# this is larger than anything the checks after it should spend time on.
MAX_KEY_DER_BYTES = 4096
INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # what jsoncpp's isInt() accepts

SECRET_MIN_CHARS = 32
HKDF_INFO = b"cloudprovisioner vmcp key v1"
TOKEN_PREFIX = "v1:"
NONCE_BYTES = 12
TAG_BYTES = 16
CANNOT_DECRYPT = "the stored signing key cannot be decrypted with CP_VMCP_KEY_SECRET"

# Per byte, what urlencode writes: unreserved bytes stay, every other byte is %XX in upper-case hex.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_ESCAPED = [bytes([byte]) if byte in _UNRESERVED else b"%%%02X" % byte for byte in range(256)]

# A PEM block: its label and everything up to the matching END line (checked by the backreference).
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\n(.*?)-----END \1-----", re.DOTALL)
PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]+-----")

NEW_KEY_HINT = "make an RSA key with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out key.pem`"
NOT_PEM = ("This is not a PEM private key: paste the whole key file, from its -----BEGIN PRIVATE KEY----- "
           "(or -----BEGIN RSA PRIVATE KEY-----) line to its -----END line.")
OPENSSH = ("This is an OpenSSH private key, which is not PEM: convert a copy with "
           "`ssh-keygen -p -m PKCS8 -N '' -f key.copy` and paste the result.")
ENCRYPTED = ("The private key is encrypted with a passphrase: remove the passphrase with "
             "`openssl pkey -in key.pem -out key-plain.pem` and paste key-plain.pem.")
PUBLIC = ("This is a public key, not the private key: paste the private key (BEGIN PRIVATE KEY or "
          "BEGIN RSA PRIVATE KEY); its public key is derived from it.")
CERTIFICATE = ("This is a certificate, not a private key: paste the private key (BEGIN PRIVATE KEY or "
               "BEGIN RSA PRIVATE KEY) the certificate was made for.")
TOO_MANY = ("There is more than one private key here: paste exactly one RSA private key.")
OTHER_PEM = ("This PEM file holds no private key: paste the RSA private key (BEGIN PRIVATE KEY or "
             "BEGIN RSA PRIVATE KEY).")
DAMAGED = ("The private key could not be read: its PEM content is damaged or incomplete; paste the whole "
           "file again, unchanged.")
TOO_LARGE = (f"This private key is larger than an RSA key of {RSA_MAX_BITS} bits, the most accepted here: "
             f"{NEW_KEY_HINT}.")
TOO_LONG = f"The input is too long for a private key: paste one PEM key of at most {MAX_PEM_CHARS // 1024} KiB."
SHORT_SECRET = (f"CP_VMCP_KEY_SECRET must be a string of at least {SECRET_MIN_CHARS} characters, e.g. "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`.")


# --- What is signed -------------------------------------------------------------------------------

def signed_text(document: dict, salt: str) -> bytes:
    """The exact bytes the CernVM WebAPI rebuilds from `document` and verifies (see the module docstring)."""
    if not isinstance(salt, str):
        raise TypeError("the salt must be a string")
    lines = []
    for key in sorted(_checked_keys(document), key=lambda key: key.encode("utf-8")):
        if key == "signature":
            continue
        lines.append(key.encode("utf-8").lower() + b"=" + _urlencode(_value_text(key, document[key])) + b"\n")
    return b"".join(lines) + salt.encode("utf-8")


def _checked_keys(document: dict) -> list:
    """The keys of `document`, refusing those the client would read differently from us."""
    if not isinstance(document, dict):
        raise TypeError("the VMCP document must be a dict")
    for key in document:
        if not isinstance(key, str):
            raise TypeError(f"VMCP key {key!r} is not a string")
        if "\x00" in key:
            # Older jsoncpp keeps strings as C strings: the client would cut the key at the NUL.
            raise ValueError(f"VMCP key {key!r} contains a NUL character")
        # The client takes the signature from any key that lowercases to "signature" (the last one wins).
        if key != "signature" and key.encode("utf-8").lower() == b"signature":
            raise ValueError(f"VMCP key {key!r} would be read as the signature by the CernVM WebAPI")
    return list(document)


def _value_text(key: str, value) -> str:
    """The text the client holds for `value`; TypeError for what it would drop instead."""
    # bool is an int in Python but a boolean in JSON, which the client drops.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"VMCP value of {key!r} is a {type(value).__name__}: only strings and integers are "
                        "signed by the CernVM WebAPI (convert it to one of them)")
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ValueError(f"VMCP value of {key!r} is outside the 32-bit range the CernVM WebAPI reads")
        return str(value)
    if "\x00" in value:
        raise ValueError(f"VMCP value of {key!r} contains a NUL character, which the CernVM WebAPI cuts off")
    return value


def _urlencode(text: str) -> bytes:
    """RFC 3986 percent-encoding of the UTF-8 bytes, upper-case hex, a space as %20 (never +)."""
    return b"".join(_ESCAPED[byte] for byte in text.encode("utf-8"))


def sign(private_key, document: dict, salt: str) -> dict:
    """A copy of `document` with its "signature": base64 of RSA PKCS#1 v1.5 / SHA-512 over signed_text."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise TypeError("a VMCP document is signed with an RSA private key")
    signature = private_key.sign(signed_text(document, salt), padding.PKCS1v15(), hashes.SHA512())
    return {**document, "signature": base64.b64encode(signature).decode("ascii")}


# --- The signing key ------------------------------------------------------------------------------

def load_private_key(pem: str, trusted: bool = False):
    """The RSA private key in `pem` (PKCS#1 or PKCS#8, unencrypted); ValueError saying what is wrong.

    `trusted` skips OpenSSL's check that the key's numbers are consistent, for a key that was checked
    when it was stored: the check costs ~30 ms of a responder request's ~60 (measured here with 2048 bits).
    """
    if not isinstance(pem, str):
        raise TypeError("the private key must be given as PEM text")
    if len(pem) > MAX_PEM_CHARS:
        raise ValueError(TOO_LONG)
    # Pasted text may come with CRLF line ends or indented lines; PEM armour does not care.
    text = "\n".join(line.strip() for line in pem.splitlines()) + "\n"
    label, block = _one_private_block(text)
    if label == "ENCRYPTED PRIVATE KEY" or "Proc-Type: 4,ENCRYPTED" in block:
        raise ValueError(ENCRYPTED)
    # Before OpenSSL sees the key: its consistency check costs seconds for a large key.
    _check_size(_der(block), label)
    key = _deserialize(block, trusted)
    _check_rsa(key)
    return key


def _one_private_block(text: str) -> tuple:
    """(label, PEM text) of the one private key block in `text`; other blocks (certificates, EC parameters) are
    ignored beside it."""
    blocks = [(match.group(1), match.group(0)) for match in PEM_BLOCK.finditer(text)]
    private = [block for block in blocks if block[0].endswith("PRIVATE KEY")]
    if len(private) > 1:
        raise ValueError(TOO_MANY)
    if private:
        if private[0][0] == "OPENSSH PRIVATE KEY":
            raise ValueError(OPENSSH)
        return private[0]
    labels = {label for label, _ in blocks}
    if labels & {"PUBLIC KEY", "RSA PUBLIC KEY"}:
        raise ValueError(PUBLIC)
    if any("CERTIFICATE" in label for label in labels):
        raise ValueError(CERTIFICATE)
    if blocks:
        raise ValueError(OTHER_PEM)
    # A BEGIN line without its END line is a cut-off paste rather than something else entirely.
    raise ValueError(DAMAGED if PEM_BEGIN.search(text) else NOT_PEM)


def _der(block: str) -> bytes:
    """The DER bytes inside one PEM block (its armour lines and any header lines left out)."""
    lines = block.splitlines()[1:-1]
    try:
        return base64.b64decode("".join(line for line in lines if ":" not in line), validate=True)
    except binascii.Error:
        raise ValueError(DAMAGED) from None


def _check_size(der: bytes, label: str) -> None:
    """ValueError for a key larger than RSA_MAX_BITS (or an RSA key under RSA_MIN_BITS), read from the key's
    structure alone: no number in it is checked, so this costs microseconds whatever the key."""
    bits = _rsa_modulus_bits(der, label)
    if bits is not None:
        _check_bits(bits)
    elif len(der) > MAX_KEY_DER_BYTES:
        raise ValueError(TOO_LARGE)


def _check_bits(bits: int) -> None:
    if bits < RSA_MIN_BITS:
        raise ValueError(f"This RSA key has only {bits} bits, too weak to sign with: use at least "
                         f"{RSA_MIN_BITS} bits; {NEW_KEY_HINT}.")
    if bits > RSA_MAX_BITS:
        raise ValueError(f"This RSA key has {bits} bits, more than the {RSA_MAX_BITS} accepted here: "
                         f"{NEW_KEY_HINT}.")


# DER tags (X.690) of the parts of a key's structure read here.
_INTEGER, _OCTET_STRING, _SEQUENCE = 0x02, 0x04, 0x30


def _rsa_modulus_bits(der: bytes, label: str):
    """The bit length of the modulus of an RSA private key's DER (PKCS#1 RSAPrivateKey, or PKCS#8 holding
    one), None for a key of another type; ValueError(DAMAGED) for DER whose lengths do not add up."""
    if label == "PRIVATE KEY":
        der = _pkcs8_private_key(der)
    elif label != "RSA PRIVATE KEY":
        return None
    # RSAPrivateKey (RFC 8017 A.1.2): SEQUENCE { version INTEGER, modulus INTEGER, ... }
    items = _der_items(_der_item(der, 0, _SEQUENCE)[0], 2) if der[:1] == bytes([_SEQUENCE]) else []
    if [tag for _, tag in items] != [_INTEGER, _INTEGER]:
        return None  # not an RSA key (EC, Ed25519, DSA...): OpenSSL judges it, under MAX_KEY_DER_BYTES
    modulus = items[1][0].lstrip(b"\x00")
    return (len(modulus) - 1) * 8 + modulus[0].bit_length() if modulus else 0


def _pkcs8_private_key(der: bytes) -> bytes:
    """The privateKey of a PKCS#8 PrivateKeyInfo (RFC 5208: SEQUENCE { version, algorithm, OCTET STRING
    privateKey, ... }), or b"" when the structure holds none."""
    items = _der_items(_der_item(der, 0, _SEQUENCE)[0], 3)
    return items[2][0] if len(items) == 3 and items[2][1] == _OCTET_STRING else b""


def _der_items(content: bytes, count: int) -> list:
    """The first `count` (content, tag) items of a constructed value's content."""
    items, offset = [], 0
    while offset < len(content) and len(items) < count:
        value, tag, offset = _der_item(content, offset)
        items.append((value, tag))
    return items


def _der_item(data: bytes, offset: int, tag: int | None = None) -> tuple:
    """(content, tag, offset after it) of the DER item at `offset`: definite lengths only, as DER has."""
    if offset + 2 > len(data) or (tag is not None and data[offset] != tag):
        raise ValueError(DAMAGED)
    found, length, start = data[offset], data[offset + 1], offset + 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4 or start + size > len(data):
            raise ValueError(DAMAGED)
        length, start = int.from_bytes(data[start:start + size], "big"), start + size
    if start + length > len(data):
        raise ValueError(DAMAGED)
    return data[start:start + length], found, start + length


def _deserialize(block: str, trusted: bool = False):
    """The key object in one PEM block, whatever its type."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(block.encode("ascii"), password=None,
                                                  unsafe_skip_rsa_key_validation=trusted)
    except TypeError:
        # cryptography's way of saying the key needs a password (a form the checks above did not spot).
        raise ValueError(ENCRYPTED) from None
    except UnsupportedAlgorithm:
        raise ValueError("This private key is of a type that cannot be read here; the CernVM WebAPI verifies "
                         f"RSA signatures only: {NEW_KEY_HINT}.") from None
    except (ValueError, UnicodeEncodeError):
        # Deliberately not cryptography's message: keep what the user pasted out of answers and logs.
        raise ValueError(DAMAGED) from None


def _check_rsa(key) -> None:
    """ValueError unless `key` is an RSA private key of a usable size."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"This is {_key_kind(key)} private key, but the CernVM WebAPI verifies RSA signatures "
                         f"only: {NEW_KEY_HINT}.")
    _check_bits(key.key_size)


def _key_kind(key) -> str:
    """A name for a non-RSA key, with its article: "an EC (secp256r1)", "an Ed25519"."""
    # Not dh: touching cryptography's DH classes raises its deprecation warning, and nobody pastes a DH key.
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, x448, x25519

    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC ({key.curve.name})"
    kinds = ((ed25519.Ed25519PrivateKey, "an Ed25519"), (ed448.Ed448PrivateKey, "an Ed448"),
             (dsa.DSAPrivateKey, "a DSA"), (x25519.X25519PrivateKey, "an X25519"), (x448.X448PrivateKey, "an X448"))
    return next((name for kind, name in kinds if isinstance(key, kind)), "a non-RSA")


def generate(bits: int = 2048):
    """A new RSA private key of `bits` (2048, 3072 or 4096) and public exponent 65537."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    # bool is an int: generate(True) must not pass as a size.
    if isinstance(bits, bool) or bits not in GENERATE_BITS:
        raise ValueError(f"An RSA signing key has 2048, 3072 or 4096 bits, not {bits!r}.")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_pem(private_key) -> str:
    """The key as unencrypted PKCS#8 PEM: the form that `encrypt` keeps at rest."""
    from cryptography.hazmat.primitives import serialization

    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode("ascii")


def public_forms(private_key) -> dict:
    """The public half as the CernVM domain key list holds it (base64 DER SubjectPublicKeyInfo), as PEM, its
    size and an OpenSSH-style SHA256 fingerprint of the DER."""
    from cryptography.hazmat.primitives import serialization

    public = private_key.public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "public_key_base64": base64.b64encode(der).decode("ascii"),
        "public_key_pem": pem.decode("ascii"),
        "bits": public.key_size,
        "fingerprint": "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode("ascii").rstrip("="),
    }


# --- Encryption at rest ---------------------------------------------------------------------------

def _aead(secret: str):
    """AES-256-GCM keyed by HKDF-SHA256 of the configured secret."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if not isinstance(secret, str) or len(secret) < SECRET_MIN_CHARS:
        raise ValueError(SHORT_SECRET)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(secret.encode("utf-8"))
    return AESGCM(key)


def encrypt(secret: str, tenant_id: str, plaintext: bytes) -> str:
    """A token "v1:" + base64(nonce + ciphertext) of `plaintext`, bound to `tenant_id` (the associated data),
    so one tenant's ciphertext cannot be moved to another tenant's row."""
    import os

    aead = _aead(secret)
    if not isinstance(tenant_id, str) or not tenant_id:
        raise TypeError("the tenant id must be a non-empty string")
    if not isinstance(plaintext, bytes):
        raise TypeError("only bytes are encrypted")
    # A fresh random nonce every time: GCM must never reuse one under the same key.
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = aead.encrypt(nonce, plaintext, tenant_id.encode("utf-8"))
    return TOKEN_PREFIX + base64.b64encode(nonce + ciphertext).decode("ascii")


def decrypt(secret: str, tenant_id: str, token: str) -> bytes:
    """The plaintext of an `encrypt` token; ValueError(CANNOT_DECRYPT) whatever went wrong with the token."""
    from cryptography.exceptions import InvalidTag

    aead = _aead(secret)  # a secret that is too short is a configuration error, told as such
    try:
        if not token.startswith(TOKEN_PREFIX):
            raise ValueError("unknown token version")
        raw = base64.b64decode(token[len(TOKEN_PREFIX):], validate=True)
        if len(raw) < NONCE_BYTES + TAG_BYTES:
            raise ValueError("token too short")
        return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], tenant_id.encode("utf-8"))
    except (InvalidTag, ValueError, TypeError, AttributeError, binascii.Error):
        # One answer for a wrong secret, a wrong tenant and a damaged token: they cannot be told apart anyway.
        raise ValueError(CANNOT_DECRYPT) from None
