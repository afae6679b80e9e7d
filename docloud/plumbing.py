"""Request plumbing shared by every handler: the parsed Request, the Reply,
error replies, paging and page links as DigitalOcean builds them, path
templates (Route) and timestamps as the API shows them."""

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import unquote, urlencode

from .errors import bad_request, is_number, unprocessable


def iso(timestamp):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


# What DigitalOcean sends as content-type, on a JSON body and on the 204s that document one.
JSON_TYPE = "application/json; charset=utf-8"
MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 20


@dataclass
class Request:
    method: str
    path: str  # no query, no trailing slash
    query: dict[str, str]
    raw_body: bytes
    base_url: str  # scheme and authority, for the absolute links DO returns
    params: dict[str, str] = field(default_factory=dict)  # from the path template

    def json(self, refuse=unprocessable, malformed=bad_request):
        """The body as a dict; `malformed` and `refuse` make the errors for a body that is not
        JSON and for JSON that is no object (each endpoint's documented ones)."""
        if not self.raw_body.strip():
            return {}
        try:
            body = json.loads(self.raw_body)
        except ValueError:
            raise malformed("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise refuse("The request body must be a JSON object.")
        return body

    def int_param(self, name):
        return int(self.params[name])

    def query_int(self, name, default):
        value = self.query.get(name)
        if value is None:
            return default
        if not is_number(value):
            raise unprocessable(f"{name} must be a positive integer.")
        return int(value)


@dataclass
class Reply:
    status: int
    payload: object = None
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(error):
    request_id = str(uuid.uuid4())
    body = {"id": error.error_id, "message": error.message, **error.extra, "request_id": request_id}
    return Reply(error.status, body, {"x-request-id": request_id, **error.headers})


def paging(req):
    page = max(req.query_int("page", 1), 1)
    per_page = min(max(req.query_int("per_page", DEFAULT_PER_PAGE), 1), MAX_PER_PAGE)
    return page, per_page


def page_links(req, page, per_page, total):
    """links.pages as DigitalOcean builds them: absolute URLs that keep the
    request's filters; first/prev only after page 1, next/last only before
    the last page."""
    last = max(1, -(-total // per_page))
    filters = {k: v for k, v in req.query.items() if k not in ("page", "per_page")}

    def url(number):
        query = urlencode({"page": number, "per_page": per_page, **filters})
        return f"{req.base_url}{req.path}?{query}"
    pages = {}
    if page > 1:
        pages.update(first=url(1), prev=url(page - 1))
    if page < last:
        pages.update(next=url(page + 1), last=url(last))
    return {"pages": pages} if pages else {}


def listing(req, key, items, total, page, per_page):
    return Reply(200, {key: items, "links": page_links(req, page, per_page, total),
                       "meta": {"total": total}})


def static_listing(req, key, items):
    """A listing of a small in-memory collection, paged like the rest."""
    page, per_page = paging(req)
    start = (page - 1) * per_page
    return listing(req, key, items[start:start + per_page], len(items), page, per_page)


class Route:
    # Numeric placeholders only match digits, so /v2/droplets/abc is a 404.
    NUMERIC = {"id", "action_id"}

    def __init__(self, method, template, handler):
        self.method = method
        self.template = template
        self.handler = handler
        pattern = re.sub(r"\{(\w+)\}", self._placeholder, template)
        self.regex = re.compile(pattern)

    def _placeholder(self, match):
        name = match.group(1)
        return f"(?P<{name}>\\d+)" if name in self.NUMERIC else f"(?P<{name}>[^/]+)"


def find_route(routes, method, path):
    """(route or None, path params, whether some route has this path)."""
    path_known = False
    for route in routes:
        match = route.regex.fullmatch(path)
        if match:
            if route.method == method:
                return route, {k: unquote(v) for k, v in match.groupdict().items()}, True
            path_known = True
    return None, {}, path_known
