"""sshkeys.parse against real keys: made by /usr/bin/ssh-keygen (and, for the weak kinds it may no longer
make, by the `cryptography` package), checked against what `ssh-keygen -l` says of them.

No database and no servers: only the parsing part of cloudprovisioner.sshkeys is exercised.
"""

import base64
import os
import subprocess
import warnings

import pytest

from cloudprovisioner import sshkeys

SSH_KEYGEN = "/usr/bin/ssh-keygen"

# Words a refusal may name on purpose although they are in the pasted text too: the key types and the
# armour lines. A 20-character slice of the pasted text made only of these is no leak.
VOCABULARY = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa",
              "ssh-dss", "-cert-v01@openssh.com", "-----BEGIN RSA PUBLIC KEY-----", "-----END RSA PUBLIC KEY-----")

# What a refusal says, written out here (not read from cloudprovisioner.sshkeys, whose wording is under test).
TOO_LONG = "The public key is too long: paste one OpenSSH public key of at most 16 KiB."
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
COMMENT_TOO_LONG = "The key's comment is too long: keep it to at most 255 characters."
COMMENT_UNPRINTABLE = "The key's comment must be printable text, without control characters such as tabs."
INVALID = {algorithm: f"This is not a valid {algorithm} public key: paste the line from your .pub file again, "
                      "unchanged." for algorithm in ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                                                   "ecdsa-sha2-nistp521", "ssh-rsa")}
MAX_COMMENT = 255  # characters
MAX_INPUT_BYTES = 16 * 1024


def keygen(*args, check=True):
    """Run ssh-keygen; its absence is a failure, not a skip: these tests are about agreeing with it."""
    if not os.access(SSH_KEYGEN, os.X_OK):
        pytest.fail(f"{SSH_KEYGEN} is missing: install openssh-client")
    result = subprocess.run([SSH_KEYGEN, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            timeout=120)
    if check and result.returncode:
        pytest.fail(f"ssh-keygen {' '.join(args)} failed: {result.stderr}")
    return result


def generate(directory, name, key_type, bits=None, comment="", fmt=None, passphrase=""):
    """Private key file path of a new key pair (the public one is beside it, as PATH.pub)."""
    path = directory / name
    args = ["-q", "-t", key_type, "-N", passphrase, "-C", comment, "-f", str(path)]
    if bits:
        args += ["-b", str(bits)]
    if fmt:
        args += ["-m", fmt]
    keygen(*args)
    return path


def listing(path, md5=False):
    """(bits, fingerprint, comment) as `ssh-keygen -l` prints them for the key in `path`."""
    out = keygen("-l", *(["-E", "md5"] if md5 else []), "-f", str(path)).stdout.strip()
    bits, fingerprint, rest = out.split(" ", 2)
    comment = rest.rsplit(" (", 1)[0]
    return int(bits), fingerprint, comment


def keygen_accepts(directory, line):
    path = directory / "check.pub"
    path.write_text(line + "\n")
    return keygen("-l", "-f", str(path), check=False).returncode == 0


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """A few real key pairs, made once: name -> (private key path, public line)."""
    directory = tmp_path_factory.mktemp("keys")
    made = {}
    for name, key_type, bits in [("ed25519", "ed25519", None), ("ecdsa256", "ecdsa", 256),
                                 ("ecdsa384", "ecdsa", 384), ("ecdsa521", "ecdsa", 521),
                                 ("rsa2048", "rsa", 2048), ("rsa4096", "rsa", 4096), ("rsa2051", "rsa", 2051)]:
        path = generate(directory, name, key_type, bits, comment=f"alice@laptop {name} key")
        made[name] = (path, path.with_name(name + ".pub").read_text().strip())
    return made


def refused(text, message):
    """Assert parse(text) raises exactly `message`, which quotes nothing of the text."""
    with pytest.raises(ValueError) as caught:
        sshkeys.parse(text)
    said = str(caught.value)
    assert said == message
    if isinstance(text, str) and text.strip():
        assert text.strip() not in said
        for start in range(max(len(text) - 19, 0)):
            piece = text[start:start + 20]
            if any(piece.strip() in word for word in VOCABULARY):
                continue
            assert piece not in said, f"the message quotes {piece!r} of the pasted text"


def blob_of(line):
    return base64.b64decode(line.split()[1])


def with_blob(line, blob, key_type=None):
    key_type = key_type or line.split()[0]
    return f"{key_type} {base64.b64encode(blob).decode('ascii')}"


def wire(*fields):
    return b"".join(len(field).to_bytes(4, "big") + field for field in fields)


def fields_of(blob):
    fields, offset = [], 0
    while offset < len(blob):
        length = int.from_bytes(blob[offset:offset + 4], "big")
        fields.append(blob[offset + 4:offset + 4 + length])
        offset += 4 + length
    return fields


# ---------------------------------------------------------------- accepted

ACCEPTED = [("ed25519", "ed25519", "ssh-ed25519"), ("ecdsa256", "ecdsa", "ecdsa-sha2-nistp256"),
            ("ecdsa384", "ecdsa", "ecdsa-sha2-nistp384"), ("ecdsa521", "ecdsa", "ecdsa-sha2-nistp521"),
            ("rsa2048", "rsa", "ssh-rsa"), ("rsa4096", "rsa", "ssh-rsa"),
            ("rsa2051", "rsa", "ssh-rsa")]  # a modulus that is no whole number of bytes


@pytest.mark.parametrize(("name", "kind", "algorithm"), ACCEPTED)
def test_real_key_is_accepted_with_ssh_keygens_figures(keys, name, kind, algorithm):
    path, line = keys[name]
    public = path.with_name(name + ".pub")
    key = sshkeys.parse(public.read_text())  # as pasted from the file: with its final newline
    bits, sha256, comment = listing(public)
    md5_bits, md5, _ = listing(public, md5=True)
    assert md5.startswith("MD5:")
    assert key.kind == kind
    assert key.algorithm == algorithm
    assert key.bits == bits == md5_bits
    assert key.bits == {"ed25519": 256, "ecdsa256": 256, "ecdsa384": 384, "ecdsa521": 521,
                        "rsa2048": 2048, "rsa4096": 4096}.get(name, bits)
    if name == "rsa2051":
        assert key.bits % 8  # OpenSSL makes 2050 bits of it: what counts is that ssh-keygen says the same
    assert key.fingerprint == md5.removeprefix("MD5:")
    assert key.sha256 == sha256
    assert key.comment == comment == f"alice@laptop {name} key"
    assert key.line == line


@pytest.mark.parametrize("name", [name for name, _, _ in ACCEPTED])
def test_line_round_trips(keys, tmp_path, name):
    key = sshkeys.parse(keys[name][1])
    again = sshkeys.parse(key.line)
    assert [getattr(again, slot) for slot in sshkeys.PublicKey.__slots__] == \
        [getattr(key, slot) for slot in sshkeys.PublicKey.__slots__]
    # ssh-keygen reads the canonical line back as the same key.
    path = tmp_path / "canonical.pub"
    path.write_text(key.line + "\n")
    assert listing(path)[1] == key.sha256


def test_key_without_comment(tmp_path):
    path = generate(tmp_path, "bare", "ed25519")
    line = path.with_name("bare.pub").read_text()
    key = sshkeys.parse(line)
    assert key.comment == ""
    assert key.line == line.strip()
    assert key.line.count(" ") == 1
    assert key.sha256 == listing(path.with_name("bare.pub"))[1]


@pytest.mark.parametrize("wrap", ["  {}  ", "{}\r\n", "\n\n{}\n\n", "\t{}"])
def test_white_space_around_the_line_is_dropped(keys, wrap):
    line = keys["ed25519"][1]
    assert sshkeys.parse(wrap.format(line)).line == line


def test_comment_of_the_longest_length_is_kept(keys):
    line = " ".join(keys["ecdsa256"][1].split()[:2])
    comment = "c" * MAX_COMMENT
    assert sshkeys.parse(f"{line} {comment}").comment == comment


def test_comment_with_inner_spaces_and_non_ascii_is_kept(keys):
    line = keys["ed25519"][1].split()
    comment = "Zoë's   work laptop (2024)"
    key = sshkeys.parse(f"{line[0]} {line[1]} {comment}")
    assert key.comment == comment
    assert key.line == f"{line[0]} {line[1]} {comment}"


def test_input_of_exactly_the_limit_is_read(keys):
    line = keys["rsa4096"][1]
    text = line + " " * (MAX_INPUT_BYTES - len(line))
    assert len(text.encode()) == MAX_INPUT_BYTES
    assert sshkeys.parse(text).line == line


# ---------------------------------------------------------------- refused: weak and unsupported kinds

RSA_1024 = ("This RSA key has 1024 bits, fewer than the 2048 required: "
            "create a new key with `ssh-keygen -t ed25519` (or `ssh-keygen -t rsa -b 4096`).")


def _cryptography():
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        return None
    return serialization


def _public_line(private):
    serialization = _cryptography()
    return private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode("ascii")


def test_rsa_1024_is_refused(tmp_path):
    # ssh-keygen first; where it refuses to make one, the cryptography package makes it.
    made = keygen("-q", "-t", "rsa", "-b", "1024", "-N", "", "-C", "old", "-f", str(tmp_path / "weak"), check=False)
    if made.returncode == 0:
        line = (tmp_path / "weak.pub").read_text()
        assert listing(tmp_path / "weak.pub")[0] == 1024
    else:
        if _cryptography() is None:
            pytest.fail("ssh-keygen makes no 1024-bit RSA key here and `cryptography` is not installed")
        from cryptography.hazmat.primitives.asymmetric import rsa
        line = _public_line(rsa.generate_private_key(public_exponent=65537, key_size=1024)) + " old"
    refused(line, RSA_1024)


def _dsa_line_from_cryptography():
    """A DSA public line made by the cryptography package, or None where it cannot (absent, or its SSH DSA
    support gone: it is deprecated there)."""
    if _cryptography() is None:
        return None
    from cryptography.hazmat.primitives.asymmetric import dsa
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _public_line(dsa.generate_private_key(key_size=1024)) + " old"  # SSH's DSA is 1024 bits
    except Exception:  # any refusal of it means: use ssh-keygen instead
        return None


def test_dsa_is_refused(tmp_path):
    # The cryptography package first (OpenSSH 10 makes no DSA keys); else an ssh-keygen that still does.
    line = _dsa_line_from_cryptography()
    if line is None:
        made = keygen("-q", "-t", "dsa", "-N", "", "-C", "old", "-f", str(tmp_path / "dsa"), check=False)
        if made.returncode:
            pytest.fail("neither `cryptography` nor ssh-keygen can make a DSA key here")
        line = (tmp_path / "dsa.pub").read_text()
    assert line.startswith("ssh-dss AAAA")
    refused(line, DSA)


@pytest.mark.parametrize("key_type", ["sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"])
def test_security_key_is_refused(keys, key_type):
    # A FIDO key needs the token to be made; its public line is the key, then the application.
    point = fields_of(blob_of(keys["ed25519"][1]))[1]
    line = with_blob("", wire(key_type.encode(), point, b"ssh:"), key_type) + " alice@token"
    refused(line, SECURITY_KEY)


def test_certificate_is_refused(tmp_path, keys):
    ca = generate(tmp_path, "ca", "ed25519", comment="ca")
    user = generate(tmp_path, "user", "ecdsa", 256, comment="alice")
    keygen("-q", "-s", str(ca), "-I", "alice", "-n", "alice", str(user.with_name("user.pub")))
    line = user.with_name("user-cert.pub").read_text()
    assert line.startswith("ecdsa-sha2-nistp256-cert-v01@openssh.com AAAA")
    refused(line, CERTIFICATE)


# ---------------------------------------------------------------- refused: private keys

@pytest.mark.parametrize(("key_type", "bits", "fmt", "armour"), [
    ("rsa", 2048, "PEM", "-----BEGIN RSA PRIVATE KEY-----"),      # PKCS#1
    ("ecdsa", 256, "PEM", "-----BEGIN EC PRIVATE KEY-----"),      # SEC 1
    ("rsa", 2048, "PKCS8", "-----BEGIN PRIVATE KEY-----"),        # PKCS#8
    ("ecdsa", 384, "PKCS8", "-----BEGIN PRIVATE KEY-----"),
    ("ed25519", None, None, "-----BEGIN OPENSSH PRIVATE KEY-----"),
    ("rsa", 2048, None, "-----BEGIN OPENSSH PRIVATE KEY-----"),
])
def test_private_key_is_refused(tmp_path, key_type, bits, fmt, armour):
    path = generate(tmp_path, "secret", key_type, bits, comment="alice", fmt=fmt)
    private = path.read_text()
    assert private.startswith(armour)
    refused(private, PRIVATE)


def test_encrypted_private_key_is_refused(tmp_path):
    path = generate(tmp_path, "locked", "ed25519", comment="alice", passphrase="correct horse battery")
    refused(path.read_text(), PRIVATE)


@pytest.mark.parametrize("order", ["public first", "private first"])
def test_private_key_pasted_with_its_public_line_is_refused(tmp_path, order):
    path = generate(tmp_path, "pair", "ed25519", comment="alice")
    private, public = path.read_text(), path.with_name("pair.pub").read_text()
    refused(public + private if order == "public first" else private + public, PRIVATE)


def test_private_key_without_its_armour_is_refused(tmp_path):
    path = generate(tmp_path, "bare", "ed25519", comment="alice")
    body = "".join(path.read_text().splitlines()[1:-1])
    refused(body, PRIVATE)


# ---------------------------------------------------------------- refused: other formats and shapes

def test_rfc_4716_key_is_refused(keys):
    path, _ = keys["ecdsa384"]
    ssh2 = keygen("-e", "-f", str(path.with_name("ecdsa384.pub"))).stdout
    assert ssh2.startswith("---- BEGIN SSH2 PUBLIC KEY ----")
    refused(ssh2, SSH2)


@pytest.mark.parametrize(("name", "fmt", "armour"), [("rsa2048", "PKCS8", "-----BEGIN PUBLIC KEY-----"),
                                                     ("ecdsa256", "PKCS8", "-----BEGIN PUBLIC KEY-----"),
                                                     ("rsa2048", "PEM", "-----BEGIN RSA PUBLIC KEY-----")])
def test_pem_public_key_is_refused(keys, name, fmt, armour):
    path, _ = keys[name]
    pem = keygen("-e", "-m", fmt, "-f", str(path.with_name(name + ".pub"))).stdout
    assert pem.startswith(armour)
    refused(pem, PEM)


@pytest.mark.parametrize("options", ['from="10.0.0.0/8",no-pty', 'command="echo a b"', "restrict",
                                     'no-agent-forwarding,environment="A=B C"'])
def test_authorized_keys_options_are_refused(keys, options):
    refused(f"{options} {keys['ed25519'][1]}", OPTIONS)


@pytest.mark.parametrize("separator", ["\n", "\r\n", "\n\n", "\r"])
def test_two_keys_on_two_lines_are_refused(keys, separator):
    refused(keys["ed25519"][1] + separator + keys["rsa2048"][1] + "\n", SEVERAL)


@pytest.mark.parametrize("strip_comments", [False, True])
def test_two_keys_on_one_line_are_refused(keys, strip_comments):
    first, second = keys["ed25519"][1], keys["ecdsa256"][1]
    if strip_comments:
        first, second = " ".join(first.split()[:2]), " ".join(second.split()[:2])
    refused(f"{first} {second}", SEVERAL)


@pytest.mark.parametrize("text", ["hello world", "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
                                  "ssh_ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
                                  "ecdsa-sha2-nistp224 AAAAE2VjZHNhLXNoYTItbmlzdHAyMjQAAAAIbmlzdHAyMjQ"])
def test_text_that_is_no_key_is_refused(text):
    refused(text, NOT_A_KEY)


def test_type_without_data_is_refused():
    with pytest.raises(ValueError) as caught:
        sshkeys.parse("ssh-ed25519")
    assert str(caught.value) == "This ssh-ed25519 key has no key data: paste the whole line of your .pub file."


# ---------------------------------------------------------------- refused: broken blobs (ssh-keygen agrees)

def broken(keys, name, change):
    """(line, message) for key `name`'s line changed by `change(type, base64) -> line`."""
    key_type, encoded = keys[name][1].split()[:2]
    line = change(key_type, encoded)
    return line, INVALID[line.split()[0]]


@pytest.mark.parametrize(("name", "change"), [
    ("ed25519", lambda t, b: f"{t} {b[:30]}!{b[31:]}"),                   # not base64
    ("rsa2048", lambda t, b: f"{t} {b[:100]}*{b[101:]}"),
    ("ed25519", lambda t, b: f"{t} {b[:-1]}"),                            # base64 cut short: bad padding
    ("ecdsa256", lambda t, b: f"{t} {b[:50]}{b[52:]}"),                  # two characters dropped inside
])
def test_corrupted_base64_is_refused(tmp_path, keys, name, change):
    line, message = broken(keys, name, change)
    assert not keygen_accepts(tmp_path, line)
    refused(line + " alice", message)


@pytest.mark.parametrize(("name", "declared"), [("ed25519", "ssh-rsa"), ("ecdsa256", "ssh-ed25519"),
                                                ("ecdsa256", "ecdsa-sha2-nistp384"), ("rsa2048", "ssh-ed25519")])
def test_blob_of_another_type_is_refused(tmp_path, keys, name, declared):
    line = f"{declared} {keys[name][1].split()[1]}"
    assert not keygen_accepts(tmp_path, line)
    refused(line + " alice", INVALID[declared])


@pytest.mark.parametrize("name", ["ed25519", "ecdsa521", "rsa2048"])
@pytest.mark.parametrize("cut", [1, 4, 20])
def test_truncated_blob_is_refused(tmp_path, keys, name, cut):
    line = with_blob(keys[name][1], blob_of(keys[name][1])[:-cut])
    assert not keygen_accepts(tmp_path, line)
    refused(line, INVALID[line.split()[0]])


@pytest.mark.parametrize("name", ["ed25519", "ecdsa384", "rsa4096"])
@pytest.mark.parametrize("extra", [b"\x00", b"\x00\x00\x00\x00", wire(b"more")])
def test_trailing_bytes_after_the_blob_are_refused(tmp_path, keys, name, extra):
    line = with_blob(keys[name][1], blob_of(keys[name][1]) + extra)
    assert not keygen_accepts(tmp_path, line)
    refused(line, INVALID[line.split()[0]])


@pytest.mark.parametrize("name", ["ecdsa256", "ecdsa384", "ecdsa521"])
def test_ecdsa_point_off_its_curve_is_refused(tmp_path, keys, name):
    key_type, curve, point = fields_of(blob_of(keys[name][1]))
    moved = point[:-1] + bytes([point[-1] ^ 1])  # y changed by one: no longer on the curve
    line = with_blob(keys[name][1], wire(key_type, curve, moved))
    assert not keygen_accepts(tmp_path, line)
    refused(line, INVALID[key_type.decode()])


@pytest.mark.parametrize("coordinate", ["x", "y"])
def test_ecdsa_coordinate_past_the_field_is_refused(tmp_path, keys, coordinate):
    # On nistp521 a coordinate has 66 bytes, room for c + p: the same point modulo p, but no field element.
    key_type, curve, point = fields_of(blob_of(keys["ecdsa521"][1]))
    p, size = 2**521 - 1, 66
    x, y = int.from_bytes(point[1:1 + size], "big"), int.from_bytes(point[1 + size:], "big")
    x, y = (x + p, y) if coordinate == "x" else (x, y + p)
    moved = b"\x04" + x.to_bytes(size, "big") + y.to_bytes(size, "big")
    line = with_blob(keys["ecdsa521"][1], wire(key_type, curve, moved))
    assert not keygen_accepts(tmp_path, line)
    refused(line, INVALID["ecdsa-sha2-nistp521"])


def test_ecdsa_point_with_the_wrong_curve_name_is_refused(tmp_path, keys):
    key_type, _, point = fields_of(blob_of(keys["ecdsa256"][1]))
    line = with_blob(keys["ecdsa256"][1], wire(key_type, b"nistp384", point))
    assert not keygen_accepts(tmp_path, line)
    refused(line, INVALID["ecdsa-sha2-nistp256"])


def test_compressed_ecdsa_point_is_refused(tmp_path, keys):
    key_type, curve, point = fields_of(blob_of(keys["ecdsa256"][1]))
    size = (len(point) - 1) // 2
    compressed = bytes([2 + (point[-1] & 1)]) + point[1:1 + size]
    line = with_blob(keys["ecdsa256"][1], wire(key_type, curve, compressed))
    refused(line, INVALID["ecdsa-sha2-nistp256"])


def test_rsa_number_with_a_needless_leading_zero_is_refused(tmp_path, keys):
    # ssh-keygen reads it, but fingerprints the minimal encoding: taking it would store a fingerprint
    # that ssh-keygen does not give this key (and let one key be added twice, under two fingerprints).
    key_type, exponent, modulus = fields_of(blob_of(keys["rsa2048"][1]))
    for padded in (wire(key_type, b"\x00" + exponent, modulus), wire(key_type, exponent, b"\x00" + modulus)):
        line = with_blob(keys["rsa2048"][1], padded)
        assert keygen_accepts(tmp_path, line)
        refused(line, INVALID["ssh-rsa"])


def test_rsa_key_with_an_even_modulus_is_refused(keys):
    # cryptography reads one (it checks the exponent only): the check after it refuses it, as before.
    key_type, exponent, modulus = fields_of(blob_of(keys["rsa2048"][1]))
    even = (int.from_bytes(modulus, "big") + 1).to_bytes(len(modulus), "big")
    refused(with_blob(keys["rsa2048"][1], wire(key_type, exponent, even)), INVALID["ssh-rsa"])


def test_rsa_exponent_not_below_the_modulus_is_refused(keys):
    # cryptography refuses an exponent >= the modulus; the hand-written parser it replaced took it.
    key_type, _, modulus = fields_of(blob_of(keys["rsa2048"][1]))
    line = with_blob(keys["rsa2048"][1], wire(key_type, modulus, modulus))
    refused(line, INVALID["ssh-rsa"])


def test_negative_rsa_number_is_refused(keys):
    key_type, exponent, modulus = fields_of(blob_of(keys["rsa2048"][1]))
    assert modulus[0] == 0  # the top bit of a 2048-bit modulus is set, hence the zero before it
    line = with_blob(keys["rsa2048"][1], wire(key_type, exponent, modulus[1:]))
    refused(line, INVALID["ssh-rsa"])


# ---------------------------------------------------------------- refused: comments and sizes

@pytest.mark.parametrize("comment", ["bad\x07bell", "tab\there", "esc\x1b[31mred", "del\x7f", "nul\x00x",
                                     "zero\u200bwidth", "line\u2028sep"])
def test_comment_with_a_control_character_is_refused(keys, comment):
    line = " ".join(keys["ed25519"][1].split()[:2])
    refused(f"{line} {comment}", COMMENT_UNPRINTABLE)


def test_comment_over_the_limit_is_refused(keys):
    line = " ".join(keys["ed25519"][1].split()[:2])
    refused(f"{line} {'c' * (MAX_COMMENT + 1)}", COMMENT_TOO_LONG)
    refused(f"{line} {'é' * (MAX_COMMENT + 1)}", COMMENT_TOO_LONG)


def test_input_over_16_kib_is_refused(keys):
    line = keys["rsa4096"][1]
    refused(line + " " * (16 * 1024 + 1 - len(line)), TOO_LONG)
    refused("A" * (16 * 1024 + 1), TOO_LONG)
    # Under the limit in characters, over it in UTF-8 bytes.
    padded = "\u3000" * 5400 + line
    assert len(padded) < 16 * 1024 < len(padded.encode())
    refused(padded, TOO_LONG)


@pytest.mark.parametrize("text", ["", " ", "\n", "\r\n\t  \n"])
def test_empty_input_is_refused(text):
    refused(text, EMPTY)


@pytest.mark.parametrize("value", [None, 42, b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI", ["ssh-ed25519"],
                                   {"key": "ssh-ed25519"}])
def test_non_string_is_refused(value):
    refused(value, NOT_A_KEY)
