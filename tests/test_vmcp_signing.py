"""The text a VMCP signature covers (vmcpkeys.signed_text and its helpers), byte for byte, as the CernVM
WebAPI rebuilds it: pure functions, no key needed. Expected bytes are written out by hand."""

import pytest

from cloudprovisioner import vmcpkeys

NOT_SIGNED = "only strings and integers are signed by the CernVM WebAPI (convert it to one of them)"


def test_keys_in_byte_order_lowercased_values_urlencoded_then_the_salt():
    document = {"b": "x y+&=/", "A": 5, "signature": "zzz", "Zeta": "\u00e9~-_.", "a": -2147483648,
                "c": 2147483647, "x": "", "\u00c9T": "0"}
    assert vmcpkeys.signed_text(document, "s@lt") == (
        b"a=5\n"
        b"zeta=%C3%A9~-_.\n"
        b"a=-2147483648\n"
        b"b=x%20y%2B%26%3D%2F\n"
        b"c=2147483647\n"
        b"x=\n"
        b"\xc3\x89t=0\n"
        b"s@lt")


def test_the_salt_is_appended_as_utf8_without_a_newline():
    assert vmcpkeys.signed_text({}, "") == b""
    assert vmcpkeys.signed_text({}, "s\u00e9 l") == b"s\xc3\xa9 l"
    assert vmcpkeys.signed_text({"k": "v"}, "") == b"k=v\n"


def test_the_signature_key_is_left_out_wherever_it_sorts():
    assert vmcpkeys.signed_text({"signature": "old", "a": "1", "z": "2"}, "salt") == b"a=1\nz=2\nsalt"
    assert vmcpkeys.signed_text({"signature": "old"}, "salt") == b"salt"


def test_the_order_is_the_utf8_byte_order():
    document = {"\u00e9": "3", "z": "2", "Z": "1", "_": "4", "~": "5", "\u20ac": "6", "\U0001f600": "7"}
    assert vmcpkeys.signed_text(document, "") == (
        b"z=1\n_=4\nz=2\n~=5\n\xc3\xa9=3\n\xe2\x82\xac=6\n\xf0\x9f\x98\x80=7\n")


def test_urlencode_keeps_only_unreserved_bytes():
    assert vmcpkeys._urlencode("AZaz09-_.~") == b"AZaz09-_.~"
    assert vmcpkeys._urlencode(" !*'()/?#%\u00e9\u20ac\n") == (
        b"%20%21%2A%27%28%29%2F%3F%23%25%C3%A9%E2%82%AC%0A")
    assert vmcpkeys._urlencode("") == b""


@pytest.mark.parametrize("salt", [b"salt", None, 5])
def test_the_salt_must_be_a_string(salt):
    with pytest.raises(TypeError) as error:
        vmcpkeys.signed_text({"a": "1"}, salt)
    assert str(error.value) == "the salt must be a string"


@pytest.mark.parametrize("document", [[("a", "1")], "a=1", None])
def test_the_document_must_be_a_dict(document):
    with pytest.raises(TypeError) as error:
        vmcpkeys.signed_text(document, "salt")
    assert str(error.value) == "the VMCP document must be a dict"


def test_keys_must_be_strings():
    with pytest.raises(TypeError) as error:
        vmcpkeys.signed_text({"a": "1", 7: "2"}, "salt")
    assert str(error.value) == "VMCP key 7 is not a string"


@pytest.mark.parametrize("key, shown", [("a\x00b", "'a\\x00b'"), ("\x00", "'\\x00'")])
def test_keys_must_not_hold_a_nul(key, shown):
    with pytest.raises(ValueError) as error:
        vmcpkeys.signed_text({key: "1"}, "salt")
    assert str(error.value) == f"VMCP key {shown} contains a NUL character"


@pytest.mark.parametrize("key", ["Signature", "SIGNATURE", "sIgNaTuRe"])
def test_a_key_the_client_would_take_for_the_signature_is_refused(key):
    with pytest.raises(ValueError) as error:
        vmcpkeys.signed_text({key: "1"}, "salt")
    assert str(error.value) == f"VMCP key '{key}' would be read as the signature by the CernVM WebAPI"


def test_keys_like_but_not_the_signature_are_signed():
    # Only ASCII is lowercased: a non-ASCII look-alike is another key.
    assert vmcpkeys.signed_text({"signatures": "1", "\u017fignature": "2"}, "") == (
        b"signatures=1\n\xc5\xbfignature=2\n")


@pytest.mark.parametrize("value, kind", [
    (1.5, "float"), (True, "bool"), (False, "bool"), (None, "NoneType"), (["a"], "list"), ({"a": 1}, "dict"),
    (b"a", "bytes"),
])
def test_values_the_client_would_drop_are_refused(value, kind):
    with pytest.raises(TypeError) as error:
        vmcpkeys.signed_text({"ok": "1", "n": value}, "salt")
    assert str(error.value) == f"VMCP value of 'n' is a {kind}: {NOT_SIGNED}"


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 10**20])
def test_integers_outside_32_bits_are_refused(value):
    with pytest.raises(ValueError) as error:
        vmcpkeys.signed_text({"n": value}, "salt")
    assert str(error.value) == "VMCP value of 'n' is outside the 32-bit range the CernVM WebAPI reads"


@pytest.mark.parametrize("value, text", [(0, b"0"), (-1, b"-1"), (2**31 - 1, b"2147483647"),
                                         (-(2**31), b"-2147483648")])
def test_integers_are_signed_as_decimal(value, text):
    assert vmcpkeys.signed_text({"n": value}, "") == b"n=" + text + b"\n"


@pytest.mark.parametrize("value", ["a\x00", "\x00", "a\x00b"])
def test_values_must_not_hold_a_nul(value):
    with pytest.raises(ValueError) as error:
        vmcpkeys.signed_text({"n": value}, "salt")
    assert str(error.value) == "VMCP value of 'n' contains a NUL character, which the CernVM WebAPI cuts off"


def test_value_text_names_the_key():
    assert vmcpkeys._value_text("k", "v") == "v"
    assert vmcpkeys._value_text("k", 12) == "12"
    with pytest.raises(TypeError) as error:
        vmcpkeys._value_text("Key", 0.5)
    assert str(error.value) == f"VMCP value of 'Key' is a float: {NOT_SIGNED}"


def test_checked_keys_lists_every_key_in_document_order():
    assert vmcpkeys._checked_keys({"b": 1, "signature": 2, "a": 3}) == ["b", "signature", "a"]
