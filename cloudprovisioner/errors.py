"""The one error type: an RFC 9457 problem, raised anywhere, rendered once by web.py."""

import json

PROBLEM_TYPE_BASE = "urn:cloudprovisioner:problem:"

TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 411: "Length Required",
    413: "Content Too Large", 415: "Unsupported Media Type",
    422: "Unprocessable Content", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Problem(Exception):
    """An error answer: status, a short slug naming the kind, a human detail.

    `errors` maps field names to what is wrong with each (422).
    """

    def __init__(self, status, slug, detail, *, errors=None, headers=()):
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.errors = errors
        self.headers = list(headers)

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
        return json.dumps(document).encode() + b"\n"


def invalid(errors):
    """422 naming every field that is wrong."""
    fields = ", ".join(sorted(errors))
    return Problem(422, "invalid-fields", f"invalid fields: {fields}", errors=errors)


def not_found(what="resource"):
    return Problem(404, "not-found", f"no such {what}")


def cloud_problem(error):
    """The cloud's failure as our answer: 503 when it rate-limits us, else 502; Retry-After when known."""
    headers = [("Retry-After", str(error.retry_after))] if error.retry_after else []
    if error.rate_limited:
        return Problem(503, "cloud-rate-limited", error.message, headers=headers)
    return Problem(502, "cloud-error", error.message, headers=headers)
