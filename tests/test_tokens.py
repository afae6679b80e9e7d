"""Access tokens and the permission table, as unit tests: verify_jwt, _b64url, authorize, signing_key and
token_hash, called directly (no database). Tokens are signed here by hand (HS256 over base64url JSON)."""

import base64
import hashlib
import hmac
import json
import time

import pytest

from cloudprovisioner import auth
from cloudprovisioner.config import Config, ConfigError
from cloudprovisioner.errors import Forbidden, Unauthenticated

KEY = b"k" * 32
NOW = 1_800_000_000
CLAIMS = {"sub": "u" * 26, "tenant": "t" * 26, "role": "admin", "iat": NOW - 10, "exp": NOW + 900,
          "typ": "access", "sid": "s" * 26}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def part(document):
    return b64(json.dumps(document).encode())


def sign(header_part, payload_part, key=KEY):
    return b64(hmac.new(key, f"{header_part}.{payload_part}".encode(), hashlib.sha256).digest())


def token(claims=None, header=None, key=KEY, **changes):
    header_part = part({"alg": "HS256", "typ": "JWT"} if header is None else header)
    payload_part = part(dict(CLAIMS if claims is None else claims, **changes))
    return f"{header_part}.{payload_part}.{sign(header_part, payload_part, key)}"


def refused(detail, text, key=KEY, expected_type="access", now=NOW):
    with pytest.raises(Unauthenticated) as error:
        auth.verify_jwt(text, key, expected_type, now=now)
    assert error.value.detail == detail
    assert str(error.value) == detail
    return error.value


# --- verify_jwt -------------------------------------------------------------------------------------

def test_a_good_token_gives_its_claims():
    assert auth.verify_jwt(token(), KEY, "access", now=NOW) == CLAIMS


def test_the_clock_defaults_to_now():
    now = int(time.time())
    claims = dict(CLAIMS, iat=now, exp=now + 600)
    assert auth.verify_jwt(token(claims), KEY, "access") == claims
    refused("token expired", token(claims, exp=now - 1), now=None)


@pytest.mark.parametrize("text", [
    "", "a", "a.b", "a.b.c.d", token() + ".", token().replace(".", "..", 1),
    token()[:-2] + "\u00e9\u00e9",
])
def test_a_token_not_of_three_ascii_parts_is_malformed(text):
    refused("malformed token", text)


def test_a_part_not_base64_or_not_json_is_malformed():
    good = token()
    header_part, payload_part, signature_part = good.split(".")
    refused("malformed token", f"{header_part}!.{payload_part}.{signature_part}")
    refused("malformed token", f"{header_part}.{payload_part}!.{signature_part}")
    not_json = b64(b"not json")
    refused("malformed token", f"{not_json}.{payload_part}.{sign(not_json, payload_part)}")
    refused("malformed token", f"{header_part}.{not_json}.{sign(header_part, not_json)}")
    refused("malformed token", f"{header_part}.{payload_part}.{signature_part}!")


def test_characters_outside_base64_are_refused_not_skipped():
    # A lenient decoder would drop the '!' and find the signature good.
    header_part, payload_part, signature_part = token().split(".")
    refused("malformed token", f"{header_part}.{payload_part}.{signature_part[:4]}!!!!{signature_part[4:]}")
    with pytest.raises(Unauthenticated) as error:
        auth._b64url("eHh4!!!!eHh4")
    assert str(error.value) == "malformed token"


@pytest.mark.parametrize("text, data", [
    ("", b""), ("eA", b"x"), ("eHg", b"xx"), ("eHh4", b"xxx"), ("eHh4eA", b"xxxx"),
    ("-_-_", b"\xfb\xff\xbf"),
])
def test_b64url_decodes_unpadded_urlsafe_base64(text, data):
    assert auth._b64url(text) == data


# Each but the first five spells bytes that a canonical part spells too: "eHg=" and "eHh" are b"xx" ("eHg"),
# "eA==" and "eB" are b"x" ("eA"), "+/+/" and "-_+/" are b"\xfb\xff\xbf" ("-_-_").
@pytest.mark.parametrize("text", ["e", "eHh4e", "eA==x", "=eA", "e\u00e9",
                                  "eHg=", "eA==", "eHh", "eB", "+/+/", "-_+/"])
def test_b64url_refuses_what_is_not_base64url(text):
    with pytest.raises(Unauthenticated) as error:
        auth._b64url(text)
    assert (error.value.detail, error.value.challenge_error) == ("malformed token", "invalid_token")


@pytest.mark.parametrize("header", [
    {"alg": "none", "typ": "JWT"}, {"alg": "HS512"}, {"alg": "hs256"}, {"typ": "JWT"}, {"ALG": "HS256"},
    ["HS256"], "HS256",
], ids=["none", "hs512", "lower", "missing", "upper-name", "list", "string"])
def test_only_hs256_headers_are_taken(header):
    refused("unsupported token algorithm", token(header=header))


# A header of a thousand nested arrays made json.loads raise RecursionError: a 500 with a traceback.
NESTED = b"[" * 1000 + b"]" * 1000


def test_a_deeply_nested_part_is_never_parsed_unless_signed_and_then_is_malformed():
    header_part, payload_part, signature_part = token().split(".")
    nested = b64(NESTED)
    refused("bad token signature", f"{nested}.{payload_part}.{signature_part}")
    refused("bad token signature", f"{header_part}.{nested}.{signature_part}")
    refused("malformed token", f"{nested}.{payload_part}.{sign(nested, payload_part)}")
    refused("malformed token", f"{header_part}.{nested}.{sign(header_part, nested)}")


def test_a_token_over_4096_characters_is_malformed_before_anything_else():
    longest, too_long = token(pad="x" * 2811), token(pad="x" * 2812)
    assert (len(longest), len(too_long)) == (4096, 4097)
    assert auth.verify_jwt(longest, KEY, "access", now=NOW)["pad"] == "x" * 2811
    refused("malformed token", too_long)


def test_the_signature_must_be_ours():
    refused("bad token signature", token(key=b"x" * 32))
    header_part, payload_part, _ = token().split(".")
    refused("bad token signature", f"{header_part}.{payload_part}.")
    other = part(dict(CLAIMS, role="owner"))
    refused("bad token signature", f"{header_part}.{other}.{sign(header_part, payload_part)}")


@pytest.mark.parametrize("missing", ["sub", "tenant", "role", "iat", "exp", "typ", "sid"])
def test_every_claim_is_required(missing):
    claims = {name: value for name, value in CLAIMS.items() if name != missing}
    refused("token lacks required claims", token(claims))


@pytest.mark.parametrize("payload", [[1, 2], "claims", 42])
def test_claims_must_be_an_object(payload):
    header_part = part({"alg": "HS256"})
    payload_part = part(payload)
    refused("token lacks required claims", f"{header_part}.{payload_part}.{sign(header_part, payload_part)}")


def test_the_type_must_be_the_expected_one():
    refused("not an access token", token(typ="refresh"))
    refused("not an refresh token", token(), expected_type="refresh")
    assert auth.verify_jwt(token(typ="refresh"), KEY, "refresh", now=NOW)["typ"] == "refresh"


def test_expiry():
    assert auth.verify_jwt(token(exp=NOW + 1), KEY, "access", now=NOW)["exp"] == NOW + 1
    refused("token expired", token(exp=NOW))
    refused("token expired", token(exp=NOW - 1))
    refused("token expired", token(exp=str(NOW + 900)))
    refused("token expired", token(exp=float(NOW + 900)))


def test_issued_at_may_lie_at_most_a_minute_ahead():
    assert auth.verify_jwt(token(iat=NOW + 60), KEY, "access", now=NOW)["iat"] == NOW + 60
    assert auth.verify_jwt(token(iat=NOW - 60), KEY, "access", now=NOW)["iat"] == NOW - 60
    refused("token issued in the future", token(iat=NOW + 61))
    refused("token issued in the future", token(iat=str(NOW)))
    refused("token issued in the future", token(iat=None))


def test_a_typed_header_needs_no_typ():
    assert auth.verify_jwt(token(header={"alg": "HS256"}), KEY, "access", now=NOW) == CLAIMS


# --- authorize --------------------------------------------------------------------------------------

def principal(role, platform_admin=False):
    return auth.Principal("u" * 26, "t" * 26, role, platform_admin=platform_admin)


@pytest.mark.parametrize("role, permission", [
    ("viewer", "servers:read"), ("viewer", "me:read"), ("developer", "sshkeys:own"), ("operator", "servers:write"),
    ("operator", "servers:read"), ("admin", "users:manage"), ("admin", "servers:write"), ("admin", "vmcp:keys"),
])
def test_a_role_may_do_what_its_rank_reaches(role, permission):
    assert auth.authorize(principal(role), permission) is None


@pytest.mark.parametrize("role, permission, detail", [
    ("viewer", "servers:write", "the viewer role may not do this (servers:write needs operator)"),
    ("viewer", "sshkeys:own", "the viewer role may not do this (sshkeys:own needs developer)"),
    ("developer", "network:write", "the developer role may not do this (network:write needs operator)"),
    ("operator", "users:manage", "the operator role may not do this (users:manage needs admin)"),
    ("operator", "platform:read", "the operator role may not do this (platform:read needs admin)"),
])
def test_a_lower_role_is_forbidden(role, permission, detail):
    with pytest.raises(Forbidden) as error:
        auth.authorize(principal(role, platform_admin=True), permission)
    assert str(error.value) == detail


def test_platform_permissions_need_a_platform_admin():
    assert auth.authorize(principal("admin", platform_admin=True), "platform:read") is None
    with pytest.raises(Forbidden) as error:
        auth.authorize(principal("admin"), "platform:read")
    assert str(error.value) == "only a platform admin may do this (platform:read)"
    # A platform admin's tenant permissions are the role's, no more.
    assert auth.authorize(principal("admin"), "audit:read") is None


# --- signing_key, token_hash ------------------------------------------------------------------------

def test_signing_key_is_the_secret_as_utf8():
    assert auth.signing_key(Config({"CP_JWT_SECRET": "s" * 32})) == b"s" * 32
    assert auth.signing_key(Config({"CP_JWT_SECRET": "\u00e9" * 32})) == b"\xc3\xa9" * 32


@pytest.mark.parametrize("secret", ["s" * 31, "short"])
def test_signing_key_refuses_a_short_secret(secret):
    with pytest.raises(ConfigError) as error:
        auth.signing_key(Config({"CP_JWT_SECRET": secret}))
    assert str(error.value) == "CP_JWT_SECRET is shorter than 32 characters"


def test_signing_key_needs_the_secret():
    with pytest.raises(ConfigError) as error:
        auth.signing_key(Config({}))
    assert str(error.value) == "CP_JWT_SECRET is not set"


def test_token_hash_is_the_hex_sha256_of_the_utf8_token():
    assert auth.token_hash("cpt_abc") == "3c33264fca9c64674cb67a54f57c88fd786d434f0f345956fd4d4b6d085d95a7"
    assert auth.token_hash("cpr_\u00e9t\u00e9") == "b1bf4c77832bfacee9214dce5370c2c1600acad3d81a3b1302db12611dec162b"
