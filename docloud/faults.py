"""What the sandbox adds around /v2 calls: the hourly quota reported in
ratelimit-* headers, injected faults (an error status, a delay, or both, for
the next matching requests), and call counts."""

import threading
from collections import Counter, deque

from .errors import ApiError, bad_request
from .plumbing import error_reply
from .validation import int_field, number_field


class RateLimiter:
    """DigitalOcean's hourly quota as headers: every request is remembered for
    an hour. It is reported, not enforced (a 429 comes from a fault rule)."""

    WINDOW = 3600.0

    def __init__(self, limit=5000):
        self.limit = limit
        self._hits = deque()
        self._lock = threading.Lock()

    def hit(self, now):
        with self._lock:
            self._hits.append(now)
            return self._headers(now)

    def headers(self, now):
        with self._lock:
            return self._headers(now)

    def _headers(self, now):
        while self._hits and self._hits[0] <= now - self.WINDOW:
            self._hits.popleft()
        reset = self._hits[0] + self.WINDOW if self._hits else now
        return {"ratelimit-limit": str(self.limit),
                "ratelimit-remaining": str(max(0, self.limit - len(self._hits))),
                "ratelimit-reset": str(int(reset))}

    def configure(self, limit, remaining, now):
        """Change the limit and/or pretend limit - remaining calls were just made."""
        with self._lock:
            if limit is not None:
                self.limit = limit
            if remaining is not None:
                self._hits = deque([now] * max(0, self.limit - remaining))

    def clear(self):
        with self._lock:
            self._hits.clear()


FAULT_STATUSES = {429, 500, 502, 503}
FAULT_BODIES = {
    429: ("too_many_requests", "API Rate limit exceeded."),
    500: ("server_error", "Server was unable to give you a response."),
}


def parse_fault(body):
    status = body.get("status")
    if status is not None and status not in FAULT_STATUSES:
        raise bad_request(f"status must be one of {sorted(FAULT_STATUSES)}.")
    delay = number_field(body, "delay", 0.0, 0.0)
    if status is None and not delay:
        raise bad_request("A fault needs a status, a delay, or both.")
    method, prefix = body.get("method"), body.get("path_prefix", "/v2")
    if method is not None and not isinstance(method, str):
        raise bad_request("method must be a string.")
    if not isinstance(prefix, str) or not prefix.startswith("/v2"):
        raise bad_request("path_prefix must start with /v2.")
    return {
        "status": status, "count": int_field(body, "count", 1, 1, 10**9),
        "path_prefix": prefix, "method": method.upper() if method else None,
        "delay": delay, "retry_after": int_field(body, "retry_after", 1, 0, 86400),
        # Let this many matching requests through first, e.g. to fail page 2.
        "skip": int_field(body, "skip", 0, 0, 10**9),
    }


class Faults:
    """Rules that make the next matching /v2 requests fail or stall."""

    def __init__(self):
        self._rules = []
        self._lock = threading.Lock()

    def add(self, rule):
        with self._lock:
            self._rules.append(rule)

    def list(self):
        with self._lock:
            return [dict(rule) for rule in self._rules]

    def clear(self):
        with self._lock:
            self._rules.clear()

    def take(self, method, path):
        """The rule this request triggers, if any; consumes one use of it."""
        with self._lock:
            for rule in self._rules:
                if path.startswith(rule["path_prefix"]) and rule["method"] in (None, method):
                    return self._consume(rule)
        return None

    def _consume(self, rule):
        if rule["skip"]:
            rule["skip"] -= 1
            return None
        rule["count"] -= 1
        if not rule["count"]:
            self._rules.remove(rule)
        return dict(rule)


def fault_reply(rule):
    error_id, message = FAULT_BODIES.get(rule["status"], FAULT_BODIES[500])
    headers = {}
    if rule["status"] == 429:
        headers = {"retry-after": str(rule["retry_after"]), "ratelimit-remaining": "0"}
    return error_reply(ApiError(rule["status"], error_id, message, headers))


class Stats:
    """API calls counted by "METHOD /path/{template}"."""

    def __init__(self):
        self._counts = Counter()
        self._lock = threading.Lock()

    def count(self, key):
        with self._lock:
            self._counts[key] += 1

    def snapshot(self):
        with self._lock:
            return {"requests": dict(sorted(self._counts.items())),
                    "total": sum(self._counts.values())}

    def clear(self):
        with self._lock:
            self._counts.clear()
