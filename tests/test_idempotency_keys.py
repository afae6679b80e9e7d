"""Idempotency-Key: what makes two requests "the same request" (fingerprint) and which keys are taken (key_of).

Unit tests: no database, no HTTP. The expected digests were computed once by hand with hashlib
(sha256 of the four fields joined by a newline) and are written here literally.
"""

from types import SimpleNamespace

import pytest

from cloudprovisioner.web.idempotency import fingerprint, key_of
from cloudprovisioner.web.responses import Problem

BODY = b'{"name":"web-1"}'
BASE = "7952cb3cdc3a14b8854207170a1aaabf1b4d53233ea8e0628cd09c34c8409151"
BAD_KEY = "Idempotency-Key must be 1 to 255 printable ASCII characters"


def test_fingerprint_is_the_sha256_of_the_four_fields_joined_by_newlines():
    # sha256(b'POST\n/v1/servers\napplication/json\n{"name":"web-1"}')
    assert fingerprint("POST", "/v1/servers", "application/json", BODY) == BASE


@pytest.mark.parametrize("method, path, content_type, body, expected", [
    ("PUT", "/v1/servers", "application/json", BODY,
     "905617d236e2bfea6170c90ee5f22d2f6e479a0627975053105082d8472013b7"),
    ("POST", "/v1/firewalls", "application/json", BODY,
     "e038ad70233cc40b0b293a89c96921f986e4e676d5c294bbd8293052e434a2f6"),
    ("POST", "/v1/servers", "application/json; charset=utf-8", BODY,
     "387d2e20e89f39f390ceed99763c4d2789ed99c1e6fbc32ef2f5fba71882d048"),
    ("POST", "/v1/servers", "application/json", b'{"name":"web-2"}',
     "1977e8b000864986a5842ef0a12bf3b1f76b922507e96827ccf5b783cec0ea90"),
], ids=["method", "path", "content-type", "body"])
def test_each_field_changes_the_fingerprint(method, path, content_type, body, expected):
    assert fingerprint(method, path, content_type, body) == expected
    assert expected != BASE


def test_a_query_is_part_of_the_request():
    # sha256(b'POST\n/v1/servers?dry_run=true\napplication/json\n{"name":"web-1"}'): a dry run is another request
    assert fingerprint("POST", "/v1/servers", "application/json", BODY, "dry_run=true") == (
        "cb4c2c1356cc8160253c769b50c66b056bd185772fbef1206d4e61a8967d71f0")
    assert fingerprint("POST", "/v1/servers", "application/json", BODY, "") == BASE


def test_the_separator_keeps_fields_apart():
    # The same bytes split differently between method and path are another request.
    assert fingerprint("GET", "/x", "", b"") == "9db174741a1b78f1c1c46168dcf1b882f43a02beb642a5bb8c8cf65a60713a6c"
    assert fingerprint("GE", "T/x", "", b"") == "8fc0cf3ca6cc94c2785e576510255a450624d6099b63ed01494d23da437d0717"


def test_text_fields_are_hashed_as_utf8():
    assert (fingerprint("POST", "/v1/caf\u00e9", "text/plain", "\u00e9".encode())
            == "ec1bfd495d6daee89615015341b3cbd23513e79fa57d2e37d15c392fa0fb4cad")


def request(**environ):
    return SimpleNamespace(environ=environ)


def keyed(raw):
    return key_of(request(HTTP_IDEMPOTENCY_KEY=raw))


def test_no_header_is_no_key():
    assert key_of(request()) is None
    assert key_of(request(HTTP_X_IDEMPOTENCY_KEY="abc")) is None


@pytest.mark.parametrize("raw, key", [
    ("abc", "abc"),
    ("a", "a"),
    ("  abc \t", "abc"),
    ('"abc"', "abc"),
    ('  "abc"  ', "abc"),
    ('"a"', "a"),
    ('abc"', 'abc"'),
    ('"abc', '"abc'),
    ("abca", "abca"),
    ('"a b"', "a b"),
    ('" "', " "),
    ("a" * 255, "a" * 255),
    ('"' + "b" * 255 + '"', "b" * 255),
    ("~!#$%&'()*+,-./:;<=>?@[]^_`{|}", "~!#$%&'()*+,-./:;<=>?@[]^_`{|}"),
], ids=["plain", "one-char", "trimmed", "quoted", "quoted-trimmed", "quoted-one-char", "trailing-quote",
        "leading-quote", "same-ends", "quoted-space", "quoted-blank", "255", "quoted-255", "punctuation"])
def test_keys_taken(raw, key):
    assert keyed(raw) == key


@pytest.mark.parametrize("raw", [
    "", "   ", '""', "a" * 256, '"' + "b" * 256 + '"', "a\x01b", "a\x7fb", "cl\u00e9", "caf\u00e9\u00e9",
], ids=["empty", "blank", "empty-quoted", "256", "quoted-256", "control", "delete", "non-ascii",
        "non-ascii-2"])
def test_keys_refused(raw):
    with pytest.raises(Problem) as refused:
        keyed(raw)
    assert (refused.value.status, refused.value.slug, refused.value.detail) == (400, "bad-idempotency-key", BAD_KEY)
    assert str(refused.value) == BAD_KEY
