"""The validation style (cloudprovisioner.validation) and the server create's schema, called directly.

No database, no cloud, no HTTP: every checker is given literal input and checked against the literal
result or the literal error text (the texts are the API's contract: they are the 422's `errors`).
"""

import pytest

from cloudprovisioner import servers, validation
from cloudprovisioner.config import Config
from cloudprovisioner.errors import Invalid
from cloudprovisioner.validation import (
    MISSING,
    Field,
    FormFields,
    boolean,
    byte_text,
    integer,
    list_of,
    one_of,
    short_name,
    text,
    validate,
)

NAME_HINT = "must be 1-63 lower-case letters, digits and '-', starting with a letter or digit"
HOST_HINT = "must be a host name: letters, digits, '.' and '-'"
KEY_ID = "01hzy3m5k7p9r1t3v5x7z9b2d4"  # 26 characters of Crockford's lower-case base32
VPC_ID = "01hzy3m5k7p9r1t3v5x7z9b2d5"
FIREWALL_ID = "01hzy3m5k7p9r1t3v5x7z9b2d6"


def refused(call, *args):
    """The `errors` of the Invalid that call(*args) raises."""
    with pytest.raises(Invalid) as caught:
        call(*args)
    return caught.value.errors


def failure(check, value):
    """The message of the ValueError that check(value) raises."""
    with pytest.raises(ValueError) as caught:
        check(value)
    return str(caught.value)


# ---------------------------------------------------------------- Field and validate

def test_a_field_is_optional_without_a_default_unless_told():
    def check(value):
        return value
    field = Field(check)
    assert field.check is check
    assert field.required is False
    assert field.default is MISSING
    field = Field(check, required=True, default="x")
    assert field.required is True
    assert field.default == "x"


def test_validate_answers_the_checked_values_and_the_defaults_of_absent_fields():
    schema = {
        "name": Field(text(10), required=True),
        "note": Field(text(10), default="none"),
        "count": Field(integer(0, 9)),
    }
    assert validate({"name": "a", "count": "3"}, schema) == {"name": "a", "note": "none", "count": 3}
    assert validate({"name": "a"}, schema) == {"name": "a", "note": "none"}


def test_validate_takes_null_as_absent():
    schema = {"name": Field(text(10), required=True), "note": Field(text(10), default="none"),
              "count": Field(integer(0, 9))}
    assert validate({"name": "a", "note": None, "count": None}, schema) == {"name": "a", "note": "none"}
    assert refused(validate, {"name": None}, schema) == {"name": "required"}


def test_validate_names_every_wrong_field_at_once():
    schema = {
        "first": Field(text(3), required=True),
        "second": Field(text(3), required=True),
        "third": Field(text(3)),
        "fourth": Field(integer(1, 2)),
        "fifth": Field(text(3), default="d"),
    }
    errors = refused(validate, {"third": "toolong", "fourth": 3, "extra": 1, "other": "x"}, schema)
    assert errors == {
        "first": "required",
        "second": "required",
        "third": "must be at most 3 characters",
        "fourth": "must be between 1 and 2",
        "extra": "unknown field",
        "other": "unknown field",
    }


def test_the_invalid_error_says_which_fields_in_order():
    schema = {"b": Field(text(1), required=True), "a": Field(text(1), required=True)}
    with pytest.raises(Invalid) as caught:
        validate({"c": "x"}, schema)
    assert caught.value.detail == "invalid fields: a, b, c"
    assert caught.value.slug == "invalid-fields"


def test_a_missing_field_does_not_stop_the_check_of_the_next():
    schema = {"absent": Field(text(3)), "defaulted": Field(text(3), default="d"),
              "present": Field(text(3), required=True)}
    assert validate({"present": "abc"}, schema) == {"defaulted": "d", "present": "abc"}
    assert refused(validate, {"present": "abcd"}, schema) == {"present": "must be at most 3 characters"}


def test_an_unknown_field_alone_is_refused():
    assert refused(validate, {"nope": "x"}, {"name": Field(text(3))}) == {"nope": "unknown field"}
    assert refused(validate, FormFields({"nope": "x"}), {}) == {"nope": "unknown field"}


def test_an_empty_body_against_an_optional_schema_is_empty():
    assert validate({}, {"name": Field(text(3))}) == {}
    assert validate({}, {}) == {}


def test_json_must_give_a_list_as_an_array():
    schema = {"tags": Field(list_of(text(5), 3)), "after": Field(text(5))}
    assert refused(validate, {"tags": "a,b", "after": "toolong"}, schema) == {
        "tags": "must be a list (a JSON array)", "after": "must be at most 5 characters"}
    assert validate({"tags": ["a", "b"], "after": "x"}, schema) == {"tags": ["a", "b"], "after": "x"}


def test_a_form_may_give_a_list_as_a_comma_separated_string():
    schema = {"tags": Field(list_of(text(5), 3)), "name": Field(text(5))}
    assert validate(FormFields({"tags": "a, b,,a", "name": "x"}), schema) == {"tags": ["a", "b"], "name": "x"}
    assert validate(FormFields({"tags": ["a", "b"]}), schema) == {"tags": ["a", "b"]}


def test_a_list_without_commas_is_not_forced_to_be_an_array():
    schema = {"tags": Field(list_of(text(5), 3, commas=False))}
    assert refused(validate, {"tags": "a,b"}, schema) == {"tags": "must be a list"}
    assert refused(validate, FormFields({"tags": "a,b"}), schema) == {"tags": "must be a list"}


def test_a_string_for_a_plain_text_field_is_fine_from_json():
    schema = {"name": Field(text(5)), "flag": Field(boolean)}
    assert validate({"name": "a,b", "flag": "true"}, schema) == {"name": "a,b", "flag": True}
    assert validate(FormFields({"name": "a,b", "flag": "0"}), schema) == {"name": "a,b", "flag": False}


def test_form_fields_is_a_dict():
    form = FormFields({"a": "1"})
    assert isinstance(form, dict)
    assert form == {"a": "1"}


# ---------------------------------------------------------------- text

def test_text_up_to_its_length():
    check = text(5)
    assert check("") == ""
    assert check("abcde") == "abcde"
    assert failure(check, "abcdef") == "must be at most 5 characters"
    assert check("ééééé") == "ééééé"  # characters, not bytes


def test_text_must_be_a_string():
    check = text(5)
    for value in (5, None, ["a"], b"abc", True):
        assert failure(check, value) == "must be a string"


def test_text_that_must_not_be_empty():
    check = text(5, allow_empty=False)
    assert failure(check, "") == "must not be empty"
    assert check("a") == "a"
    assert failure(check, "abcdef") == "must be at most 5 characters"


def test_text_with_a_pattern_must_match_it_whole():
    check = text(10, r"[a-c]+", "only a, b and c")
    assert check("abc") == "abc"
    assert failure(check, "") == "only a, b and c"  # empty is allowed, but the pattern still applies
    assert failure(check, "abcd") == "only a, b and c"
    assert failure(check, "dabc") == "only a, b and c"
    assert failure(check, "abcdefghijk") == "must be at most 10 characters"


def test_text_with_a_pattern_and_no_hint_names_the_pattern():
    check = text(10, r"[a-c]+")
    assert failure(check, "x") == "must match [a-c]+"
    assert check("cab") == "cab"


def test_short_names():
    check = short_name()
    assert check("a") == "a"
    assert check("0-web") == "0-web"
    assert check("a" * 63) == "a" * 63
    assert failure(check, "a" * 64) == "must be at most 63 characters"
    assert failure(check, "") == "must not be empty"
    for bad in ("Web", "-web", "web_1", "web.1", "wéb"):
        assert failure(check, bad) == NAME_HINT
    assert failure(check, 7) == "must be a string"


def test_the_name_pattern_and_hint_are_as_documented():
    assert validation.NAME_PATTERN == r"[a-z0-9][a-z0-9-]{0,62}"
    assert validation.NAME_HINT == NAME_HINT


# ---------------------------------------------------------------- byte_text

def test_byte_text_counts_utf8_bytes():
    check = byte_text(4)
    assert check("") == ""
    assert check("abcd") == "abcd"
    assert check("éé") == "éé"  # 4 bytes
    assert failure(check, "abcde") == "must be at most 4 bytes"
    assert failure(check, "ééa") == "must be at most 4 bytes"  # 3 characters, 5 bytes
    assert failure(check, "€€") == "must be at most 4 bytes"  # 2 characters, 6 bytes


def test_byte_text_must_be_a_string():
    check = byte_text(4)
    for value in (1, None, b"ab", ["a"]):
        assert failure(check, value) == "must be a string"


# ---------------------------------------------------------------- one_of

def test_one_of_takes_only_what_is_offered():
    check = one_of(("nyc3", "ams3"), "region")
    assert check("nyc3") == "nyc3"
    assert check("ams3") == "ams3"
    assert failure(check, "fra1") == "region 'fra1' is not offered; choose one of: nyc3, ams3"
    assert failure(check, "NYC3") == "region 'NYC3' is not offered; choose one of: nyc3, ams3"
    assert failure(check, "") == "region '' is not offered; choose one of: nyc3, ams3"
    assert failure(check, 3) == "must be a string"
    assert failure(check, ["nyc3"]) == "must be a string"


def test_one_of_takes_any_iterable_once():
    check = one_of((size for size in ("s", "m")), "size")
    assert check("m") == "m"
    assert check("s") == "s"
    assert failure(check, "l") == "size 'l' is not offered; choose one of: s, m"


# ---------------------------------------------------------------- list_of

def test_list_of_checks_each_item_and_drops_repeats():
    check = list_of(text(3), 3)
    assert check([]) == []
    assert check(["a", "b", "a"]) == ["a", "b"]
    assert check(["c", "a", "b"]) == ["c", "a", "b"]
    assert failure(check, ["a", "abcd"]) == "item 1: must be at most 3 characters"
    assert failure(check, ["abcd", "a"]) == "item 0: must be at most 3 characters"
    assert failure(check, ["a", 5]) == "item 1: must be a string"


def test_list_of_has_a_maximum_length():
    check = list_of(text(3), 3)
    assert check(["a", "b", "c"]) == ["a", "b", "c"]
    assert failure(check, ["a", "b", "c", "d"]) == "must have at most 3 items"
    # Repeats count against the maximum: it bounds the work, not the result.
    assert failure(check, ["a", "a", "a", "a"]) == "must have at most 3 items"


def test_list_of_keeps_the_checked_items():
    check = list_of(integer(0, 9), 5)
    assert check(["1", 2, "1", "2"]) == [1, 2]


def test_list_of_splits_a_string_on_commas():
    check = list_of(text(3), 3)
    assert check("a,b") == ["a", "b"]
    assert check(" a , b ,, c ") == ["a", "b", "c"]
    assert check("a b") == ["a b"]
    assert check("") == []
    assert check(" , ,") == []
    assert check("a,a,b") == ["a", "b"]
    assert failure(check, "a,b,c,d") == "must have at most 3 items"
    assert failure(check, "a,abcd") == "item 1: must be at most 3 characters"
    assert check.commas is True


def test_list_of_without_commas_takes_only_lists():
    check = list_of(text(3), 3, commas=False)
    assert failure(check, "a,b") == "must be a list"
    assert failure(check, "") == "must be a list"
    assert check(["a", "b"]) == ["a", "b"]
    assert check.commas is False


def test_list_of_refuses_what_is_not_a_list():
    check = list_of(text(3), 3)
    for value in (("a",), {"a": 1}, 1, True):
        assert failure(check, value) == "must be a list"


# ---------------------------------------------------------------- boolean

@pytest.mark.parametrize("value", [True, "true", "1"])
def test_boolean_true(value):
    assert boolean(value) is True


@pytest.mark.parametrize("value", [False, "false", "0"])
def test_boolean_false(value):
    assert boolean(value) is False


@pytest.mark.parametrize("value", [1, 0, 1.0, "True", "FALSE", "yes", "no", "", " true", None, [], "t", "f"])
def test_boolean_refuses_anything_else(value):
    assert failure(boolean, value) == "must be true or false"


# ---------------------------------------------------------------- integer

def test_integer_bounds_are_inclusive():
    check = integer(1, 10)
    assert check(1) == 1
    assert check(10) == 10
    assert check(5) == 5
    assert failure(check, 0) == "must be between 1 and 10"
    assert failure(check, 11) == "must be between 1 and 10"


def test_integer_with_negative_bounds():
    check = integer(-5, -1)
    assert check(-5) == -5
    assert check("-5") == -5
    assert check("-1") == -1
    assert failure(check, "-6") == "must be between -5 and -1"
    assert failure(check, 0) == "must be between -5 and -1"


def test_integer_takes_strings_of_ascii_digits():
    check = integer(0, 100)
    assert check("0") == 0
    assert check("42") == 42
    assert check(" 42 ") == 42
    assert check("007") == 7
    assert failure(check, "101") == "must be between 0 and 100"


@pytest.mark.parametrize("value", [True, False, 1.5, 2.0, None, "", "1.5", "x5", "X5", "5x", "--5", "٣", "１",
                                   "1e2", "+5", [], "-"])
def test_integer_refuses_what_is_not_a_whole_number(value):
    assert failure(integer(-10, 10), value) == "must be a whole number"


def test_integer_answers_an_int():
    value = integer(0, 9)("7")
    assert value == 7
    assert type(value) is int


# ---------------------------------------------------------------- servers.create_schema

CONFIG = Config({"CP_ALLOWED_REGIONS": "nyc3, ams3", "CP_ALLOWED_SIZES": "small,large",
                 "CP_ALLOWED_IMAGES": "ubuntu,debian", "CP_PLATFORM_TAG": "acme"})
MINIMAL = {"name": "web-1", "region": "nyc3", "size": "small", "image": "ubuntu"}


def create(payload, config=CONFIG):
    return validate(payload, servers.create_schema(config))


def create_errors(payload, config=CONFIG):
    return refused(create, payload, config)


def test_a_minimal_create_gets_its_defaults():
    assert create(dict(MINIMAL)) == {
        "name": "web-1", "region": "nyc3", "size": "small", "image": "ubuntu", "description": "", "tags": [],
        "ssh_keys": [], "user_data": "", "workspace": "default",
    }


def test_a_full_create_is_taken_as_given():
    payload = {**MINIMAL, "description": "the web", "tags": ["web", "env:prod", "web"], "ssh_keys": [KEY_ID],
               "user_data": "#!/bin/sh\necho hi\n", "workspace": "team-a", "vpc": VPC_ID,
               "firewalls": [FIREWALL_ID]}
    assert create(payload) == {
        "name": "web-1", "region": "nyc3", "size": "small", "image": "ubuntu", "description": "the web",
        "tags": ["web", "env:prod"], "ssh_keys": [KEY_ID], "user_data": "#!/bin/sh\necho hi\n",
        "workspace": "team-a", "vpc": VPC_ID, "firewalls": [FIREWALL_ID],
    }


def test_a_create_needs_name_region_size_and_image():
    assert create_errors({}) == {"name": "required", "region": "required", "size": "required",
                                 "image": "required"}


def test_a_create_names_unknown_fields():
    assert create_errors({**MINIMAL, "ram": "1gb"}) == {"ram": "unknown field"}


def test_a_server_name_is_a_host_name_of_at_most_255_characters():
    assert create({**MINIMAL, "name": "a" * 255})["name"] == "a" * 255
    assert create({**MINIMAL, "name": "Web.Example-1"})["name"] == "Web.Example-1"
    assert create({**MINIMAL, "name": "a"})["name"] == "a"
    assert create_errors({**MINIMAL, "name": "a" * 256}) == {"name": "must be at most 255 characters"}
    assert create_errors({**MINIMAL, "name": ""}) == {"name": "must not be empty"}
    for bad in ("web_1", "web 1", "web-", "wéb"):
        assert create_errors({**MINIMAL, "name": bad}) == {"name": HOST_HINT}, bad
    assert create_errors({**MINIMAL, "name": 1}) == {"name": "must be a string"}


def test_region_size_and_image_come_from_the_configuration():
    assert create_errors({**MINIMAL, "region": "fra1", "size": "huge", "image": "arch"}) == {
        "region": "region 'fra1' is not offered; choose one of: nyc3, ams3",
        "size": "size 'huge' is not offered; choose one of: small, large",
        "image": "image 'arch' is not offered; choose one of: ubuntu, debian",
    }
    assert create({**MINIMAL, "region": "ams3", "size": "large", "image": "debian"})["region"] == "ams3"


def test_the_default_configuration_offers_its_regions():
    errors = create_errors({**MINIMAL, "region": "xx1", "size": "s-1vcpu-1gb", "image": "debian-12-x64"},
                           Config({}))
    assert errors == {"region": "region 'xx1' is not offered; choose one of: nyc3, ams3, fra1, sfo3"}


def test_a_description_has_at_most_1000_characters():
    assert create({**MINIMAL, "description": "d" * 1000})["description"] == "d" * 1000
    assert create_errors({**MINIMAL, "description": "d" * 1001}) == {
        "description": "must be at most 1000 characters"}


def test_tags_are_at_most_20_user_tags():
    tags = [f"t{number}" for number in range(20)]
    assert create({**MINIMAL, "tags": tags})["tags"] == tags
    assert create_errors({**MINIMAL, "tags": [*tags, "t20"]}) == {"tags": "must have at most 20 items"}
    assert create_errors({**MINIMAL, "tags": ["ok", "no space"]}) == {
        "tags": "item 1: tags may hold only letters, digits, '_', '-' and ':'"}
    assert create_errors({**MINIMAL, "tags": ["acme:mine"]}) == {
        "tags": "item 0: tags starting with 'acme' are reserved"}
    assert create_errors({**MINIMAL, "tags": "web"}) == {"tags": "must be a list (a JSON array)"}
    assert create(FormFields({**MINIMAL, "tags": "web, db"}))["tags"] == ["web", "db"]


def test_ssh_keys_are_at_most_20_key_ids():
    keys = [KEY_ID[:-2] + f"{number:02d}" for number in range(20)]
    assert create({**MINIMAL, "ssh_keys": keys})["ssh_keys"] == keys
    assert create_errors({**MINIMAL, "ssh_keys": [*keys, KEY_ID]}) == {"ssh_keys": "must have at most 20 items"}
    assert create_errors({**MINIMAL, "ssh_keys": [KEY_ID, "my-key"]}) == {
        "ssh_keys": "item 1: must be an SSH key id (26 letters and digits)"}
    assert create_errors({**MINIMAL, "ssh_keys": KEY_ID}) == {"ssh_keys": "must be a list (a JSON array)"}
    assert create(FormFields({**MINIMAL, "ssh_keys": f"{KEY_ID},{VPC_ID}"}))["ssh_keys"] == [KEY_ID, VPC_ID]


def test_user_data_has_at_most_64_kib():
    data = "#!/bin/sh\n" + "é" * ((65536 - 10) // 2)  # 65536 bytes
    assert create({**MINIMAL, "user_data": data})["user_data"] == data
    assert create_errors({**MINIMAL, "user_data": data + "a"}) == {"user_data": "must be at most 65536 bytes"}
    assert create_errors({**MINIMAL, "user_data": 5}) == {"user_data": "must be a string"}


def test_the_workspace_is_a_short_name():
    assert create({**MINIMAL, "workspace": "w" * 63})["workspace"] == "w" * 63
    assert create_errors({**MINIMAL, "workspace": "Team"}) == {"workspace": NAME_HINT}
    assert create_errors({**MINIMAL, "workspace": ""}) == {"workspace": "must not be empty"}


def test_the_vpc_is_an_id():
    assert create({**MINIMAL, "vpc": VPC_ID})["vpc"] == VPC_ID
    assert create_errors({**MINIMAL, "vpc": "default"}) == {"vpc": "must be a VPC id (26 letters and digits)"}
    assert create_errors({**MINIMAL, "vpc": VPC_ID.upper()}) == {"vpc": "must be a VPC id (26 letters and digits)"}


def test_firewalls_are_at_most_10_ids():
    ids = [FIREWALL_ID[:-2] + f"{number:02d}" for number in range(10)]
    assert create({**MINIMAL, "firewalls": ids})["firewalls"] == ids
    assert create_errors({**MINIMAL, "firewalls": [*ids, FIREWALL_ID]}) == {
        "firewalls": "must have at most 10 items"}
    assert create_errors({**MINIMAL, "firewalls": ["web"]}) == {
        "firewalls": "item 0: must be a firewall id (26 letters and digits)"}
    assert create_errors({**MINIMAL, "firewalls": FIREWALL_ID}) == {"firewalls": "must be a list (a JSON array)"}
    assert create(FormFields({**MINIMAL, "firewalls": f" {FIREWALL_ID} "}))["firewalls"] == [FIREWALL_ID]


def test_the_create_schema_is_these_fields():
    schema = servers.create_schema(CONFIG)
    assert list(schema) == ["name", "region", "size", "image", "description", "tags", "ssh_keys", "user_data",
                            "workspace", "vpc", "firewalls", "expires_at", "ttl", "check_mode"]
    assert {name for name, field in schema.items() if field.required} == {"name", "region", "size", "image"}
    assert schema["vpc"].default is MISSING
    assert schema["firewalls"].default is MISSING


# ---------------------------------------------------------------- servers._object_id

def test_object_id_checks_the_id_form():
    check = servers._object_id("a thing")
    assert check(KEY_ID) == KEY_ID
    for bad in (KEY_ID[:-1], KEY_ID + "0", KEY_ID.upper(), KEY_ID[:-1] + "u", 5, None):
        assert failure(check, bad) == "must be a thing id (26 letters and digits)"


# ---------------------------------------------------------------- servers._user_data

PLATFORM_CONFIG = (
    "#cloud-config\n"
    "# Written by CloudProvisioner: logins on this server use SSH keys only,\n"
    "# so sshd's password and keyboard-interactive logins are switched off.\n"
    "ssh_pwauth: false\n"
    "# Belt and braces: sshd keeps the first value it reads, and 00- is read first.\n"
    "write_files:\n"
    "  - path: /etc/ssh/sshd_config.d/00-cloudprovisioner.conf\n"
    "    content: |\n"
    "      PasswordAuthentication no\n"
    "      KbdInteractiveAuthentication no\n"
    "      Match all\n"
    "          PasswordAuthentication no\n"
    "          KbdInteractiveAuthentication no\n"
)
# What the platform's parts and the MIME framing add to a one-line ASCII script (7bit, so byte for byte).
MERGE_OVERHEAD = 2897


def test_no_user_data_is_the_platform_config():
    assert servers._user_data("") == PLATFORM_CONFIG
    assert servers._user_data(" \n") == PLATFORM_CONFIG


def test_user_data_is_merged_with_ours():
    merged = servers._user_data("#!/bin/sh\necho hi\n")
    assert merged.startswith('Content-Type: multipart/mixed; boundary="==cloudprovisioner-')
    assert "\n#!/bin/sh\necho hi\n" in merged
    assert "\nssh_pwauth: false\n" in merged
    assert len(merged) == MERGE_OVERHEAD + len("#!/bin/sh\necho hi\n")


def test_user_data_that_is_no_cloud_init_document_is_422():
    assert refused(servers._user_data, "hello") == {"user_data": (
        "user_data must be a cloud-init document: it has to start with #cloud-config, #!, #include, "
        "#include-once, #cloud-boothook, #part-handler, #cloud-config-archive, #cloud-config-jsonp, "
        "## template: jinja or Content-Type: multipart/ (a MIME multi-part document).")}
    assert refused(servers._user_data, "#!/bin/sh\n\ud800") == {
        "user_data": "user_data must be valid Unicode text: it holds an unpaired surrogate."}


def test_merged_user_data_may_be_exactly_64_kib():
    script = "#!/bin/sh\n" + "a" * (65536 - MERGE_OVERHEAD - 10)
    merged = servers._user_data(script)
    assert len(merged.encode("utf-8")) == 65536


def test_merged_user_data_one_byte_past_64_kib_is_422():
    script = "#!/bin/sh\n" + "a" * (65536 - MERGE_OVERHEAD - 9)
    assert refused(servers._user_data, script) == {"user_data": (
        "too large once the platform's cloud-config is added: 65537 bytes, the cloud takes 65536")}


def test_merged_user_data_is_measured_in_bytes():
    # A MIME document's own headers go out as they are, so a non-ASCII header counts its UTF-8 bytes.
    document = ("Content-Type: multipart/mixed; boundary=\"b\"\nX-Note: " + "é" * 32100 + "\n\n--b\n"
                "Content-Type: text/x-shellscript\n\n#!/bin/sh\n--b--\n")
    assert len(document) < 33000
    assert refused(servers._user_data, document) == {"user_data": (
        "too large once the platform's cloud-config is added: 67119 bytes, the cloud takes 65536")}
