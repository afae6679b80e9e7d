"""The CernVM WebAPI client's check of a VMCP reply, written apart from cloudprovisioner.vmcpkeys.

From the JSON as received: every string or integer value (the client drops other types), keys in
byte-wise order, `lowercase(key)=urlencode(value)\\n` with only A-Za-z0-9-_.~ kept, then the salt;
RSA PKCS#1 v1.5 over SHA-512. Verified twice: with `cryptography`, and with `openssl dgst -sha512
-verify` as a separate process. The two must agree, or the check itself is broken.
"""

import base64
import json
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote


def client_text(document, salt):
    kept = {key: value for key, value in document.items()
            if key != "signature" and not isinstance(value, bool) and isinstance(value, (str, int))}
    lines = [f"{key.lower()}={quote(str(value), safe='-_.~')}\n" for key, value in
             sorted(kept.items(), key=lambda item: item[0].encode("utf-8"))]
    return ("".join(lines) + salt).encode("utf-8")


def verify(body, salt, public_pem):
    """Whether the reply `body` (bytes) verifies for `salt` with the public key (PEM)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    document = json.loads(body)
    text, signature = client_text(document, salt), base64.b64decode(document["signature"])
    key = serialization.load_pem_public_key(public_pem.encode())
    try:
        key.verify(signature, text, padding.PKCS1v15(), hashes.SHA512())
        by_library = True
    except InvalidSignature:
        by_library = False
    by_openssl = openssl_verifies(text, signature, public_pem)
    assert by_library == by_openssl, "cryptography and openssl disagree about one signature"
    return by_library


def openssl_verifies(text, signature, public_pem):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "text").write_bytes(text)
        (folder / "sig").write_bytes(signature)
        (folder / "pub.pem").write_text(public_pem)
        done = subprocess.run(["openssl", "dgst", "-sha512", "-verify", str(folder / "pub.pem"), "-signature",
                               str(folder / "sig"), str(folder / "text")], capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.strip() == "Verified OK"
