"""cloudprovisioner.vmcpkeys against things it does not control: hand-written expected bytes, an independent
re-implementation of the CernVM WebAPI's check (urllib's quote, not our encoder), `openssl dgst -verify` run
as a separate process, and keys made and read by the openssl command line tool.

No database and no servers. openssl missing is a failure, not a skip: these tests are about agreeing with it.
"""

import base64
import json
import os
import random
import shutil
import string
import subprocess
import sys
from urllib.parse import quote

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cloudprovisioner import vmcpkeys

SALT = "Fo0-bAr-" + "x" * 48 + "-1234567"  # like cvm_salt: 64 characters of [a-zA-Z0-9-]
SECRET = "a configuration secret of 32+ characters"
INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # what the client reads as an int
DOC = {
    "name": "my-vm",
    "secret": "p@ss w0rd+100%~",
    "diskURL": "https://cernvm.example.org/images/ucernvm 2.6.vmdk?x=1&y=2",
    "label": "café 日本",
    "userData": "[amiconfig]\nplugins=cernvm\n[cernvm]\nusers=user:users:user\n",
    "cpus": 2,
    "memory": 2048,
    "disk": 20000,
    "flags": 49,
    "executionCap": 100,
    # Not a CernVM field (the client signs every key it gets): upper case sorts it first, lower case would not.
    "Zone": "upper-case keys sort first",
}


# --- openssl, run as a separate process -------------------------------------------------------------

def openssl(*args, stdin=None, check=True):
    """Run openssl (bytes in, bytes out); its absence fails the test."""
    path = shutil.which("openssl")
    if path is None:
        pytest.fail("openssl is missing: install the openssl package")
    result = subprocess.run([path, *map(str, args)], input=stdin, capture_output=True, timeout=120)
    if check and result.returncode:
        pytest.fail(f"openssl {' '.join(map(str, args))} failed: {result.stderr.decode(errors='replace')}")
    return result


def openssl_verifies(directory, public_pem: bytes, text: bytes, signature_b64: str) -> bool:
    """What `openssl dgst -sha512 -verify` says of the signature over `text`."""
    (directory / "public.pem").write_bytes(public_pem)
    (directory / "text.bin").write_bytes(text)
    (directory / "sig.bin").write_bytes(base64.b64decode(signature_b64))
    result = openssl("dgst", "-sha512", "-verify", directory / "public.pem", "-signature", directory / "sig.bin",
                     directory / "text.bin", check=False)
    output = result.stdout.decode()
    if result.returncode == 0 and "Verified OK" in output:
        return True
    # Anything but a clean "Verification failure" is a broken test, not a rejected signature.
    assert result.returncode == 1 and "Verification failure" in output, result.stderr.decode(errors="replace")
    return False


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Name -> path of keys made by openssl (and one OpenSSH key, which openssl cannot write)."""
    d = tmp_path_factory.mktemp("keys")
    made = {name: d / f"{name}.pem" for name in (
        "rsa2048_pkcs1", "rsa2048_pkcs8", "rsa4096_pkcs8", "rsa4096_pkcs1", "rsa1024", "ec_params", "ec_pkcs8",
        "ed25519", "encrypted_pkcs8", "encrypted_pkcs1", "public", "rsa_public", "certificate", "two_keys",
        "key_and_certificate", "openssh")}
    openssl("genrsa", "-traditional", "-out", made["rsa2048_pkcs1"], "2048")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", made["rsa2048_pkcs8"])
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096", "-out", made["rsa4096_pkcs8"])
    openssl("rsa", "-traditional", "-in", made["rsa4096_pkcs8"], "-out", made["rsa4096_pkcs1"])
    openssl("genrsa", "-traditional", "-out", made["rsa1024"], "1024")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-out", made["ec_params"])  # EC PARAMETERS + EC PRIVATE KEY
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", made["ec_pkcs8"])
    openssl("genpkey", "-algorithm", "ED25519", "-out", made["ed25519"])
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-aes256", "-pass", "pass:x",
            "-out", made["encrypted_pkcs8"])
    openssl("rsa", "-traditional", "-aes256", "-passout", "pass:x", "-in", made["rsa2048_pkcs1"],
            "-out", made["encrypted_pkcs1"])
    openssl("rsa", "-pubout", "-in", made["rsa2048_pkcs8"], "-out", made["public"])
    openssl("rsa", "-RSAPublicKey_out", "-in", made["rsa2048_pkcs8"], "-out", made["rsa_public"])
    openssl("req", "-x509", "-new", "-key", made["rsa2048_pkcs8"], "-subj", "/CN=vmcp.example.org", "-days", "1",
            "-out", made["certificate"])
    made["two_keys"].write_text(made["rsa2048_pkcs1"].read_text() + made["rsa2048_pkcs8"].read_text())
    made["key_and_certificate"].write_text(made["certificate"].read_text() + made["rsa2048_pkcs8"].read_text())
    ssh_key = serialization.load_pem_private_key(made["rsa2048_pkcs8"].read_bytes(), None)
    made["openssh"].write_bytes(ssh_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                      serialization.NoEncryption()))
    return made


@pytest.fixture(scope="module")
def signer(keys):
    """(private key read by load_private_key, its public key PEM as openssl writes it)."""
    path = keys["rsa2048_pkcs1"]
    return vmcpkeys.load_private_key(path.read_text()), openssl("rsa", "-pubout", "-in", path).stdout


# --- The client's check, written apart from vmcpkeys ---------------------------------------------

ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def client_text(received: dict, salt: str) -> bytes:
    """What the CernVM WebAPI rebuilds from the JSON it parsed (libcernvm ParameterMap::fromJSON keeps strings
    and ints; DomainKeystore::signatureValidate walks the std::map in byte order, lowercases with C tolower,
    skips "signature", urlEncodes with the RFC 3986 unreserved set and appends the salt)."""
    kept = {key: str(value) for key, value in received.items()
            if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))}
    text = ""
    for key in sorted(kept, key=lambda key: list(key.encode("utf-8"))):
        lowered = key.translate(ASCII_LOWER)
        if lowered != "signature":
            text += lowered + "=" + quote(kept[key], safe="-_.~") + "\n"
    return (text + salt).encode("utf-8")


def cryptography_verifies(public_pem: bytes, text: bytes, signature_b64: str) -> bool:
    public = serialization.load_pem_public_key(public_pem)
    try:
        public.verify(base64.b64decode(signature_b64), text, padding.PKCS1v15(), hashes.SHA512())
    except InvalidSignature:
        return False
    return True


def received_copy(signed: dict) -> dict:
    """The document as the client gets it: through JSON."""
    return json.loads(json.dumps(signed))


# --- signed_text ---------------------------------------------------------------------------------

def test_signed_text_is_the_hand_written_text():
    document = {
        "name": "my-vm", "secret": "s3cr3t/%+ ~", "cpus": 2, "diskURL": "https://example.org/img 1.vmdk?a=1&b=2",
        "disk_size": 1024, "executionCap": 50, "flags": -5, "Zeta": "Z", "apple": "é日本",
        "userData": "[amiconfig]\nplugins=cernvm\n", "signature": "old",
    }
    # Byte order of the original keys: "Zeta" before "apple" (upper case first) and "diskURL" before
    # "disk_size" ("U" < "_" < "u"), although lowercased they would sort the other way round.
    expected = (b"zeta=Z\n"
                b"apple=%C3%A9%E6%97%A5%E6%9C%AC\n"
                b"cpus=2\n"
                b"diskurl=https%3A%2F%2Fexample.org%2Fimg%201.vmdk%3Fa%3D1%26b%3D2\n"
                b"disk_size=1024\n"
                b"executioncap=50\n"
                b"flags=-5\n"
                b"name=my-vm\n"
                b"secret=s3cr3t%2F%25%2B%20~\n"
                b"userdata=%5Bamiconfig%5D%0Aplugins%3Dcernvm%0A\n"
                b"abc-DEF-123")
    assert vmcpkeys.signed_text(document, "abc-DEF-123") == expected
    assert vmcpkeys.signed_text(dict(reversed(document.items())), "abc-DEF-123") == expected


def test_signed_text_small_cases():
    assert vmcpkeys.signed_text({}, "salt") == b"salt"
    assert vmcpkeys.signed_text({"signature": "x"}, "") == b""
    assert vmcpkeys.signed_text({"A": "~-_.", "a": "+"}, "") == b"a=~-_.\na=%2B\n"
    assert vmcpkeys.signed_text({"n": 0, "m": 2**31 - 1, "l": -(2**31)}, "") == b"l=-2147483648\nm=2147483647\nn=0\n"
    # Only ASCII letters are lowercased, as C tolower does; other bytes of a key stay as they are.
    assert vmcpkeys.signed_text({"ÉtÉ": "1"}, "") == "ÉtÉ=1\n".encode()


@pytest.mark.parametrize("value", [True, False, 1.5, None, [], {}, [1], {"a": 1}, b"bytes"])
def test_signed_text_refuses_values_the_client_drops(value):
    with pytest.raises(TypeError):
        vmcpkeys.signed_text({"name": "vm", "odd": value}, SALT)


@pytest.mark.parametrize("document", [{"n": 2**31}, {"n": -(2**31) - 1}, {"n": "a\x00b"}, {"a\x00": "1"},
                                      {"Signature": "x"}, {"SIGNATURE": "x"}])
def test_signed_text_refuses_what_the_client_would_read_differently(document):
    with pytest.raises(ValueError):
        vmcpkeys.signed_text(document, SALT)


def test_signed_text_refuses_non_string_keys_and_salt():
    with pytest.raises(TypeError):
        vmcpkeys.signed_text({1: "x"}, SALT)
    with pytest.raises(TypeError):
        vmcpkeys.signed_text({"a": "x"}, None)


def test_signed_text_agrees_with_the_independent_client_on_random_documents():
    rng = random.Random(20240607)
    alphabet = ([chr(c) for c in range(1, 128)] + list("éÉüßñ€日本語中文") + ["\U0001F600", "\u2028", "\uffff"])
    key_alphabet = string.ascii_letters + string.digits + "_-./Éé"
    for _ in range(300):
        document = {}
        for _ in range(rng.randint(0, 8)):
            key = "".join(rng.choice(key_alphabet) for _ in range(rng.randint(1, 10)))
            if key.lower() == "signature":
                continue
            document[key] = ("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
                             if rng.random() < 0.8 else rng.randint(INT_MIN, INT_MAX))
        salt = "".join(rng.choice(string.ascii_letters + string.digits + "-") for _ in range(64))
        assert vmcpkeys.signed_text(document, salt) == client_text(received_copy(document), salt), document



def test_importing_the_module_does_not_import_cryptography():
    code = ("import sys, cloudprovisioner.vmcpkeys; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.stdout.strip() == "[]"


# --- sign, verified by the independent client and by openssl ---------------------------------------

def test_sign_verifies_in_the_client_and_in_openssl(signer, tmp_path):
    key, public_pem = signer
    document = {**DOC, "signature": "a stale one"}
    signed = vmcpkeys.sign(key, document, SALT)
    assert document["signature"] == "a stale one"  # a copy, not the caller's dict
    assert {k: v for k, v in signed.items() if k != "signature"} == DOC
    received = received_copy(signed)
    text = client_text(received, SALT)
    assert text == vmcpkeys.signed_text(DOC, SALT)
    assert cryptography_verifies(public_pem, text, received["signature"])
    assert openssl_verifies(tmp_path, public_pem, text, received["signature"])


def test_sign_with_a_generated_key_verifies_with_its_published_public_key(tmp_path):
    key = vmcpkeys.generate()
    published = base64.b64decode(vmcpkeys.public_forms(key)["public_key_base64"])
    # The domain key list holds base64 DER; openssl turns that into the PEM it verifies with.
    public_pem = openssl("pkey", "-pubin", "-inform", "DER", "-pubout", stdin=published).stdout
    received = received_copy(vmcpkeys.sign(key, DOC, SALT))
    assert openssl_verifies(tmp_path, public_pem, client_text(received, SALT), received["signature"])


def change(key, old, new):
    """A tampering that replaces the first `old` in one value by `new`."""
    def tamper(received):
        assert old in received[key]
        received[key] = received[key].replace(old, new, 1)
    return tamper


def set_value(key, value):
    def tamper(received):
        received[key] = value
    return tamper


def remove(key):
    def tamper(received):
        del received[key]
    return tamper


TAMPERINGS = {
    "an int changed": set_value("cpus", 3),
    "a value with / changed by one character": change("diskURL", "/images/", "/imagez/"),
    "the / itself changed": change("diskURL", "/", "\\"),
    "a value with % changed by one character": change("secret", "100%", "101%"),
    "the % itself changed": change("secret", "%", "!"),
    "a space changed to +": change("secret", " ", "+"),
    "a + changed to a space": change("secret", "+", " "),
    "a non-ASCII character changed": change("label", "é", "e"),
    "a CJK character changed": change("label", "本", "木"),
    "multi-line userData changed by one character": change("userData", "users=user", "users=usex"),
    "a newline in userData changed": change("userData", "\n", "\r"),
    "a key removed": remove("memory"),
    "a key added": set_value("cernvmVersion", "1.17-8"),
    "a key's value emptied": set_value("name", ""),
}


@pytest.mark.parametrize("tampering", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_a_tampered_document_fails_verification_both_ways(signer, tmp_path, tampering):
    key, public_pem = signer
    received = received_copy(vmcpkeys.sign(key, DOC, SALT))
    tampering(received)
    text = client_text(received, SALT)
    assert not cryptography_verifies(public_pem, text, received["signature"])
    assert not openssl_verifies(tmp_path, public_pem, text, received["signature"])


def test_another_salt_fails_verification_both_ways(signer, tmp_path):
    key, public_pem = signer
    received = received_copy(vmcpkeys.sign(key, DOC, SALT))
    text = client_text(received, SALT[:-1] + "8")
    assert not cryptography_verifies(public_pem, text, received["signature"])
    assert not openssl_verifies(tmp_path, public_pem, text, received["signature"])


def test_sign_refuses_a_key_that_is_not_rsa(keys):
    ec_key = serialization.load_pem_private_key(keys["ec_pkcs8"].read_bytes(), None)
    with pytest.raises(TypeError):
        vmcpkeys.sign(ec_key, DOC, SALT)


# --- load_private_key ------------------------------------------------------------------------------

RSA_KEYS = {"rsa2048_pkcs1": ("RSA PRIVATE KEY", 2048), "rsa2048_pkcs8": ("PRIVATE KEY", 2048),
            "rsa4096_pkcs1": ("RSA PRIVATE KEY", 4096), "rsa4096_pkcs8": ("PRIVATE KEY", 4096)}


@pytest.mark.parametrize("name", RSA_KEYS)
def test_load_private_key_accepts_openssl_rsa_keys(keys, name):
    label, bits = RSA_KEYS[name]
    text = keys[name].read_text()
    assert text.startswith(f"-----BEGIN {label}-----\n")  # the form under test is the one openssl wrote
    key = vmcpkeys.load_private_key(text)
    assert key.key_size == bits
    modulus = openssl("rsa", "-noout", "-modulus", "-in", keys[name]).stdout.decode().strip()
    assert modulus == f"Modulus={key.public_key().public_numbers().n:X}"


def test_load_private_key_accepts_pasted_variants(keys):
    text = keys["rsa2048_pkcs1"].read_text()
    n = vmcpkeys.load_private_key(text).public_key().public_numbers().n
    variants = [text.replace("\n", "\r\n"), "\n\n  " + text.replace("\n", "\n    ") + "\n\n",
                "Bag Attributes\n    localKeyID: 01\n" + text, keys["key_and_certificate"].read_text()]
    for variant in variants[:3]:
        assert vmcpkeys.load_private_key(variant).public_key().public_numbers().n == n
    # A certificate beside the key is public material: the key is still the one and only private key.
    beside = vmcpkeys.load_private_key(variants[3])
    assert beside.public_key().public_numbers() == vmcpkeys.load_private_key(
        keys["rsa2048_pkcs8"].read_text()).public_key().public_numbers()


def cut_body(path):
    """The key with a few base64 lines taken out of its middle."""
    lines = path.read_text().splitlines(keepends=True)
    return "".join(lines[:5] + lines[9:])


REFUSED = {
    # name: (input maker, words the message must contain)
    "rsa1024": (lambda k: k["rsa1024"].read_text(), ["1024 bits", "2048"]),
    "ec with parameters": (lambda k: k["ec_params"].read_text(), ["an EC (secp256r1) private key", "RSA"]),
    "ec pkcs8": (lambda k: k["ec_pkcs8"].read_text(), ["an EC (secp256r1) private key", "RSA"]),
    "ed25519": (lambda k: k["ed25519"].read_text(), ["an Ed25519 private key", "RSA"]),
    "encrypted pkcs8": (lambda k: k["encrypted_pkcs8"].read_text(), ["passphrase", "openssl pkey"]),
    "encrypted pkcs1": (lambda k: k["encrypted_pkcs1"].read_text(), ["passphrase", "openssl pkey"]),
    "public key": (lambda k: k["public"].read_text(), ["public key"]),
    "rsa public key": (lambda k: k["rsa_public"].read_text(), ["public key"]),
    "certificate": (lambda k: k["certificate"].read_text(), ["certificate"]),
    "two keys": (lambda k: k["two_keys"].read_text(), ["more than one"]),
    "openssh key": (lambda k: k["openssh"].read_text(), ["OpenSSH", "ssh-keygen"]),
    "garbage": (lambda k: "Zm9vYmFy qwerty 12345 !!! <xml/>", ["not a PEM"]),
    "empty": (lambda k: "", ["not a PEM"]),
    "binary junk": (lambda k: bytes(range(1, 256)).decode("latin-1"), ["not a PEM"]),
    "damaged body": (lambda k: cut_body(k["rsa2048_pkcs8"]), ["damaged"]),
    "cut off": (lambda k: k["rsa2048_pkcs1"].read_text()[:900], ["damaged"]),
    "bad base64": (lambda k: "-----BEGIN PRIVATE KEY-----\nQUJD!!REVG\n-----END PRIVATE KEY-----\n", ["damaged"]),
    "too long": (lambda k: "A" * (64 * 1024 + 1), ["too long"]),
}


@pytest.mark.parametrize("name", REFUSED)
def test_load_private_key_refuses_with_one_clear_sentence(keys, name):
    make, words = REFUSED[name]
    text = make(keys)
    with pytest.raises(ValueError) as caught:
        vmcpkeys.load_private_key(text)
    message = str(caught.value)
    for word in words:
        assert word in message
    assert message.endswith(".") and "\n" not in message
    assert_no_echo(message, text)


def assert_no_echo(message, text, width=12):
    """No `width`-character slice of the input (armour lines aside) is in the message."""
    for line in text.splitlines():
        if line.startswith("-----"):
            continue
        for start in range(max(len(line) - width + 1, 0)):
            assert line[start:start + width] not in message, "the message quotes the input"


# --- the size cap, read from the key's structure ----------------------------------------------------

def der(tag, content):
    """One DER item (X.690), written here apart from vmcpkeys' reader."""
    size = len(content)
    length = bytes([size]) if size < 128 else bytes([0x80 | (size.bit_length() + 7) // 8]) + size.to_bytes(
        (size.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + content


def der_integer(number):
    return der(0x02, number.to_bytes(number.bit_length() // 8 + 1, "big"))


def pem(label, body):
    text = base64.b64encode(body).decode()
    return f"-----BEGIN {label}-----\n" + "\n".join(text[i:i + 64] for i in range(0, len(text), 64)) + \
        f"\n-----END {label}-----\n"


def fake_rsa(bits):
    """An RSAPrivateKey structure with a modulus of `bits` bits whose numbers are not a key at all: OpenSSL
    calls it damaged the moment it reads it, so only a check made before OpenSSL can name its size."""
    half = bits // 2
    numbers = [0, (1 << (bits - 1)) | 1, 65537, (1 << (bits - 2)) | 3] + [(1 << (half - 1)) | 5] * 5
    return der(0x30, b"".join(der_integer(number) for number in numbers))


RSA_ENCRYPTION = der(0x30, der(0x06, bytes.fromhex("2a864886f70d010101")) + der(0x05, b""))
EC_PUBLIC_KEY = der(0x30, der(0x06, bytes.fromhex("2a8648ce3d0201")) + der(0x06, bytes.fromhex("2a8648ce3d030107")))


@pytest.mark.parametrize("bits", [16384, 8192, 4104])
@pytest.mark.parametrize("form", ["pkcs1", "pkcs8"])
def test_a_key_over_4096_bits_is_refused_by_its_size_before_openssl_reads_it(bits, form):
    body = fake_rsa(bits)
    text = pem("RSA PRIVATE KEY", body) if form == "pkcs1" else pem(
        "PRIVATE KEY", der(0x30, der_integer(0) + RSA_ENCRYPTION + der(0x04, body)))
    with pytest.raises(ValueError) as caught:
        vmcpkeys.load_private_key(text)
    assert str(caught.value) == (f"This RSA key has {bits} bits, more than the 4096 accepted here: make an RSA key "
                                 "with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out key.pem`.")


def test_a_key_of_another_type_larger_than_any_accepted_key_is_refused_unread():
    text = pem("PRIVATE KEY", der(0x30, der_integer(0) + EC_PUBLIC_KEY + der(0x04, der(0x04, b"\x01" * 5000))))
    with pytest.raises(ValueError) as caught:
        vmcpkeys.load_private_key(text)
    assert str(caught.value) == ("This private key is larger than an RSA key of 4096 bits, the most accepted here: "
                                 "make an RSA key with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
                                 "-out key.pem`.")


def test_a_real_key_over_4096_bits_is_refused(tmp_path):
    path = tmp_path / "key.pem"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4160", "-out", path)
    with pytest.raises(ValueError) as caught:
        vmcpkeys.load_private_key(path.read_text())
    assert str(caught.value).startswith("This RSA key has 4160 bits, more than the 4096 accepted here")


# --- generate, private_pem, public_forms ----------------------------------------------------------

@pytest.mark.parametrize("bits", [2048, 3072, 4096])
def test_generate_makes_keys_openssl_accepts(tmp_path, bits):
    key = vmcpkeys.generate(bits)
    pem = vmcpkeys.private_pem(key)
    assert pem.startswith("-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    (tmp_path / "key.pem").write_text(pem)
    check = openssl("rsa", "-check", "-noout", "-in", tmp_path / "key.pem")
    assert "RSA key ok" in check.stdout.decode()
    text = openssl("pkey", "-noout", "-text", "-in", tmp_path / "key.pem").stdout.decode()
    assert f"Private-Key: ({bits} bit" in text
    again = vmcpkeys.load_private_key(pem)
    assert again.private_numbers() == key.private_numbers()
    assert key.public_key().public_numbers().e == 65537


@pytest.mark.parametrize("bits", [1024, 2047, 8192, 0, True, "2048", None])
def test_generate_refuses_other_sizes(bits):
    with pytest.raises(ValueError):
        vmcpkeys.generate(bits)


@pytest.mark.parametrize("name", RSA_KEYS)
def test_public_forms_equal_what_openssl_prints(keys, name):
    forms = vmcpkeys.public_forms(vmcpkeys.load_private_key(keys[name].read_text()))
    der = openssl("rsa", "-pubout", "-outform", "DER", "-in", keys[name]).stdout
    base64_w0 = subprocess.run(["base64", "-w0"], input=der, capture_output=True, check=True).stdout.decode()
    assert forms["public_key_base64"] == base64_w0
    assert forms["public_key_pem"] == openssl("rsa", "-pubout", "-in", keys[name]).stdout.decode()
    assert forms["bits"] == RSA_KEYS[name][1]
    # OpenSSH's form of a SHA-256 fingerprint, "SHA256:" and the unpadded base64 of the digest, from openssl's digest.
    digest = openssl("dgst", "-sha256", "-binary", stdin=der).stdout
    unpadded = subprocess.run(["base64", "-w0"], input=digest, capture_output=True, check=True).stdout.decode()
    assert forms["fingerprint"] == "SHA256:" + unpadded.rstrip("=")
    assert "=" not in forms["fingerprint"] and len(forms["fingerprint"]) == len("SHA256:") + 43


# --- encrypt, decrypt ----------------------------------------------------------------------------

PLAINTEXT = b"-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n"


def test_encrypt_decrypt_round_trip():
    token = vmcpkeys.encrypt(SECRET, "tenant-1", PLAINTEXT)
    assert token.startswith("v1:")
    assert vmcpkeys.decrypt(SECRET, "tenant-1", token) == PLAINTEXT
    assert vmcpkeys.decrypt(SECRET, "tenant-1", vmcpkeys.encrypt(SECRET, "tenant-1", b"")) == b""


def test_the_token_format_is_the_documented_one():
    """Decrypt a token by hand from the documented recipe, not through vmcpkeys."""
    token = vmcpkeys.encrypt(SECRET, "tenant-1", PLAINTEXT)
    raw = base64.b64decode(token.removeprefix("v1:"), validate=True)
    assert len(raw) == 12 + len(PLAINTEXT) + 16
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"cloudprovisioner vmcp key v1").derive(SECRET.encode())
    assert AESGCM(key).decrypt(raw[:12], raw[12:], b"tenant-1") == PLAINTEXT


def test_two_encryptions_of_the_same_text_differ():
    first, second = (vmcpkeys.encrypt(SECRET, "tenant-1", PLAINTEXT) for _ in range(2))
    assert first != second
    assert base64.b64decode(first[3:])[:12] != base64.b64decode(second[3:])[:12]  # fresh nonces


def flip_byte(token, index):
    raw = bytearray(base64.b64decode(token[3:]))
    raw[index] ^= 0x01
    return "v1:" + base64.b64encode(bytes(raw)).decode()


BAD_DECRYPTIONS = {
    "another secret": lambda t: (SECRET + "!", "tenant-1", t),
    "another tenant": lambda t: (SECRET, "tenant-2", t),
    "a flipped nonce byte": lambda t: (SECRET, "tenant-1", flip_byte(t, 0)),
    "a flipped ciphertext byte": lambda t: (SECRET, "tenant-1", flip_byte(t, 20)),
    "a flipped tag byte": lambda t: (SECRET, "tenant-1", flip_byte(t, -1)),
    "truncated": lambda t: (SECRET, "tenant-1", t[:-8]),
    "truncated to almost nothing": lambda t: (SECRET, "tenant-1", "v1:AAAA"),
    "another version": lambda t: (SECRET, "tenant-1", "v2:" + t[3:]),
    "not base64": lambda t: (SECRET, "tenant-1", t[:10] + "*" + t[11:]),
    "empty": lambda t: (SECRET, "tenant-1", ""),
    "not a string": lambda t: (SECRET, "tenant-1", None),
}


@pytest.mark.parametrize("make", BAD_DECRYPTIONS.values(), ids=BAD_DECRYPTIONS.keys())
def test_decrypt_refuses_what_it_cannot_trust(make):
    token = vmcpkeys.encrypt(SECRET, "tenant-1", PLAINTEXT)
    with pytest.raises(ValueError) as caught:
        vmcpkeys.decrypt(*make(token))
    assert str(caught.value) == "the stored signing key cannot be decrypted with CP_VMCP_KEY_SECRET"


@pytest.mark.parametrize("secret", ["", "x" * 31, None, b"x" * 40])
def test_a_short_secret_is_refused(secret):
    with pytest.raises(ValueError) as caught:
        vmcpkeys.encrypt(secret, "tenant-1", PLAINTEXT)
    assert "at least 32 characters" in str(caught.value)
    with pytest.raises(ValueError) as caught:
        vmcpkeys.decrypt(secret, "tenant-1", vmcpkeys.encrypt(SECRET, "tenant-1", PLAINTEXT))
    assert "at least 32 characters" in str(caught.value)
    assert vmcpkeys.encrypt("x" * 32, "tenant-1", b"")  # exactly 32 is enough
