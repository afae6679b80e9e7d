"""Idempotency-Key for creates (IETF httpapi draft "The Idempotency-Key HTTP Header Field").

The first request with a key claims it (one row per tenant and key) and its
answer is stored; a retry with the same key and the same request gets that
answer again (`Idempotent-Replayed: true`); the same key with another
request is a 422; a retry while the first is still running is a 409.

A 5xx or 429 answer is not stored: it says "try again", so a retry runs afresh. Nor is a refusal that
holds only for now (a quota, which a delete frees), or a dry run's plan: the key is free again after them.
Only a create that made nothing that lives on answers one: once the cloud has
made the server, the create answers 202 whatever the database does next.
A first request that died (kill -9), or whose answer could not be stored (the
database away), leaves its claim "running", bound to the resource it wrote:
once it is older than a request can live, a retry takes the claim over,
answering from that resource, if the first request got that far.
"""

import hashlib
import json

from ..errors import Conflict, DomainError, Invalid
from .responses import PROBLEM_TYPE, Problem, problem_for

HEADER = "HTTP_IDEMPOTENCY_KEY"
UNSTORED_HEADERS = {"content-length", "x-request-id"}


class Claim:
    """This request holds the key: it can bind the resource it creates and store its answer."""

    def __init__(self, db, tenant_id, key):
        self.db, self.tenant_id, self.key = db, tenant_id, key

    def release(self):
        """Give the key up: the next request with it runs afresh."""
        self.db.update("DELETE FROM idempotency_keys WHERE tenant_id = %s AND idem_key = %s",
                       (self.tenant_id, self.key))

    def bind(self, resource_id):
        self.db.update("UPDATE idempotency_keys SET resource_id = %s WHERE tenant_id = %s AND idem_key = %s",
                       (resource_id, self.tenant_id, self.key))

    def store(self, status, headers, body):
        if status >= 500 or status == 429:
            self.release()
            return
        kept = [[name, value] for name, value in headers if name.lower() not in UNSTORED_HEADERS]
        self.db.update("UPDATE idempotency_keys SET state = 'done', status = %s, headers = %s, body = %s "
                       "WHERE tenant_id = %s AND idem_key = %s",
                       (status, json.dumps(kept), body.decode("utf-8"), self.tenant_id, self.key))


def key_of(request):
    """The key, or None; a malformed one is a 400. The draft sends it as a quoted string."""
    raw = request.environ.get(HEADER)
    if raw is None:
        return None
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
        raise Problem(400, "bad-idempotency-key", "Idempotency-Key must be 1 to 255 printable ASCII characters")
    return key


def fingerprint(method, path, content_type, body, query=""):
    """What makes two requests "the same request" for one key: method, path and query (a dry run's
    `?dry_run=true` is another request), media type and body bytes."""
    target = f"{path}?{query}" if query else path  # without a query, as keys stored before the query counted
    return hashlib.sha256(b"\n".join((method.encode(), target.encode(), content_type.encode(), body))).hexdigest()


def run(request, handler, replay_resource):
    """Answer through the key: replay, refuse, or run `handler` and store its answer."""
    from .responses import Response
    key = key_of(request)
    claim = Claim(request.db, request.principal.tenant_id, key)
    earlier = _claim_or_find(request, claim, fingerprint(request.method, request.path,
                                                         request.environ.get("CONTENT_TYPE", ""), request.raw_body(),
                                                         request.environ.get("QUERY_STRING", "")))
    if earlier is not None:
        if earlier.get("resource_id"):
            return _finish(request, claim, replay_resource(request, earlier["resource_id"]))
        response = Response(earlier["status"], headers=[tuple(pair) for pair in json.loads(earlier["headers"])])
        response.body = earlier["body"].encode("utf-8")
        response.headers.append(("Idempotent-Replayed", "true"))
        return response
    request.idempotency = claim
    try:
        response = handler(request)
    except (Problem, DomainError) as error:
        problem = problem_for(error)
        if getattr(error, "for_now", False):
            claim.release()
        else:
            _store(request, claim, problem.status, [*problem.headers, ("Content-Type", PROBLEM_TYPE)],
                   problem.body())
        raise
    return _finish(request, claim, response)


def _finish(request, claim, response):
    if response.keep:
        _store(request, claim, response.status, response.headers, response.body)
    else:
        claim.release()
    return response


def _store(request, claim, status, headers, body):
    """Store the answer; a database gone meanwhile must not change it (a 202 turned into a 503 would invite
    a second create). The claim then stays running, bound to its resource, for a later retry to answer from."""
    try:
        claim.store(status, headers, body)
    except DomainError as error:
        request.ctx.log(f"[{request.request_id}] Idempotency-Key answer ({status}) not stored: {error.detail}")


def _claim_or_find(request, claim, fingerprint):
    """None when this request now holds the key; else the earlier request's row to answer from."""
    db, config = request.db, request.config
    for _ in range(3):
        if db.insert_new("INSERT INTO idempotency_keys (tenant_id, idem_key, fingerprint, state, created_at, "
                         "expires_at) VALUES (%s, %s, %s, 'running', UTC_TIMESTAMP(6), "
                         "UTC_TIMESTAMP(6) + INTERVAL %s SECOND)",
                         (claim.tenant_id, claim.key, fingerprint, config.idempotency_ttl)):
            return None
        row = db.one("SELECT fingerprint, state, status, headers, body, resource_id, "
                     "expires_at <= UTC_TIMESTAMP(6) AS expired, "
                     "TIMESTAMPDIFF(SECOND, created_at, UTC_TIMESTAMP(6)) AS age "
                     "FROM idempotency_keys WHERE tenant_id = %s AND idem_key = %s", (claim.tenant_id, claim.key))
        if row is None or row["expired"]:
            db.update("DELETE FROM idempotency_keys WHERE tenant_id = %s AND idem_key = %s AND "
                      "expires_at <= UTC_TIMESTAMP(6)", (claim.tenant_id, claim.key))
            continue
        if row["fingerprint"] != fingerprint:
            raise Invalid("this Idempotency-Key was used with a different request", "idempotency-key-reused")
        if row["state"] == "done":
            return {**row, "resource_id": None}
        if row["age"] <= config.cloud_budget + STALE_MARGIN:
            raise Conflict("a request with this Idempotency-Key is still running", "request-in-progress",
                           retry_after=5)
        # The first request died. Take its claim over (only one retry may), then answer from what it left.
        taken = db.update("UPDATE idempotency_keys SET created_at = UTC_TIMESTAMP(6) WHERE tenant_id = %s AND "
                          "idem_key = %s AND state = 'running' AND "
                          "TIMESTAMPDIFF(SECOND, created_at, UTC_TIMESTAMP(6)) > %s",
                          (claim.tenant_id, claim.key, config.cloud_budget + STALE_MARGIN))
        if not taken:
            raise Conflict("a request with this Idempotency-Key is still running", "request-in-progress",
                           retry_after=5)
        return row if row["resource_id"] else None
    raise Conflict("this Idempotency-Key is contended; try again", "request-in-progress", retry_after=1)


STALE_MARGIN = 30  # seconds past the cloud budget after which a running claim's request must have died
