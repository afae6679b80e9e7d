"""The WSGI application: request parsing, routing, problem rendering.

Handlers are named by strings and imported on first use, so a request pays
only for the modules on its own path (CGI starts a new interpreter per
request, and `make bench` shows what each import costs it).
"""

import json
import os
import re
import sys

from .. import config as configuration
from ..context import Context
from ..errors import DomainError, no_such
from .responses import JSON_TYPE, PROBLEM_TYPE, TITLES, Problem, Response, log, problem_for, protective_headers

PUBLIC = None  # a route anyone may call (it authenticates the caller itself, if at all)

# (path template under SCRIPT_NAME, {method: ("module:function", permission)});
# permissions are granted to roles by the one table in auth.py.
ROUTES = [
    ("/auth/register", {"POST": ("accounts:register", PUBLIC)}),
    ("/auth/login", {"POST": ("sessions:login", PUBLIC)}),
    ("/auth/refresh", {"POST": ("sessions:refresh", PUBLIC)}),
    ("/auth/logout", {"POST": ("sessions:logout", PUBLIC)}),
    ("/verify-email", {"GET": ("accounts:verify_email_page", PUBLIC),
                       "POST": ("accounts:verify_email", PUBLIC)}),
    ("/password-reset", {"POST": ("accounts:request_password_reset", PUBLIC)}),
    ("/password-reset/confirm", {"POST": ("accounts:confirm_password_reset", PUBLIC)}),
    ("/me", {"GET": ("accounts:me", "me:read")}),
    ("/me/password", {"POST": ("accounts:change_password", "password:own")}),
    ("/users", {"GET": ("accounts:list_users", "users:manage"),
                "POST": ("accounts:create_user", "users:manage")}),
    ("/users/{user_id}", {"PATCH": ("accounts:update_user", "users:manage"),
                          "DELETE": ("accounts:delete_user", "users:manage")}),
    ("/invitations/accept", {"POST": ("accounts:accept_invitation", PUBLIC)}),
    ("/users/{user_id}/tokens", {"GET": ("apitokens:list_user_tokens", "users:manage")}),
    ("/users/{user_id}/tokens/{token_id}", {"DELETE": ("apitokens:revoke_user_token", "users:manage")}),
    ("/tokens", {"GET": ("apitokens:list_tokens", "tokens:own"),
                 "POST": ("apitokens:create_token", "tokens:own")}),
    ("/tokens/{token_id}", {"DELETE": ("apitokens:delete_token", "tokens:own")}),
    ("/servers", {"GET": ("servers:list_servers", "servers:read"),
                  "POST": ("servers:create_server", "servers:write")}),
    ("/servers/{server_id}", {"GET": ("servers:get_server", "servers:read"),
                              "PATCH": ("servers:update_server", "servers:write"),
                              "DELETE": ("servers:delete_server", "servers:write")}),
    ("/servers/{server_id}/status", {"GET": ("servers:get_server_status", "servers:read")}),
    ("/servers/{server_id}/actions", {"POST": ("servers:server_action", "servers:write")}),
    ("/operations", {"GET": ("operations:list_operations", "servers:read")}),
    ("/operations/{operation_id}", {"GET": ("operations:get_operation", "servers:read")}),
    ("/operations/{operation_id}/cancel", {"POST": ("operations:cancel_operation", "servers:write")}),
    ("/ssh-keys", {"GET": ("sshkeys:list_keys", "network:read"),
                   "POST": ("sshkeys:create_key", "sshkeys:own")}),
    ("/ssh-keys/{key_id}", {"GET": ("sshkeys:get_key", "network:read"),
                            "DELETE": ("sshkeys:delete_key", "sshkeys:own")}),
    ("/firewalls", {"GET": ("firewalls:list_firewalls", "network:read"),
                    "POST": ("firewalls:create_firewall", "network:write")}),
    ("/firewalls/{firewall_id}", {"GET": ("firewalls:get_firewall", "network:read"),
                                  "PATCH": ("firewalls:update_firewall", "network:write"),
                                  "DELETE": ("firewalls:delete_firewall", "network:write")}),
    ("/vpcs", {"GET": ("vpcs:list_vpcs", "network:read"),
               "POST": ("vpcs:create_vpc", "network:write")}),
    ("/vpcs/{vpc_id}", {"GET": ("vpcs:get_vpc", "network:read"),
                        "DELETE": ("vpcs:delete_vpc", "network:write")}),
    ("/workspaces", {"GET": ("workspaces:list_workspaces", "network:read"),
                     "POST": ("workspaces:create_workspace", "network:write")}),
    ("/workspaces/{workspace_name}", {"GET": ("workspaces:get_workspace", "network:read")}),
    ("/vmcp-configs", {"GET": ("vmcp:list_configs", "vmcp:read"),
                       "POST": ("vmcp:create_config", "vmcp:write")}),
    ("/vmcp-configs/{config_id}", {"GET": ("vmcp:get_config", "vmcp:read"),
                                   "PATCH": ("vmcp:update_config", "vmcp:write"),
                                   "DELETE": ("vmcp:delete_config", "vmcp:write")}),
    ("/vmcp-key", {"GET": ("vmcp:get_key", "vmcp:read"),
                   "POST": ("vmcp:set_key", "vmcp:keys"),
                   "DELETE": ("vmcp:delete_key", "vmcp:keys")}),
    ("/audit", {"GET": ("audit:list_entries", "audit:read")}),
    ("/admin/orphans", {"GET": ("orphans:list_orphans", "platform:read")}),
    ("/costs", {"GET": ("costs:get_costs", "servers:read")}),
    ("/admin/costs", {"GET": ("costs:get_platform_costs", "platform:read")}),
    ("/quota", {"GET": ("quotas:get_own_quota", "servers:read")}),
    ("/tenants/{tenant_id}/quota", {"GET": ("quotas:get_tenant_quota", "platform:read"),
                                    "PATCH": ("quotas:set_tenant_quota", "platform:write")}),
    ("/openapi.json", {"GET": ("observability:openapi_document", PUBLIC)}),
    ("/version", {"GET": ("observability:version", PUBLIC)}),
    # Under /api as well as at the root (HEALTH): clients generated from the document call it here.
    ("/health", {"GET": ("observability:health", PUBLIC)}),
    ("/metrics", {"GET": ("observability:metrics", PUBLIC)}),  # admins, or the scrape token: it checks itself
]
# Outside /api, Apache maps these public GETs onto the same script (apache/cloudprovisioner.conf):
# /health with an empty SCRIPT_NAME (for load balancers; ROUTES has it under /api too), the VMCP
# responder as /cgi-bin/vmcp?config=<id> and /vmcp/<id>.
HEALTH = ("", "/health")
OUTSIDE_API = {HEALTH: ("/health", "observability:health"),
               ("/cgi-bin/vmcp", "/"): ("/cgi-bin/vmcp", "vmcp:respond")}
VMCP_PRETTY = "/vmcp"
RESPONDER_SCRIPTS = ("/cgi-bin/vmcp", VMCP_PRETTY)
CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-Id"
CORS_EXPOSED = "Location, Link, Retry-After, X-Request-Id, Operation-Location, Idempotent-Replayed, WWW-Authenticate"
_SEGMENTS = [(template.strip("/").split("/"), methods) for template, methods in ROUTES]
MUTATING = frozenset(("POST", "PUT", "PATCH", "DELETE"))
# The methods the routes are made of. Any other gets the same 405 as a known one a path does not take, but
# named "this method" and counted under OTHER: no client can add a metric series (or overflow its label,
# which a 190-character method did) by making methods up.
METHODS = frozenset(("GET", "HEAD", "OPTIONS", *MUTATING))
# Creates that honour an Idempotency-Key: action -> how to answer again from the resource it made.
IDEMPOTENT = {"servers.create_server": "servers:created_answer"}
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}")

DRAIN_LIMIT = 16 * 1024 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"


class Request:
    """What a handler sees: method, path, query, body, and the domain's context (config, a lazy DB,
    the caller once authenticated, a lazy cloud)."""

    def __init__(self, environ, config, request_id):
        self.environ = environ
        self.config = config
        self.ctx = Context(config, log=lambda message: log(environ, message))
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.path = environ.get("PATH_INFO", "") or "/"
        self.script_name = environ.get("SCRIPT_NAME", "").rstrip("/")
        self.query = {}
        self.params = {}
        self.action = None  # "module.function" once routed: the audit log's action
        self.route = None  # the path template once routed: the request counter's label
        self.request_id = request_id
        self.idempotency = None  # the Idempotency-Key claim this request holds, if any
        self._body = None

    @property
    def db(self):
        return self.ctx.db

    @property
    def principal(self):
        return self.ctx.principal

    @principal.setter
    def principal(self, principal):
        self.ctx.principal = principal

    def close(self):
        self.ctx.close()
        self._drain_body()

    def _chunked(self):
        return "chunked" in self.environ.get("HTTP_TRANSFER_ENCODING", "").lower()

    def _read_chunked(self):
        """A chunked body: Apache passes it to CGI de-chunked, without a length, until end of input."""
        limit = self.config.max_body_bytes
        body = self.environ["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            raise Problem(413, "body-too-large", f"the body is over the limit of {limit} bytes")
        return body

    def _drain_body(self):
        """Read and drop a body nobody wanted, a chunk at a time.

        Under CGI, Apache drops the answer if the script exits before taking
        its stdin, so even a 413 must swallow the body. Apache's own
        LimitRequestBody (apache/cloudprovisioner.conf) refuses anything
        larger than DRAIN_LIMIT before the script runs.
        """
        length = self.environ.get("CONTENT_LENGTH", "")
        if self._body is not None or not (length.isdigit() or self._chunked()):
            return
        left = min(int(length), DRAIN_LIMIT) if length.isdigit() else DRAIN_LIMIT
        stream = self.environ["wsgi.input"]
        while left > 0:
            chunk = stream.read(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)

    def bearer_token(self):
        """The credentials of `Authorization: Bearer <token>`, or None."""
        scheme, _, credentials = self.environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return None
        return credentials.strip()

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
        body = self.raw_body()
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
        from ..validation import plain_json
        try:
            plain_json(data)
        except ValueError as exc:
            raise Problem(400, "malformed-body", f"the JSON body {exc}") from None
        return data

    def raw_body(self):
        """The body's bytes, read once. Decided from CONTENT_LENGTH before reading a byte
        (a huge body is never read)."""
        if self._body is None:
            self._body = self._read_body()
        return self._body

    def _read_body(self):
        raw_length = self.environ.get("CONTENT_LENGTH", "")
        if not raw_length and self._chunked():
            return self._read_chunked()
        if not raw_length:
            raise Problem(411, "length-required", "a request body with Content-Length is required")
        if not raw_length.isdigit():
            raise Problem(400, "malformed-body", "Content-Length is not a number")
        length = int(raw_length)
        limit = self.config.max_body_bytes
        if length > limit:
            raise Problem(413, "body-too-large", f"the body is {length} bytes; the limit is {limit}")
        body = self.environ["wsgi.input"].read(length)
        if len(body) != length:
            raise Problem(400, "malformed-body", "the body is shorter than Content-Length")
        return body


def _form_fields(text):
    """Form fields: a repeated name becomes a list (e.g. several `tags`)."""
    try:
        pairs = parse_pairs(text)
    except ValueError:
        raise Problem(400, "malformed-body", "malformed form body") from None
    from ..validation import FormFields
    return FormFields({key: values[0] if len(values) == 1 else values for key, values in pairs.items()})


def parse_pairs(text):
    """`a=1&b=2&a=3` -> {"a": ["1", "3"], "b": ["2"]}, for query strings and forms.

    urllib.parse.parse_qs does the same, but every CGI request parses its query string, and nothing
    else on a request's path imports urllib.parse. Measured 2026-11-29 on the 2-core test host (median
    of 15 runs, load average ~3 from other jobs): importing urllib.parse (with ipaddress) on top of
    this module's json, os and re costs ~2 ms, and `python -S -c "import json, os, re, urllib.parse"`
    takes ~18 ms against ~16 ms without urllib.parse. Re-measure with (cumulative column, microseconds):
        .venv/bin/python -S -X importtime -c "import json, os, re, urllib.parse" 2>&1 | tail -1
    -S because the dev venv's editable install (`pip install -e`, its .pth file) imports urllib.parse
    at start-up, which `make install`'s venv does not. Unlike parse_qs, a malformed escape is an
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



STATUS_LINES = {
    200: "200 OK", 201: "201 Created", 202: "202 Accepted", 204: "204 No Content",
}


def _status_line(status):
    return STATUS_LINES.get(status) or f"{status} {TITLES.get(status, 'Error')}"


def match_route(path):
    """({name: value} of the template's {fields}, {method: target}) for a path, or (None, None)."""
    parts = path.strip("/").split("/")
    for segments, methods in _SEGMENTS:
        if len(segments) != len(parts):
            continue
        params = {}
        for wanted, given in zip(segments, parts, strict=True):
            if wanted.startswith("{") and given:
                params[wanted[1:-1]] = given
            elif wanted != given:
                break
        else:
            return params, methods
    return None, None


def request_id(environ):
    """The caller's X-Request-Id when it is well-formed, else a new one."""
    incoming = environ.get("HTTP_X_REQUEST_ID", "")
    return incoming if _REQUEST_ID.fullmatch(incoming) else os.urandom(16).hex()


def _route(request):
    """The handler and permission for this path and method, or a 404 or 405."""
    outside = _outside_api(request)
    if outside is None and request.script_name in RESPONDER_SCRIPTS:
        raise no_such("VMCP configuration")  # the API itself is served under /api only
    if outside is not None:
        route, target = outside
        request.route, request.action = route, target.replace(":", ".")
        if request.method == "OPTIONS":
            return _preflight("GET, OPTIONS"), PUBLIC
        if request.method != "GET":
            raise Problem(405, "method-not-allowed", f"{_method_name(request)} is not allowed here; use GET",
                          headers=[("Allow", "GET, OPTIONS")])
        return _handler(target), PUBLIC
    params, methods = match_route(request.path)
    if methods is None:
        raise no_such("path")
    request.route = next(template for template, candidate in ROUTES if candidate is methods)
    allow = ", ".join(sorted([*methods, "OPTIONS"]))
    if request.method == "OPTIONS":
        return _preflight(allow), PUBLIC
    target = methods.get(request.method)
    if target is None:
        raise Problem(405, "method-not-allowed", f"{_method_name(request)} is not allowed here; use {allow}",
                      headers=[("Allow", allow)])
    request.params = params
    handler_name, permission = target
    request.action = handler_name.replace(":", ".")
    return _handler(handler_name), permission


def _method_name(request, unknown="this method"):
    return request.method if request.method in METHODS else unknown


def _outside_api(request):
    """(route, handler) for the public paths outside /api, else None."""
    found = OUTSIDE_API.get((request.script_name, request.path))
    if found is None and request.script_name == VMCP_PRETTY:
        from ..ids import looks_like_id
        config_id = request.path.strip("/")
        if looks_like_id(config_id):
            request.params = {"config_id": config_id}
            found = ("/vmcp/{config_id}", "vmcp:respond")
    return found


def _handler(name):
    """The function `module:function` names, importing only its module."""
    module_name, function_name = name.split(":")
    module_path = f"{__package__}.{module_name}"
    __import__(module_path)  # importlib itself would be one more import to pay for
    return getattr(sys.modules[module_path], function_name)


def _preflight(allow):
    """A CORS preflight (or a plain OPTIONS): what this path allows; cors() adds the origin's grant."""
    def answer(request):
        headers = [("Allow", allow)]
        if cors(request.environ, request.config):
            headers += [("Access-Control-Allow-Methods", allow), ("Access-Control-Allow-Headers", CORS_HEADERS),
                        ("Access-Control-Max-Age", "600")]
        return Response(204, headers=headers)
    return answer


def cors(environ, config):
    """Headers granting this request's Origin, if it is on the allow-list; else none."""
    origin = environ.get("HTTP_ORIGIN")
    if not origin or origin not in config.get_list("CP_CORS_ORIGINS"):
        return []
    return [("Access-Control-Allow-Origin", origin), ("Access-Control-Expose-Headers", CORS_EXPOSED)]


def _dispatch(request):
    from .. import auth
    try:
        request.query = parse_pairs(request.environ.get("QUERY_STRING", ""))
    except ValueError:
        raise Problem(400, "bad-query", "malformed query string") from None
    handler, permission = _route(request)
    auth.signing_key(request.config)  # no request is served without a real signing key
    if permission is not PUBLIC:
        request.principal = auth.authenticate(request.db, request.config, request.bearer_token())
        auth.authorize(request.principal, permission)
    if request.action in IDEMPOTENT and "HTTP_IDEMPOTENCY_KEY" in request.environ:
        from . import idempotency
        module_name, function_name = IDEMPOTENT[request.action].split(":")
        replay = getattr(sys.modules[f"{__package__}.{module_name}"], function_name)
        return idempotency.run(request, handler, replay)
    return handler(request)


def _record(request, status):
    """The request's one counter write, and for a state change its audit row, whatever the outcome."""
    from .. import telemetry
    try:
        telemetry.count_request(request.db, _method_name(request, "OTHER"), request.route, status)
        if request.method in MUTATING and request.action is not None:
            from . import audit
            audit.record(request, status)
    except DomainError as problem:
        log(request.environ, f"[{request.request_id}] counter or audit row not written: {problem.detail}")


def _problem_response(problem, request_id):
    response = Response(problem.status, headers=problem.headers)
    response.body = problem.body(request_id)
    response.headers.append(("Content-Type", PROBLEM_TYPE))
    response.reason = problem.slug
    return response


def make_app(config=None):
    """Build the WSGI callable. Without a config, it is read on the first request."""
    state = {"config": config}

    def application(environ, start_response):
        request, rid = None, request_id(environ)
        try:
            if state["config"] is None:
                state["config"] = configuration.load()
            request = Request(environ, state["config"], rid)
            response = _dispatch(request)
        except (Problem, DomainError) as error:
            response = _problem_response(problem_for(error), rid)
        except configuration.ConfigError as exc:
            log(environ, f"[{rid}] configuration error: {exc}")
            response = _problem_response(Problem(
                503, "misconfigured", "the service is not configured correctly; see the server log"), rid)
        except Exception:
            import traceback
            log(environ, f"[{rid}] unhandled error:\n" + traceback.format_exc())
            response = _problem_response(Problem(500, "internal-error", "internal error; see the server log"), rid)
        if response.status >= 500:
            log(environ, f"[{rid}] {response.status} {response.reason} {environ.get('REQUEST_METHOD')} "
                         f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}")
        if request is not None:
            try:
                _record(request, response.status)
            finally:
                request.close()
            response.headers += cors(environ, request.config)
        response.headers += protective_headers(response.headers, "HTTP_AUTHORIZATION" in environ)
        response.headers += [("Vary", "Origin"), ("X-Request-Id", rid),
                             ("Content-Length", str(len(response.body)))]
        start_response(_status_line(response.status), response.headers)
        return [response.body]

    return application


application = make_app()
