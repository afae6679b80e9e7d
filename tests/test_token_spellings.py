"""One token, one spelling; and a token the verifier cannot parse is a 401, never a 500.

Base64url has other spellings of the same bytes: a trailing `=`, standard base64's `+` and `/`, and a
last character with other values in its unused bits. A lenient decoder takes them all, so one signed
token had several texts that passed. Only the canonical form (RFC 7515: unpadded base64url, and the
bytes re-encode to exactly the text) is a token here. The good tokens below are made with PyJWT,
the issuer's library, not with the verifier under test.
"""

import base64
import hashlib
import hmac
import json

import jwt
import pytest

from cloudprovisioner import auth
from cloudprovisioner.config import parse_env_file
from cloudprovisioner.errors import Unauthenticated
from tests.support import TEST_SECRET, Client, assert_problem, http

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# A header of a thousand nested arrays: json.loads gives up with RecursionError.
NESTED = b"[" * 1000 + b"]" * 1000


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def with_url_characters(claims, key=TEST_SECRET):
    """`claims` signed by PyJWT, with a `jti` chosen so that the token holds both '-' and '_' and its
    payload part needs padding in standard base64."""
    for serial in range(10_000):
        text = jwt.encode(dict(claims, jti=f"spelling-{serial}"), key, algorithm="HS256")
        if "-" in text and "_" in text and len(text.split(".")[1]) % 4:
            return text
    raise AssertionError("no such token in 10,000 tries")


def other_unused_bits(part):
    """The same bytes, the last character's unused low bits set: a 43-character part (32 bytes) has 2."""
    assert len(part) % 4 == 3, part
    last = ALPHABET.index(part[-1])
    assert last & 0b11 == 0, part  # canonical: the unused bits are zero
    return part[:-1] + ALPHABET[last | 0b01]


def spellings(token):
    """Other texts of `token` that a lenient base64url decoder reads as the same three parts' bytes."""
    header, payload, signature = token.split(".")
    return {
        "padded signature": f"{header}.{payload}.{signature}=",
        "padded payload": f"{header}.{payload}{'=' * (-len(payload) % 4)}.{signature}",
        "standard base64": token.replace("-", "+").replace("_", "/"),
        "unused bits": f"{header}.{payload}.{other_unused_bits(signature)}",
    }


SPELLINGS = ["padded signature", "padded payload", "standard base64", "unused bits"]


def test_the_spellings_are_the_same_bytes_to_a_lenient_decoder():
    token = with_url_characters({"sub": "x"})
    for name, text in spellings(token).items():
        assert text != token, name
        decoded = [base64.b64decode(part.replace("-", "+").replace("_", "/") + "==") for part in text.split(".")]
        canonical = [base64.urlsafe_b64decode(part + "==") for part in token.split(".")]
        assert decoded == canonical, name


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_another_spelling_of_a_good_token_is_malformed(spelling):
    claims = {"sub": "u", "tenant": "t", "role": "admin", "iat": 1_800_000_000, "exp": 1_800_000_900,
              "typ": "access", "sid": "s"}
    token = with_url_characters(claims, "k" * 32)
    key, now = b"k" * 32, 1_800_000_100
    assert auth.verify_jwt(token, key, "access", now=now)["sub"] == "u"
    with pytest.raises(Unauthenticated) as error:
        auth.verify_jwt(spellings(token)[spelling], key, "access", now=now)
    assert error.value.detail == "malformed token"


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_another_spelling_of_a_live_access_token_is_401(admin, app, spelling):
    claims = jwt.decode(admin.token, TEST_SECRET, algorithms=["HS256"])
    token = with_url_characters(claims)
    assert Client(app, token).get("/me").status == 200
    answer = Client(app, spellings(token)[spelling]).get("/me")
    assert assert_problem(answer, 401)["detail"] == "malformed token"
    assert answer.headers["www-authenticate"].startswith('Bearer realm="cloudprovisioner", error="invalid_token"')


# --- parts that cannot be parsed ---------------------------------------------------------------------------

def nested_tokens(key):
    """A token whose header is NESTED: unsigned, and signed with `key` (so only parsing can refuse it).
    Signed by hand: PyJWT writes its own header."""
    payload = b64(json.dumps({"sub": "u", "typ": "access"}).encode())
    header = b64(NESTED)
    signature = b64(hmac.new(key.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return {"unsigned": f"{header}.{payload}.{b64(b'x' * 32)}", "signed": f"{header}.{payload}.{signature}"}


@pytest.mark.parametrize("kind", ["unsigned", "signed"])
def test_a_nested_header_is_a_401_in_process(app, kind):
    answer = Client(app, nested_tokens(TEST_SECRET)[kind]).get("/me")
    detail = assert_problem(answer, 401)["detail"]
    assert detail == {"unsigned": "bad token signature", "signed": "malformed token"}[kind]


@pytest.mark.parametrize("kind", ["unsigned", "signed"])
def test_a_nested_header_is_a_401_through_apache(apache, installed, kind):
    secret = parse_env_file((installed / "etc" / "cloudprovisioner.env").read_text())["CP_JWT_SECRET"]
    logged = len(apache.error_log())
    answer = http("GET", apache.url + "/api/me", headers={"Authorization": f"Bearer {nested_tokens(secret)[kind]}"},
                  timeout=30)
    detail = assert_problem(answer, 401)["detail"]
    assert detail == {"unsigned": "bad token signature", "signed": "malformed token"}[kind]
    assert "Traceback" not in apache.error_log()[logged:]
