"""Bad input answers problem+json with the right status, before anything touches the database.

The config here names a database socket that does not exist: these requests
must be refused without needing it (and the 503 test shows what happens when
one does).
"""

import sys

import pytest

from cloudprovisioner.web import make_app
from tests.support import assert_problem, call, make_config

VALID = {"name": "web-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}


@pytest.fixture
def app():
    return make_app(make_config({"CP_DB_SOCKET": "/nonexistent/mysqld.sock", "CP_DB_PASSWORD": "x",
                                 "CP_DO_TOKEN": "t", "CP_MAX_BODY_BYTES": "1000",
                                 "CP_DB_CONNECT_TIMEOUT": "1"}))


def test_unknown_path_is_404(app):
    assert_problem(call(app, "GET", "/nothing-here"), 404)


def test_wrong_method_is_405_with_allow(app):
    answer = call(app, "PUT", "/servers")
    assert_problem(answer, 405)
    assert answer.headers["allow"] == "GET, POST"
    assert call(app, "PATCH", "/servers/abc").headers["allow"] == "DELETE, GET"


def test_malformed_json_is_400(app):
    problem = assert_problem(call(app, "POST", "/servers", b'{"name": ', "application/json"), 400)
    assert "malformed JSON" in problem["detail"]


def test_deeply_nested_json_is_400_not_a_crash(app):
    assert_problem(call(app, "POST", "/servers", b"[" * 100_000, "application/json"), 413)
    nested = b'{"name": ' + b"[" * 900 + b"]" * 900 + b"}"
    app_with_room = make_app(make_config({"CP_DB_PASSWORD": "x", "CP_DO_TOKEN": "t"}))
    deep = b"[" * 200_000
    assert_problem(call(app_with_room, "POST", "/servers", deep, "application/json"), 400)
    assert_problem(call(app_with_room, "POST", "/servers", nested, "application/json"), 422)


def test_json_that_is_not_an_object_is_400(app):
    assert_problem(call(app, "POST", "/servers", b"[1, 2]", "application/json"), 400)


def test_body_not_utf8_is_400(app):
    assert_problem(call(app, "POST", "/servers", b"\xff\xfe", "application/json"), 400)


def raw_status(app, environ):
    statuses = []
    app(dict(environ, **{"wsgi.errors": sys.stderr}), lambda status, headers: statuses.append(status))
    return statuses[0]


def test_body_over_limit_is_413_and_never_held_in_memory(app):
    """Decided from Content-Length; the body is then only drained in small chunks (Apache needs that)."""
    class HugeInput:
        def __init__(self):
            self.largest_read = 0

        def read(self, size=-1):
            assert size >= 0, "the whole body must never be read at once"
            self.largest_read = max(self.largest_read, size)
            return b"x" * size
    assert_problem(call(app, "POST", "/servers", b"x" * 5000, "application/json"), 413)
    body = HugeInput()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/servers", "CONTENT_LENGTH": "999999999",
               "CONTENT_TYPE": "application/json", "wsgi.input": body}
    assert raw_status(app, environ) == "413 Content Too Large"
    assert body.largest_read <= 65536


def test_unsupported_content_type_is_415(app):
    assert_problem(call(app, "POST", "/servers", b"name=x", "text/plain"), 415)


def test_missing_content_length_is_411(app):
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/servers", "CONTENT_TYPE": "application/json"}
    assert raw_status(app, environ) == "411 Length Required"


@pytest.mark.parametrize("field, value, message", [
    ("name", "bad name!", "host name"),
    ("name", 42, "must be a string"),
    ("region", "mars1", "not offered"),
    ("size", "s-64vcpu", "not offered"),
    ("image", "windows", "not offered"),
    ("tags", {"an": "object"}, "must be a list"),
    ("tags", ["ok", "bad tag"], "item 1"),
    ("tags", ["cloudprovisioner:01abc"], "reserved"),
    ("ssh_keys", ["not-a-fingerprint"], "fingerprint"),
    ("ssh_keys", [True], "must be a string"),
    ("user_data", "x" * (64 * 1024 + 1), "65536 bytes"),
    ("description", ["a list"], "must be a string"),
    ("colour", "blue", "unknown field"),
])
def test_each_invalid_field_is_named_in_a_422(field, value, message):
    app = make_app(make_config({"CP_DB_PASSWORD": "x", "CP_DO_TOKEN": "t"}))
    body = dict(VALID, **{field: value})
    problem = assert_problem(call(app, "POST", "/servers", body), 422)
    assert field in problem["errors"]
    assert message in problem["errors"][field]


def test_all_missing_fields_named_at_once(app):
    problem = assert_problem(call(app, "POST", "/servers", {}), 422)
    assert set(problem["errors"]) == {"name", "region", "size", "image"}
    assert all(reason == "required" for reason in problem["errors"].values())


def test_bad_query_parameters_are_422(app):
    for query, field in (("limit=0", "limit"), ("limit=abc", "limit"), ("status=running", "status"),
                         ("cursor=zz", "cursor"), ("colour=blue", "colour")):
        problem = assert_problem(call(app, "GET", f"/servers?{query}"), 422)
        assert field in problem["errors"]


def test_database_unreachable_is_503_with_retry_after(app):
    answer = call(app, "GET", "/servers")
    assert_problem(answer, 503)
    assert answer.headers["retry-after"]


def test_unexpected_error_is_500_without_traceback(app, monkeypatch, capsys):
    from cloudprovisioner import servers

    def explode(request):
        raise RuntimeError("secret internals")
    monkeypatch.setattr(servers, "list_servers", explode)
    answer = call(app, "GET", "/servers")
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

    from cloudprovisioner.web import parse_pairs
    assert parse_pairs(text) == parse_qs(text, keep_blank_values=True)


@pytest.mark.parametrize("text", ["a=%ZZ", "a=%4", "a=%ff"])
def test_bad_escapes_are_errors_not_guesses(app, text):
    from cloudprovisioner.web import parse_pairs
    with pytest.raises(ValueError):
        parse_pairs(text)
    assert_problem(call(app, "GET", f"/servers?{text}"), 400)
