"""The WSGI application: request parsing, routing, problem rendering.

Handlers are named by strings and imported on first use, so a request pays
only for the modules on its own path (CGI starts a new interpreter per
request; see DESIGN.md).
"""

import json
import re
import sys

from . import config as configuration
from .errors import Problem, not_found

# (pattern on PATH_INFO, {method: "module:function"})
ROUTES = [
    (r"/servers", {"GET": "servers:list_servers", "POST": "servers:create_server"}),
    (r"/servers/(?P<server_id>[^/]+)",
     {"GET": "servers:get_server", "DELETE": "servers:delete_server"}),
    (r"/servers/(?P<server_id>[^/]+)/status", {"GET": "servers:get_server_status"}),
]
_COMPILED = [(re.compile(pattern + r"/?\Z"), methods) for pattern, methods in ROUTES]

DRAIN_LIMIT = 16 * 1024 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"


class Request:
    """What a handler sees: method, path, query, body, config, and a lazy DB."""

    def __init__(self, environ, config):
        self.environ = environ
        self.config = config
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.path = environ.get("PATH_INFO", "") or "/"
        self.script_name = environ.get("SCRIPT_NAME", "").rstrip("/")
        try:
            self.query = parse_pairs(environ.get("QUERY_STRING", ""))
        except ValueError:
            raise Problem(400, "bad-query", "malformed query string") from None
        self.params = {}
        self._db = None
        self._body_read = False

    @property
    def db(self):
        if self._db is None:
            from .db import Database
            self._db = Database(self.config)
        return self._db

    def close(self):
        if self._db is not None:
            self._db.close()
        self._drain_body()

    def _drain_body(self):
        """Read and drop a body nobody wanted, a chunk at a time.

        Under CGI, Apache drops the answer if the script exits before taking
        its stdin, so even a 413 must swallow the body. Apache's own
        LimitRequestBody (apache/cloudprovisioner.conf) refuses anything
        larger than DRAIN_LIMIT before the script runs.
        """
        length = self.environ.get("CONTENT_LENGTH", "")
        if self._body_read or not length.isdigit():
            return
        left = min(int(length), DRAIN_LIMIT)
        stream = self.environ["wsgi.input"]
        while left > 0:
            chunk = stream.read(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)

    def arg(self, name, default=None):
        """One query parameter; repeating it is an error, not a silent pick."""
        values = self.query.get(name)
        if not values:
            return default
        if len(values) > 1:
            raise Problem(400, "bad-query", f"query parameter {name!r} given more than once")
        return values[0]

    def url(self, path):
        return self.script_name + path

    def fields(self):
        """The body as a dict: JSON object or an HTML form."""
        media_type = self.environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if media_type not in (JSON_TYPE, FORM_TYPE):
            raise Problem(415, "unsupported-media-type",
                          f"send {JSON_TYPE} or {FORM_TYPE}, not {media_type or 'nothing'}")
        body = self._read_body()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Problem(400, "malformed-body", "the body is not valid UTF-8") from None
        if media_type == FORM_TYPE:
            return _form_fields(text)
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise Problem(400, "malformed-body", f"malformed JSON: {exc}") from None
        except RecursionError:
            raise Problem(400, "malformed-body", "the JSON is nested too deeply") from None
        if not isinstance(data, dict):
            raise Problem(400, "malformed-body", "the JSON body must be an object")
        return data

    def _read_body(self):
        # Decide from CONTENT_LENGTH before reading a byte (a huge body is never read).
        raw_length = self.environ.get("CONTENT_LENGTH", "")
        if not raw_length:
            raise Problem(411, "length-required", "a request body with Content-Length is required")
        if not raw_length.isdigit():
            raise Problem(400, "malformed-body", "Content-Length is not a number")
        length = int(raw_length)
        limit = self.config.max_body_bytes
        if length > limit:
            raise Problem(413, "body-too-large", f"the body is {length} bytes; the limit is {limit}")
        body = self.environ["wsgi.input"].read(length)
        self._body_read = True
        if len(body) != length:
            raise Problem(400, "malformed-body", "the body is shorter than Content-Length")
        return body


def _form_fields(text):
    """Form fields: a repeated name becomes a list (e.g. several `tags`)."""
    try:
        pairs = parse_pairs(text)
    except ValueError:
        raise Problem(400, "malformed-body", "malformed form body") from None
    return {key: values[0] if len(values) == 1 else values for key, values in pairs.items()}


def parse_pairs(text):
    """`a=1&b=2&a=3` -> {"a": ["1", "3"], "b": ["2"]}, for query strings and forms.

    urllib.parse.parse_qs does the same, but importing urllib.parse costs
    ~1.5 ms on every CGI request. Unlike parse_qs, a malformed escape is an
    error (ValueError), not silently kept.
    """
    fields = {}
    for part in text.split("&"):
        if part:
            name, _, value = part.partition("=")
            fields.setdefault(_unquote(name), []).append(_unquote(value))
    return fields


_HEX = frozenset("0123456789abcdefABCDEF")


def _unquote(text):
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    head, *pieces = text.split("%")
    raw = bytearray(head.encode())
    for piece in pieces:
        if len(piece) < 2 or not _HEX.issuperset(piece[:2]):
            raise ValueError("bad percent escape")
        raw += bytes.fromhex(piece[:2]) + piece[2:].encode()
    return raw.decode("utf-8")

class Response:
    def __init__(self, status, body=None, headers=(), content_type=JSON_TYPE):
        self.status = status
        self.headers = list(headers)
        if body is None:
            self.body = b""
        else:
            # The newline keeps a shell prompt off the end of curl's output.
            self.body = json.dumps(body, separators=(",", ":")).encode() + b"\n"
            self.headers.append(("Content-Type", content_type))


STATUS_LINES = {
    200: "200 OK", 201: "201 Created", 202: "202 Accepted", 204: "204 No Content",
}


def _status_line(status):
    from .errors import TITLES
    return STATUS_LINES.get(status) or f"{status} {TITLES.get(status, 'Error')}"


def _route(request):
    match, methods = next(((m, methods) for pattern, methods in _COMPILED
                           if (m := pattern.match(request.path))), (None, None))
    if match is None:
        raise not_found("path")
    target = methods.get(request.method)
    if target is None:
        allow = ", ".join(sorted(methods))
        raise Problem(405, "method-not-allowed", f"{request.method} is not allowed here; use {allow}",
                      headers=[("Allow", allow)])
    request.params = match.groupdict()
    module_name, function_name = target.split(":")
    module_path = f"{__package__}.{module_name}"
    __import__(module_path)  # importlib itself would be one more import to pay for
    return getattr(sys.modules[module_path], function_name)(request)


def _problem_response(problem):
    response = Response(problem.status, headers=problem.headers)
    response.body = problem.body()
    response.headers.append(("Content-Type", "application/problem+json"))
    return response


def log(environ, message):
    """One line to the server's error log (stderr under CGI); never to the client."""
    stream = environ.get("wsgi.errors", sys.stderr)
    stream.write(f"cloudprovisioner: {message}\n")
    stream.flush()


def make_app(config=None):
    """Build the WSGI callable. Without a config, it is read on the first request."""
    state = {"config": config}

    def application(environ, start_response):
        request = None
        try:
            if state["config"] is None:
                state["config"] = configuration.load()
            request = Request(environ, state["config"])
            response = _route(request)
        except Problem as problem:
            response = _problem_response(problem)
        except configuration.ConfigError as exc:
            log(environ, f"configuration error: {exc}")
            response = _problem_response(Problem(
                503, "misconfigured", "the service is not configured correctly; see the server log"))
        except Exception:
            import traceback
            log(environ, "unhandled error:\n" + traceback.format_exc())
            response = _problem_response(Problem(500, "internal-error", "internal error; see the server log"))
        finally:
            if request is not None:
                request.close()
        response.headers.append(("Content-Length", str(len(response.body))))
        start_response(_status_line(response.status), response.headers)
        return [response.body]

    return application


application = make_app()
