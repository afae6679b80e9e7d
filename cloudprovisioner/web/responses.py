"""What a request is answered with: a Response, the pages of a list (with their Link to the next),
a Problem (RFC 9457) and the one table that turns each domain error into one; and the line a
handler may write to the server's error log.

Every handler imports this module and nothing of the WSGI application (app.py), which imports the
handlers by name: so the application and its handlers never import each other.
"""

import json
import sys

from ..errors import (
    CloudFailed,
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    Throttled,
    Unauthenticated,
    Unavailable,
)

JSON_TYPE = "application/json"


class Response:
    def __init__(self, status, body=None, headers=(), content_type=JSON_TYPE):
        self.status = status
        self.headers = list(headers)
        # What the error log names beside a 5xx: a problem's slug (app.py sets it), else the status's title.
        self.reason = TITLES.get(status, "")
        # False for an answer an Idempotency-Key must not keep (a dry run: it made nothing to answer for).
        self.keep = True
        if body is None:
            self.body = b""
        else:
            # The newline keeps a shell prompt off the end of curl's output.
            self.body = json.dumps(body, separators=(",", ":")).encode() + b"\n"
            self.headers.append(("Content-Type", content_type))


def accepted(request, body, location=None):
    """202 with an object whose change an operation carries out: where the object is (when given) and
    where that operation is followed."""
    headers = [("Location", request.url(location))] if location else []
    operation = request.url(f"/operations/{body['operation']['id']}")
    return Response(202, body, [*headers, ("Operation-Location", operation)])


def list_query(request, filters):
    """The query string checked against `filters` (a validation schema) plus the page's limit and cursor."""
    from ..ids import id_cursor
    from ..validation import Field, integer, validate
    return validate({name: request.arg(name) for name in request.query},
                    {**filters, "limit": Field(integer(1, 200), default=request.config.page_size),
                     "cursor": Field(id_cursor)})


def list_page(request, path, rows, args, represent):
    """200 with one keyset page (rows as the store's `page` fetched them, one more than the limit
    when there is a next page) and a Link to the next page."""
    from ..ids import cursor_for
    rows, headers = page(request, path, args, rows, lambda last: cursor_for(last["id"]))
    return Response(200, [represent(row) for row in rows], headers)


def page(request, path, args, rows, cursor_of):
    """Cut a keyset page (rows were fetched with LIMIT limit + 1) and link the next one.

    The next link repeats the query as the client sent it (escaped), with a new cursor.
    """
    if len(rows) <= args["limit"]:
        return rows, []
    rows = rows[:args["limit"]]
    query = {key: request.arg(key) for key in request.query if key != "cursor"}
    query["cursor"] = cursor_of(rows[-1])
    link = request.url(path) + "?" + "&".join(f"{_quote(key)}={_quote(str(value))}" for key, value in query.items())
    return rows, [("Link", f'<{link}>; rel="next"')]


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:")


def _quote(text):
    """Percent-encode for a URL query (urllib.parse.quote, without importing urllib.parse)."""
    return "".join(char if char in _UNRESERVED else "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
                   for char in text)


NO_STORE = ("Cache-Control", "no-store")
NOSNIFF = ("X-Content-Type-Options", "nosniff")


def protective_headers(headers, credentials):
    """What every answer adds to its `headers`: nosniff, so no browser takes a JSON or problem body for
    something it would run; and, for a request that carried credentials, no-store (unless the answer says
    how it may be cached), so no cache along the way keeps one caller's data for the next."""
    added = [NOSNIFF]
    if credentials and not any(name.lower() == "cache-control" for name, _ in headers):
        added.append(NO_STORE)
    return added


def log(environ, message):
    """One line to the server's error log (stderr under CGI); never to the client."""
    stream = environ.get("wsgi.errors", sys.stderr)
    stream.write(f"cloudprovisioner: {message}\n")
    stream.flush()


# --- problems: the answers to what went wrong ---

PROBLEM_TYPE_BASE = "urn:cloudprovisioner:problem:"
PROBLEM_TYPE = "application/problem+json"

TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 411: "Length Required",
    413: "Content Too Large", 415: "Unsupported Media Type",
    422: "Unprocessable Content", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}

# The one table: each kind of domain error and its status (a subclass takes its nearest entry).
STATUS_OF = {
    Invalid: 422,
    NotFound: 404,
    Conflict: 409,
    Forbidden: 403,
    Unauthenticated: 401,
    Throttled: 429,
    Unavailable: 503,
    CloudFailed: 502,
}
RATE_LIMITED_STATUS = 503  # the cloud rate-limits us: our service is what is unavailable, for a while
CHALLENGE = 'Bearer realm="cloudprovisioner"'


class Problem(Exception):
    """An error answer of the HTTP layer itself (a malformed body, a wrong method), or a domain
    error's: status, a short slug naming the kind, a human detail, and `errors` by field (422)."""

    def __init__(self, status, slug, detail, *, errors=None, headers=(), facts=None):
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.errors = errors
        self.headers = list(headers)
        self.facts = facts

    def body(self, request_id=None):
        document = {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
        }
        if request_id:
            document["instance"] = f"urn:request:{request_id}"
        if self.errors:
            document["errors"] = self.errors
        for name, value in (self.facts or {}).items():
            document.setdefault(name, value)  # extension members never replace the standard ones
        return json.dumps(document).encode() + b"\n"


def problem_for(error):
    """The problem a domain error is answered with."""
    if isinstance(error, Problem):
        return error
    assert isinstance(error, DomainError), error
    status = next(STATUS_OF[kind] for kind in type(error).__mro__ if kind in STATUS_OF)
    if isinstance(error, CloudFailed) and error.rate_limited:
        status = RATE_LIMITED_STATUS
    headers = [("Retry-After", str(error.retry_after))] if error.retry_after else []
    if isinstance(error, Unauthenticated):
        challenge = CHALLENGE
        if error.challenge_error:
            challenge += f', error="{error.challenge_error}", error_description="{error.detail}"'
        headers.append(("WWW-Authenticate", challenge))
    return Problem(status, error.slug, error.detail, errors=error.errors, headers=headers, facts=error.facts)
