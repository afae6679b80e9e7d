"""Input that used to end in a 500: lone UTF-16 surrogates in JSON (in any field or key), a VMCP configuration
stored with one, made-up HTTP methods, and JSON nested deeper than any body of the API. Each is now a problem
document (400, 409 or 405), with the audit row and the request counter a refusal always had.

In-process, against the real MariaDB (conftest.py's `app`, `admin`, `db`).
"""

import json
import secrets
import socket
from urllib.parse import urlsplit

import pytest

from tests.support import assert_problem, call

MALFORMED = "urn:cloudprovisioner:problem:malformed-body"
SURROGATE_DETAIL = ("the JSON body holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), which is no "
                    "character: send Unicode text")
CONFIG = {"name": "analysis-vm", "secret": "s3cret-s3cret-s3cret", "memory": 2048}
CHECKSUM = "0123456789abcdef0123456789abcdef01234567"


def post_json(client_or_app, path, text):
    """POST a JSON text as it is: json.dumps would escape a lone surrogate, but must not decide for the test."""
    if hasattr(client_or_app, "request"):
        return client_or_app.request("POST", path, text.encode("ascii"), "application/json")
    return call(client_or_app, "POST", path, text.encode("ascii"), "application/json")


def test_a_login_holding_a_lone_surrogate_is_400_and_still_audited(app, db):
    answer = post_json(app, "/auth/login", '{"email": "ada\\udc80@acme.test", "password": "correct horse"}')
    problem = assert_problem(answer, 400)
    assert problem["type"] == MALFORMED and problem["detail"] == SURROGATE_DETAIL
    rows = db.query("SELECT action, result, status, target FROM audit_log")
    assert rows == [{"action": "sessions.login", "result": "failed", "status": 400, "target": ""}]


@pytest.mark.parametrize("body", [
    '{"name": "web-\\udc80"}',                                    # a low surrogate alone
    '{"name": "web-\\ud800"}',                                    # a high surrogate alone, at the end
    '{"name": "\\ud800web"}',                                     # a high surrogate not followed by a low one
    '{"name": "\\udfff\\ud800"}',                                 # a pair in the wrong order
    '{"name": "web", "tags": ["a", "\\udc80"]}',                  # inside a list
    '{"name": "web", "\\udc80": 1}',                              # a key
    '{"name": "web", "firewall": {"rules": [{"x\\ud801": []}]}}',  # a key, deeper down
])
def test_a_lone_surrogate_anywhere_in_a_body_is_400(admin, body):
    problem = assert_problem(post_json(admin, "/servers", body), 400)
    assert problem["type"] == MALFORMED and problem["detail"] == SURROGATE_DETAIL


def test_a_surrogate_pair_is_a_character_like_any_other(admin):
    """json.loads joins an escaped pair into one character (U+1F600 here): that is text, and accepted."""
    made = post_json(admin, "/vmcp-configs", '{"name": "pair", "secret": "\\ud83d\\ude00 grinning face"}')
    assert made.status == 201, made.body


@pytest.mark.parametrize("field", ["secret", "diskURL", "name"])
def test_a_vmcp_configuration_holding_a_lone_surrogate_is_refused_and_not_stored(admin, field):
    body = {**CONFIG, "diskURL": "https://disks.example.org/ucernvm.iso", "diskChecksum": CHECKSUM}
    text = json.dumps(body).replace(json.dumps(body[field]), json.dumps(body[field])[:-1] + '\\udc80"')
    problem = assert_problem(post_json(admin, "/vmcp-configs", text), 400)
    assert problem["detail"] == SURROGATE_DETAIL
    assert admin.get("/vmcp-configs").json == []


def test_the_responder_answers_a_problem_for_a_stored_value_it_cannot_sign(admin, app, db):
    """A configuration stored before the API refused lone surrogates: 409 for it, not a 500 on every request."""
    made = admin.post("/vmcp-configs", CONFIG)
    assert made.status == 201, made.body
    config_id = made.json["id"]
    stored = json.dumps({"memory": 2048, "diskURL": "https://disks.example.org/\udc80.iso", "diskChecksum": CHECKSUM})
    db.update("UPDATE vmcp_configs SET parameters = %s WHERE id = %s", (stored, config_id))
    salt = secrets.token_hex(32)
    for script_name, path in (("/vmcp", f"/{config_id}?cvm_salt={salt}"),
                              ("/cgi-bin/vmcp", f"/?config={config_id}&cvm_salt={salt}")):
        problem = assert_problem(call(app, "GET", path, script_name=script_name), 409)
        assert problem["type"] == "urn:cloudprovisioner:problem:unsignable-vmcp-config"
        assert "\\udc80" not in problem["detail"] and CONFIG["secret"] not in problem["detail"]
    assert admin.get(f"/vmcp-configs/{config_id}").status == 200  # its owner can still read and fix it
    fixed = admin.patch(f"/vmcp-configs/{config_id}", {"diskURL": "https://disks.example.org/ok.iso"})
    assert fixed.status == 200, fixed.body
    assert call(app, "GET", f"/{config_id}?cvm_salt={salt}", script_name="/vmcp").status == 200


@pytest.mark.parametrize("text", ["name=web-%ED%B2%80", "name=web&tags=%ED%A0%80", "%ED%B2%80=1"])
def test_a_form_spelling_a_surrogate_is_400(admin, text):
    """A form or query string can spell a surrogate only as its (invalid) UTF-8 bytes: refused as such."""
    answer = admin.request("POST", "/servers", text.encode(), "application/x-www-form-urlencoded")
    assert_problem(answer, 400)
    assert_problem(admin.get("/servers?" + text.replace("name=web", "limit=1")), 400)


# -- methods ------------------------------------------------------------------------------------------------------

# wsgiref's validator warns of any method outside HTTP/1.1's list: exactly what these tests send.
made_up_methods = pytest.mark.filterwarnings("ignore:Unknown REQUEST_METHOD:Warning")


@made_up_methods
@pytest.mark.parametrize("method", ["X" * 200, "FOO", "PROPFIND", "QUERY", "get-ish"])
def test_an_unknown_method_is_405_without_a_trace(admin, method):
    answer = admin.request(method, "/servers")
    problem = assert_problem(answer, 405)
    assert problem["type"] == "urn:cloudprovisioner:problem:method-not-allowed"
    assert problem["detail"] == "this method is not allowed here; use GET, OPTIONS, POST"
    assert answer.headers["allow"] == "GET, OPTIONS, POST"


@made_up_methods
def test_made_up_methods_share_one_counter(admin, app, db):
    for method in ("X" * 190, "Y" * 250, "FOO", "BAR", "BAZ"):
        assert call(app, method, "/servers").status == 405
    assert call(app, "QUERY", "/nothing-here").status == 404
    assert call(app, "PUT", "/servers").status == 405  # a method the service knows, not allowed here
    rows = db.query("SELECT labels, value FROM counters WHERE name = 'http_requests_total' "
                    "AND labels NOT LIKE 'POST /auth/%%' ORDER BY labels")
    assert rows == [{"labels": "OTHER /servers|4xx", "value": 5}, {"labels": "OTHER unmatched|4xx", "value": 1},
                    {"labels": "PUT /servers|4xx", "value": 1}]


def test_a_made_up_method_through_apache_is_405(apache):
    """Apache hands any method to the script: the answer is still a problem document."""
    host, port = urlsplit(apache.url).hostname, urlsplit(apache.url).port
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"X" * 200 + b" /api/servers HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert b"Content-Type: application/problem+json" in head and b"Allow: GET, OPTIONS, POST" in head
    assert b'"type": "urn:cloudprovisioner:problem:method-not-allowed"' in body


# -- nesting ------------------------------------------------------------------------------------------------------

def nested(depth):
    return '{"name": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


@pytest.mark.parametrize("depth", [33, 500, 990, 1000, 100_000])
def test_json_nested_deeper_than_any_body_is_400(admin, depth):
    problem = assert_problem(post_json(admin, "/servers", nested(depth)), 400)
    assert problem["type"] == MALFORMED
    assert problem["detail"] in ("the JSON body nests deeper than 32 levels", "the JSON is nested too deeply")


def test_json_nested_32_levels_is_read_and_judged_field_by_field(admin):
    problem = assert_problem(post_json(admin, "/servers", nested(32)), 422)
    assert problem["errors"]["name"] == "must be a string"
