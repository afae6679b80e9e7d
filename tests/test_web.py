"""Bad input answers problem+json with the right status, and loses nothing already stored.

`admin` is a tenant admin logged in through the API (conftest.py), against the
real MariaDB and the sandbox cloud API.
"""

import sys

import pytest

from cloudprovisioner.web.app import make_app
from tests.support import Client, assert_problem, call, make_config

VALID = {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}


TOO_BIG = 262144 + 1  # one byte over the default CP_MAX_BODY_BYTES


def test_unknown_path_is_404(admin):
    assert_problem(admin.get("/nothing-here"), 404)


def test_wrong_method_is_405_with_allow(admin):
    answer = admin.request("PUT", "/servers")
    assert_problem(answer, 405)
    assert answer.headers["allow"] == "GET, OPTIONS, POST"
    assert admin.request("PUT", "/servers/abc").headers["allow"] == "DELETE, GET, OPTIONS, PATCH"


def test_malformed_json_is_400(admin):
    problem = assert_problem(admin.request("POST", "/servers", b'{"name": ', "application/json"), 400)
    assert "malformed JSON" in problem["detail"]


def test_deeply_nested_json_is_400_not_a_crash(admin):
    assert_problem(admin.request("POST", "/servers", b"[" * 200_000, "application/json"), 400)
    nested = b'{"name": ' + b"[" * 900 + b"]" * 900 + b"}"  # parsed, then refused: no body nests past 32 levels
    assert_problem(admin.request("POST", "/servers", nested, "application/json"), 400)


def test_json_that_is_not_an_object_is_400(admin):
    assert_problem(admin.request("POST", "/servers", b"[1, 2]", "application/json"), 400)


def test_body_not_utf8_is_400(admin):
    assert_problem(admin.request("POST", "/servers", b"\xff\xfe", "application/json"), 400)


def raw_status(admin, environ):
    statuses = []
    environ = dict(environ, **{"wsgi.errors": sys.stderr, "HTTP_AUTHORIZATION": f"Bearer {admin.token}"})
    admin.app(environ, lambda status, headers: statuses.append(status))
    return statuses[0]


def test_body_over_limit_is_413_and_never_held_in_memory(admin):
    """Decided from Content-Length; the body is then only drained in small chunks (Apache needs that)."""
    class HugeInput:
        def __init__(self):
            self.largest_read = 0

        def read(self, size=-1):
            assert size >= 0, "the whole body must never be read at once"
            self.largest_read = max(self.largest_read, size)
            return b"x" * size
    assert_problem(admin.request("POST", "/servers", b"x" * TOO_BIG, "application/json"), 413)
    body = HugeInput()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/servers", "CONTENT_LENGTH": "999999999",
               "CONTENT_TYPE": "application/json", "wsgi.input": body}
    assert raw_status(admin, environ) == "413 Content Too Large"
    assert body.largest_read <= 65536


def test_unsupported_content_type_is_415(admin):
    assert_problem(admin.request("POST", "/servers", b"name=x", "text/plain"), 415)


def test_missing_content_length_is_411(admin):
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/servers", "CONTENT_TYPE": "application/json"}
    assert raw_status(admin, environ) == "411 Length Required"


@pytest.mark.parametrize("field, value, message", [
    ("name", "bad name!", "host name"),
    ("name", 42, "must be a string"),
    ("region", "mars1", "not offered"),
    ("size", "s-64vcpu", "not offered"),
    ("image", "windows", "not offered"),
    ("tags", {"an": "object"}, "must be a list"),
    ("tags", ["ok", "bad tag"], "item 1"),
    ("tags", ["cloudprovisioner:01abc"], "reserved"),
    ("ssh_keys", ["not-a-key-id"], "SSH key id"),
    ("ssh_keys", [True], "SSH key id"),
    ("user_data", "x" * (64 * 1024 + 1), "65536 bytes"),
    ("owner", "someone-else", "unknown field"),
    ("description", ["a list"], "must be a string"),
    ("colour", "blue", "unknown field"),
])
def test_each_invalid_field_is_named_in_a_422(admin, field, value, message):
    body = dict(VALID, **{field: value})
    problem = assert_problem(admin.request("POST", "/servers", body), 422)
    assert field in problem["errors"]
    assert message in problem["errors"][field]


def test_all_missing_fields_named_at_once(admin):
    problem = assert_problem(admin.request("POST", "/servers", {}), 422)
    assert set(problem["errors"]) == {"name", "region", "size", "image"}
    assert all(reason == "required" for reason in problem["errors"].values())


def test_bad_query_parameters_are_422(admin):
    for query, field in (("limit=0", "limit"), ("limit=abc", "limit"), ("status=running", "status"),
                         ("cursor=zz", "cursor"), ("colour=blue", "colour")):
        problem = assert_problem(admin.request("GET", f"/servers?{query}"), 422)
        assert field in problem["errors"]


def test_database_unreachable_is_503_with_retry_after(admin, values):
    values.update(CP_DB_SOCKET="/nonexistent/mysqld.sock", CP_DB_CONNECT_TIMEOUT="1")
    answer = Client(make_app(make_config(values)), admin.token).get("/servers")
    assert_problem(answer, 503)
    assert answer.headers["retry-after"]


def test_unexpected_error_is_500_without_traceback(admin, monkeypatch, capsys):
    from cloudprovisioner.web import servers

    def explode(request):
        raise RuntimeError("secret internals")
    monkeypatch.setattr(servers, "list_servers", explode)
    answer = admin.request("GET", "/servers")
    problem = assert_problem(answer, 500)
    assert "secret internals" not in answer.body.decode()
    assert "internal error" in problem["detail"]


def test_misconfiguration_is_503_and_logged(tmp_path, monkeypatch):
    bad = tmp_path / "bad.env"
    bad.write_text("CP_UNKNOWN=1\n")
    monkeypatch.setenv("CLOUDPROVISIONER_CONFIG", str(bad))
    answer = call(make_app(), "GET", "/servers")
    assert_problem(answer, 503)


@pytest.mark.parametrize("text", ["", "a=1", "a=1&b=2&a=3", "a=&b", "name=web+1&x=%C3%A9t%C3%A9",
                                  "tags=a%2Cb&tags=c", "k%20ey=v%3Dal", "a=1&&b=2"])
def test_our_query_parser_agrees_with_urllib(text):
    from urllib.parse import parse_qs

    from cloudprovisioner.web.app import parse_pairs
    assert parse_pairs(text) == parse_qs(text, keep_blank_values=True)


@pytest.mark.parametrize("text", ["a=%ZZ", "a=%4", "a=%ff"])
def test_bad_escapes_are_errors_not_guesses(admin, text):
    from cloudprovisioner.web.app import parse_pairs
    with pytest.raises(ValueError):
        parse_pairs(text)
    assert_problem(admin.request("GET", f"/servers?{text}"), 400)


@pytest.mark.parametrize("path, params", [
    ("/servers", {}), ("/servers/", {}), ("/servers/abc", {"server_id": "abc"}),
    ("/servers/abc/status/", {"server_id": "abc"}), ("/servers//status", None), ("/servers/abc/nope", None),
    ("/", None), ("/auth/login", {}),
])
def test_routes_match_templates(path, params):
    from cloudprovisioner.web.app import match_route
    assert match_route(path)[0] == params
