"""What a handler gives back: a Response, the pages of a list (with their Link to the next),
and the line it may write to the server's error log.

Every handler imports this module and nothing of the WSGI application (web.py), which imports the
handlers by name: so the application and its handlers never import each other.
"""

import json
import sys

JSON_TYPE = "application/json"


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


def list_query(request, filters):
    """The query string checked against `filters` (a validation schema) plus the page's limit and cursor."""
    from .ids import id_cursor
    from .validation import Field, integer, validate
    return validate({name: request.arg(name) for name in request.query},
                    {**filters, "limit": Field(integer(1, 200), default=request.config.page_size),
                     "cursor": Field(id_cursor)})


def list_page(request, path, select, where, params, args, represent, newest_first=False):
    """200 with one keyset page of `select` (SELECT ... FROM table) under the `where` conditions,
    ordered by id from the cursor on, and a Link to the next page."""
    from .ids import cursor_for
    if "cursor" in args:
        where, params = [*where, "id < %s" if newest_first else "id > %s"], [*params, args["cursor"]]
    rows = request.db.query(f"{select} WHERE {' AND '.join(where)} ORDER BY id{' DESC' if newest_first else ''} "
                            "LIMIT %s", (*params, args["limit"] + 1))
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


def log(environ, message):
    """One line to the server's error log (stderr under CGI); never to the client."""
    stream = environ.get("wsgi.errors", sys.stderr)
    stream.write(f"cloudprovisioner: {message}\n")
    stream.flush()
