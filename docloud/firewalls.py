"""Cloud firewalls: how the API shows them ("waiting" until the activation
delay has passed since the last change), how rules, droplets and tags are
checked, and the /v2/firewalls handlers.

DigitalOcean documents 400 bad_request, and no 422, for every firewall write
(create, PUT, rules, droplets, tags), so every refusal here is a 400."""

import ipaddress
import json
import re
import time

from .errors import bad_request, is_number, not_found
from .plumbing import Reply, iso, listing, paging
from .store import FirewallSpec
from .validation import check_tag, checked_name, parse_tags

refuse = bad_request  # see above: the one error a firewall write is refused with


def render_firewall(view, now, activate_after):
    """The firewall as the API shows it: "waiting", with a pending change per
    droplet, until the activation delay has passed since the last change."""
    row, tags, droplet_ids = view
    waiting = now < row["changed_at"] + activate_after
    return {
        "id": row["id"], "name": row["name"], "status": "waiting" if waiting else "succeeded",
        "created_at": iso(row["created_at"]),
        "pending_changes": [{"droplet_id": droplet_id, "removing": False, "status": "waiting"}
                            for droplet_id in droplet_ids] if waiting else [],
        "inbound_rules": json.loads(row["inbound_rules"]),
        "outbound_rules": json.loads(row["outbound_rules"]),
        "droplet_ids": droplet_ids, "tags": tags,
    }


FIREWALL_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\.-]+$")
PROTOCOLS = ("tcp", "udp", "icmp")
# A rule's `action` in DigitalOcean's current model; a rule without one allows.
ACTIONS = ("allow", "deny")
DEFAULT_ACTION = "allow"
MAX_PORT = 65535
# Rule lists and the key of each rule's targets.
RULE_LISTS = {"inbound_rules": "sources", "outbound_rules": "destinations"}


def check_firewall_name(name):
    return checked_name(name, FIREWALL_NAME_RE, "name is required.",
                        "Firewall name {name!r} is invalid: a letter or digit, then at least one letter,"
                        " digit, period or dash, at most 255.", refuse)


def _parse_ports(protocol, ports, where):
    if protocol == "icmp":
        # ICMP has no ports: DigitalOcean takes none and shows "0".
        if ports not in (None, "", "0"):
            raise refuse(f"{where}.ports must be left out for icmp rules.")
        return "0"
    bounds = ports.split("-") if isinstance(ports, str) else []
    if ports == "0" or (len(bounds) in (1, 2) and all(map(is_number, bounds))
                        and 1 <= int(bounds[0]) <= int(bounds[-1]) <= MAX_PORT):
        return ports
    raise refuse(f'{where}.ports {ports!r} is invalid: give a port ("22"), a range'
                 ' ("8000-9000") or "0" for all ports.')


def _check_address(value, where):
    try:
        # Host bits are allowed ("1.2.3.4/8"): only the shape is checked.
        ipaddress.ip_network(value if isinstance(value, str) else "-", strict=False)
    except ValueError:
        raise refuse(f"{where}: {value!r} is not an IPv4 or IPv6 address or CIDR.") from None


def _check_droplet_id(value, where):
    if isinstance(value, bool) or not isinstance(value, int):
        raise refuse(f"{where}: {value!r} is not a droplet id.")


def _no_such(kind):
    """A check for ids of things the sandbox never has, so any id is unknown."""
    def check(value, where):
        if not isinstance(value, str):
            raise refuse(f"{where}: {value!r} is not an id.")
        raise refuse(f"{where}: {kind} {value!r} was not found (the sandbox has none).")
    return check


# What each list in a rule's sources or destinations holds, in the order the API shows them.
TARGET_CHECKS = {
    "addresses": _check_address, "droplet_ids": _check_droplet_id,
    "load_balancer_uids": _no_such("load balancer"),
    "kubernetes_ids": _no_such("Kubernetes cluster"),
    "tags": lambda value, where: check_tag(value, refuse),
}


def _parse_targets(targets, where):
    if not isinstance(targets, dict):
        raise refuse(f"You specified an invalid type for {where}: it must be an object.")
    parsed = {}
    for kind, check in TARGET_CHECKS.items():
        values = targets.get(kind)
        if values is None:
            continue
        if not isinstance(values, list):
            raise refuse(f"{where}.{kind} must be a list.")
        for value in values:
            check(value, f"{where}.{kind}")
        if values:  # empty lists are left out, as DigitalOcean shows rules
            parsed[kind] = list(dict.fromkeys(values))
    if not parsed:
        raise refuse(f"{where} is empty: give at least one address, droplet id or tag.")
    return parsed


def _parse_rule(rule, where, target_key):
    if not isinstance(rule, dict):
        raise refuse(f"{where} must be an object with protocol, ports and {target_key}.")
    protocol = rule.get("protocol")
    if not isinstance(protocol, str) or protocol not in PROTOCOLS:
        raise refuse(f"{where}.protocol {protocol!r} is invalid: use tcp, udp or icmp.")
    parsed = {"protocol": protocol, "ports": _parse_ports(protocol, rule.get("ports"), where),
              target_key: _parse_targets(rule.get(target_key), f"{where}.{target_key}")}
    action = rule.get("action")
    if action is not None:
        # Kept as sent, so a deny rule is stored and shown as one, never as an allow.
        if not isinstance(action, str) or action not in ACTIONS:
            raise refuse(f"{where}.action {action!r} is invalid: use allow or deny.")
        parsed["action"] = action
    return parsed


def parse_rules(body):
    """(inbound, outbound) rules of a request, in the shape the API shows them;
    there must be at least one."""
    parsed = []
    for key, target_key in RULE_LISTS.items():
        rules = body.get(key) or []
        if not isinstance(rules, list):
            raise refuse(f"{key} must be a list of rules.")
        parsed.append([_parse_rule(rule, f"{key}[{n}]", target_key) for n, rule in enumerate(rules)])
    if not any(parsed):
        raise refuse("At least one inbound or outbound rule is required.")
    return parsed


def rule_tags(rules):
    return [tag for rule in rules for key in RULE_LISTS.values() for tag in rule.get(key, {}).get("tags", [])]


def parse_droplet_ids(body):
    droplet_ids = body.get("droplet_ids")
    if droplet_ids is None:
        return ()
    if not isinstance(droplet_ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in droplet_ids):
        raise refuse("droplet_ids must be a list of droplet ids.")
    return tuple(dict.fromkeys(droplet_ids))


def require_droplets(store, droplet_ids):
    missing = set(droplet_ids) - store.existing_droplet_ids(droplet_ids) if droplet_ids else ()
    if missing:
        raise refuse(f"Droplet {min(missing)} does not exist.")


def require_tags(store, tags):
    # The model's existing_tags_array: a firewall only refers to tags that exist.
    missing = store.missing_tags(tags) if tags else []
    if missing:
        raise refuse(f"Tag {missing[0]!r} does not exist: create it first (POST /v2/tags).")


def parse_firewall(store, body):
    """Validate a firewall create or PUT body; what it omits is reset to empty."""
    name = check_firewall_name(body.get("name"))
    inbound, outbound = parse_rules(body)
    droplet_ids = parse_droplet_ids(body)
    tags = parse_tags(body.get("tags"), refuse)
    require_droplets(store, droplet_ids)
    require_tags(store, [*tags, *rule_tags(inbound + outbound)])
    return FirewallSpec(name, tuple(inbound), tuple(outbound), droplet_ids, tags)


def _firewall_reply(app, status, firewall_id):
    view = app.store.get_firewall(firewall_id)
    if view is None:
        raise not_found()
    return Reply(status, {"firewall": render_firewall(view, time.time(), app.activate_after)})


def _existing_firewall(app, req):
    firewall_id = req.params["firewall_id"]
    if not app.store.firewall_exists(firewall_id):
        raise not_found()
    return firewall_id


def list_firewalls(app, req):
    page, per_page = paging(req)
    views, total = app.store.list_firewalls((page - 1) * per_page, per_page)
    now = time.time()
    firewalls = [render_firewall(view, now, app.activate_after) for view in views]
    return listing(req, "firewalls", firewalls, total, page, per_page)


def create_firewall(app, req):
    spec = parse_firewall(app.store, req.json(refuse))
    return _firewall_reply(app, 202, app.store.add_firewall(spec, time.time()))


def get_firewall(app, req):
    return _firewall_reply(app, 200, req.params["firewall_id"])


def update_firewall(app, req):
    firewall_id = _existing_firewall(app, req)
    spec = parse_firewall(app.store, req.json(refuse))
    if not app.store.replace_firewall(firewall_id, spec, time.time()):
        raise not_found()
    return _firewall_reply(app, 200, firewall_id)


def delete_firewall(app, req):
    if not app.store.delete_firewall(req.params["firewall_id"]):
        raise not_found()
    return Reply(204)


def _required(body, key):
    if body.get(key) is None:
        raise refuse(f"{key} is required.")
    return body


def _link_firewall(app, req, table, add):
    """Add or remove droplets or tags; only additions must name existing ones."""
    firewall_id = _existing_firewall(app, req)
    body = req.json(refuse)
    if table == "firewall_tags":
        values = parse_tags(_required(body, "tags")["tags"], refuse)
        if add:
            require_tags(app.store, values)
    else:
        values = parse_droplet_ids(_required(body, "droplet_ids"))
        if add:
            require_droplets(app.store, values)
    if not app.store.link_firewall(firewall_id, table, values, add, time.time()):
        raise not_found()
    return Reply(204)


def add_firewall_tags(app, req):
    return _link_firewall(app, req, "firewall_tags", add=True)


def remove_firewall_tags(app, req):
    return _link_firewall(app, req, "firewall_tags", add=False)


def add_firewall_droplets(app, req):
    return _link_firewall(app, req, "firewall_droplets", add=True)


def remove_firewall_droplets(app, req):
    return _link_firewall(app, req, "firewall_droplets", add=False)


def _meaning(rule):
    """What a rule does: one that leaves `action` out allows, like one that says allow; a
    deny rule never equals an allow rule with the same traffic."""
    return {**rule, "action": rule.get("action", DEFAULT_ACTION)}


def with_rules(rules, added):
    """`rules` and then each added rule not already there."""
    merged = list(rules)
    for rule in added:
        if _meaning(rule) not in map(_meaning, merged):
            merged.append(rule)
    return merged


def without_rules(rules, removed):
    # A rule goes when it means what one given means; given rules that match none are ignored.
    gone = [_meaning(rule) for rule in removed]
    return [rule for rule in rules if _meaning(rule) not in gone]


def _change_rules(app, req, combine):
    firewall_id = _existing_firewall(app, req)
    inbound, outbound = parse_rules(req.json(refuse))
    if combine is with_rules:  # removing may name a tag deleted since
        require_tags(app.store, rule_tags(inbound + outbound))
    if not app.store.change_firewall_rules(firewall_id, combine, inbound, outbound, time.time()):
        raise not_found()
    return Reply(204)


def add_firewall_rules(app, req):
    return _change_rules(app, req, with_rules)


def remove_firewall_rules(app, req):
    return _change_rules(app, req, without_rules)
