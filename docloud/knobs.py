"""The /_sandbox/ knobs (no token: the server only listens on loopback):
faults, config, stats, reset, bulk droplets, a droplet's facts and its public
IPv4 address held back."""

import json
import time

from .catalog import BULK_DEFAULTS
from .droplets import check_name, parse_spec
from .errors import bad_request, not_found
from .faults import parse_fault
from .plumbing import Reply
from .validation import TAG_RE, int_field, number_field

MAX_BULK = 100000


def add_fault(app, req):
    rule = parse_fault(req.json())
    app.faults.add(rule)
    return Reply(201, {"fault": rule})


def list_faults(app, req):
    return Reply(200, {"faults": app.faults.list()})


def clear_faults(app, req):
    app.faults.clear()
    return Reply(204)


def _config(app):
    quota = app.limiter.headers(time.time())
    return {"activate_after": app.activate_after, "ratelimit_limit": app.limiter.limit,
            "ratelimit_remaining": int(quota["ratelimit-remaining"])}


def get_config(app, req):
    return Reply(200, _config(app))


def set_config(app, req):
    body = req.json()
    unknown = set(body) - {"activate_after", "ratelimit_limit", "ratelimit_remaining"}
    if unknown:
        raise bad_request(f"Unknown settings: {', '.join(sorted(unknown))}.")
    activate_after = number_field(body, "activate_after", None, 0.0)
    limit = int_field(body, "ratelimit_limit", app.limiter.limit, 1, 10**9)
    remaining = body.get("ratelimit_remaining")
    if remaining is not None:
        remaining = int_field(body, "ratelimit_remaining", 0, 0, limit)
    if activate_after is not None:
        app.activate_after = activate_after
    app.limiter.configure(limit, remaining, time.time())
    return Reply(200, _config(app))


def get_stats(app, req):
    return Reply(200, app.stats.snapshot())


def clear_stats(app, req):
    app.stats.clear()
    return Reply(204)


def reset(app, req):
    """Forget every droplet, action, key, tag, firewall and VPC but the
    default ones, the fault rules, the call counts and the quota used; the
    config stays."""
    app.store.reset()
    app.faults.clear()
    app.stats.clear()
    app.limiter.clear()
    return Reply(204)


def bulk_droplets(app, req):
    """Create `count` droplets named <name_prefix>-1..N in one transaction;
    the body may also carry any droplet create option (tags, region, ...), and
    `tag_each`: one more tag per droplet (e.g. the row tag a service gives each)."""
    body = {**BULK_DEFAULTS, **req.json()}
    tag_each = body.pop("tag_each", None)
    count = int_field(body, "count", None, 1, MAX_BULK)
    prefix = body["name_prefix"]
    if not isinstance(prefix, str):
        raise bad_request("name_prefix must be a string.")
    if tag_each is not None and (not isinstance(tag_each, list) or len(tag_each) != count
                                 or not all(isinstance(t, str) and TAG_RE.fullmatch(t) for t in tag_each)):
        raise bad_request("tag_each must be a list of count valid tags.")
    names = [f"{prefix}-{n}" for n in range(1, count + 1)]
    check_name(names[-1])  # the longest
    created = app.store.create_droplets(parse_spec(app.store, body), names, time.time(), tag_each)
    return Reply(201, {"ids": [droplet_id for droplet_id, _ in created]})


def droplet_facts(app, req):
    """What DigitalOcean was told about a droplet but never shows back (its
    user_data and keys), and the firewalls that apply to it now, so product
    tests can assert them."""
    found = app.store.get_droplet(req.int_param("id"))
    if found is None:
        raise not_found()
    row, tags = found
    return Reply(200, {"id": row["id"], "name": row["name"], "user_data": row["user_data"],
                       "ssh_keys": json.loads(row["ssh_keys"]), "vpc_uuid": row["vpc_uuid"],
                       "tags": tags, "firewall_ids": app.store.firewalls_of(row["id"])})


def _public_ipv4(app, req, withheld):
    if not app.store.withhold_public_v4(req.int_param("id"), withheld):
        raise not_found()
    return Reply(204)


def withhold_public_ipv4(app, req):
    """From now on the droplet shows no public IPv4 address, even once active
    (its private one and any IPv6 stay), as on DigitalOcean when a droplet is
    listed active before its public address is attached."""
    return _public_ipv4(app, req, True)


def give_public_ipv4(app, req):
    """The droplet shows its public IPv4 address again (the one it always had)."""
    return _public_ipv4(app, req, False)
