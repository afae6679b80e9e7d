"""Firewalls: a tenant's named rule sets, applied to servers by tag.

A firewall is allow-listed traffic: inbound rules open ports to sources,
outbound rules to destinations. Sources are CIDRs, the tenant's own servers
or the tenant's own tags. In the cloud every firewall is attached to its own
tag, `<platform>:fw:<id>`, and a server is created carrying the tags of its
firewalls, so it is covered from its first boot. A tenant's servers and tags
become cloud tags no other tenant can carry (`ownership.row_tag`,
`ownership.scoped_tag`), so a rule can never admit another tenant's machines.

Every tenant has a default firewall, made on first use: inbound TCP on
CP_DEFAULT_FIREWALL_PORTS from anywhere, outbound open. Its rules can be
changed like any other's; it cannot be deleted.
"""

import json

from . import desired_state, limits, operations
from .errors import Busy, Conflict, Unavailable, invalid
from .ids import looks_like_id
from .validation import Field, boolean, list_of, short_name, validate

PROTOCOLS = ("tcp", "udp", "icmp")
WORLD = ("0.0.0.0/0", "::/0")
PORTS = 65535
# What takes "allow_all_ports_from_anywhere": the inbound rules of one protocol opening at least half of its
# ports, each to at least half of the IPv4 or of the IPv6 internet, however the rules spell it ("1-65534",
# 0.0.0.0/1 + 128.0.0.0/1, two rules of half the ports each). Below both halves stays what people open on
# purpose: media ranges (RTP, TURN: 10,000-20,000 or 49152-65535 ports, a quarter at most), every port
# from a network they trust (a /8 is 1/256 of IPv4). Public IPv4 is about 86% of it, so a list of every
# public block is caught too.
WIDE_PORTS = PORTS // 2 + 1
MAX_RULES = 50
DEFAULT_NAME = "default"
MAX_TARGETS = 100
COLUMNS = ("id, name, inbound_rules, outbound_rules, is_default, cloud_id, revision, applied_revision, status, "
           "status_reason, created_at, updated_at, deleted_at, legacy_tags")
OPEN_OUTBOUND = [{"protocol": protocol, "ports": "all", "destinations": {"addresses": list(WORLD)}}
                 for protocol in ("tcp", "udp")] + [{"protocol": "icmp", "destinations": {"addresses": list(WORLD)}}]


# ---------------------------------------------------------------- rules


def _ports(value):
    """"all", one port "22", or a range "8000-9000"; "1-65535" is "all"."""
    if not isinstance(value, str):
        raise ValueError("ports must be a string: \"22\", \"8000-9000\" or \"all\"")
    if value == "all":
        return value
    low, _, high = value.partition("-")
    high = high or low
    if not (low.isascii() and low.isdigit() and high.isascii() and high.isdigit()):
        raise ValueError(f"ports {value!r} is not \"22\", \"8000-9000\" or \"all\"")
    low, high = int(low), int(high)
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"ports {value!r}: ports are 1-65535 and a range goes low-high")
    return "all" if (low, high) == (1, 65535) else (str(low) if low == high else f"{low}-{high}")


def _address(value):
    """An IPv4/IPv6 address or network, in canonical form; host bits must be clear."""
    import ipaddress
    if not isinstance(value, str):
        raise ValueError("addresses must be strings")
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or network (CIDR)") from None
        raise ValueError(f"{value!r} has host bits set; did you mean {network}?") from None


def _server_ref(value):
    if not looks_like_id(value):
        raise ValueError("servers must be server ids")
    return value


def _targets(config, value):
    from .ownership import user_tag
    if not isinstance(value, dict) or not value:
        raise ValueError("must be an object with addresses, servers and/or tags")
    checks = {"addresses": _address, "servers": _server_ref, "tags": user_tag(config)}
    clean = {}
    for key, item in value.items():
        if key not in checks:
            raise ValueError(f"unknown field {key!r}; use addresses, servers or tags")
        try:
            clean[key] = list_of(checks[key], MAX_TARGETS, commas=False)(item)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    clean = {key: items for key, items in clean.items() if items}
    if not clean:
        raise ValueError("must name at least one address, server or tag")
    return clean


def _rule(config, targets_key):
    def check(value):
        if not isinstance(value, dict):
            raise ValueError("must be an object with protocol, ports and " + targets_key)
        unknown = set(value) - {"protocol", "ports", targets_key}
        if unknown:
            raise ValueError(f"unknown field {sorted(unknown)[0]!r}")
        protocol = value.get("protocol")
        if protocol not in PROTOCOLS:
            raise ValueError("protocol must be tcp, udp or icmp")
        rule = {"protocol": protocol}
        if protocol == "icmp":
            if value.get("ports") is not None:
                raise ValueError("icmp has no ports")
        elif value.get("ports") is None:
            raise ValueError(f"{protocol} needs ports: \"22\", \"8000-9000\" or \"all\"")
        else:
            rule["ports"] = _ports(value["ports"])
        if value.get(targets_key) is None:
            raise ValueError(f"{targets_key} is required")
        try:
            rule[targets_key] = _targets(config, value[targets_key])
        except ValueError as exc:
            raise ValueError(f"{targets_key}: {exc}") from None
        return rule
    return check


def wide_open(rules):
    """The inbound rules that together open at least half of a protocol's ports (WIDE_PORTS), each port to
    at least half of the IPv4 or of the IPv6 internet, by protocol ({"tcp": [1]}; {} when none do)."""
    found = {}
    for protocol in ("tcp", "udp"):
        opening = _opening(_spans(rules, protocol, 4), 32) | _opening(_spans(rules, protocol, 6), 128)
        if opening:
            found[protocol] = sorted(opening)
    return found


def _spans(rules, protocol, version):
    """(rule number, first port, last port, [(first, last) address of each source network of the family])
    of the protocol's rules that name any."""
    import ipaddress
    spans = []
    for number, rule in enumerate(rules):
        if rule["protocol"] != protocol:
            continue
        ranges = [(int(network.network_address), int(network.broadcast_address))
                  for network in map(ipaddress.ip_network, rule["sources"].get("addresses", []))
                  if network.version == version]
        if ranges:
            spans.append((number, *_span(rule["ports"]), ranges))
    return spans


def _span(ports):
    low, _, high = ("1-65535" if ports == "all" else ports).partition("-")
    return int(low), int(high or low)


def _opening(spans, bits):
    """The numbers of the rules that open WIDE_PORTS ports or more to most of a family of `bits`-bit
    addresses (none if they do not). The ports are cut where a span starts or ends; a piece counts when the
    sources of the spans covering it hold half of the family. Named are the rules that alone cover a piece
    that counts (not a narrow rule beside a wide one), or, if none does, every rule covering one."""
    if not _most_of(bits, [pair for span in spans for pair in span[3]]):
        return set()  # the usual case, at once: not even all the sources together hold half
    cuts = sorted({low for _, low, _, _ in spans} | {high + 1 for _, _, high, _ in spans})
    wide, covering_wide, alone = 0, set(), set()
    for start, end in zip(cuts, cuts[1:], strict=False):
        covering = [span for span in spans if span[1] <= start <= span[2]]
        if _most_of(bits, [pair for span in covering for pair in span[3]]):
            wide += end - start
            covering_wide.update(span[0] for span in covering)
            alone.update(span[0] for span in covering if len(covering) == 1)
    return (alone or covering_wide) if wide >= WIDE_PORTS else set()


def _most_of(bits, ranges):
    """Whether the address ranges, together, hold at least half of the 2**bits addresses."""
    held, end = 0, -1
    for first, last in sorted(ranges):
        if last > end:
            held += last - max(first, end + 1) + 1
            end = last
    return held * 2 >= 2 ** bits


def schema(config, partial=False):
    """POST needs a name and inbound rules; PATCH any of them."""
    return {
        "name": Field(short_name(), required=not partial),
        "inbound_rules": Field(list_of(_rule(config, "sources"), MAX_RULES), required=not partial),
        "outbound_rules": Field(list_of(_rule(config, "destinations"), MAX_RULES),
                                **({} if partial else {"default": OPEN_OUTBOUND})),
        "allow_all_ports_from_anywhere": Field(boolean, default=False),
    }


def _check_rules(ctx, fields):
    """What the structure cannot say: the world-open flag, and that named servers are the tenant's."""
    if not fields["allow_all_ports_from_anywhere"]:
        opened = wide_open(fields.get("inbound_rules", []))
        if opened:
            said = "; ".join(_opening_said(protocol, numbers) for protocol, numbers in opened.items())
            raise invalid({"inbound_rules": f"{said}; send \"allow_all_ports_from_anywhere\": true if you mean it"})
    errors = {}
    for key, part in (("inbound_rules", "sources"), ("outbound_rules", "destinations")):
        wanted = sorted({server for rule in fields.get(key, []) for server in rule[part].get("servers", [])})
        found = ctx.db.tenant_rows("servers", "id", ctx.tenant_id, wanted, " AND status <> 'deleted'")
        missing = [server for server in wanted if server not in found]
        if missing:
            errors[key] = f"{part}: no server {missing[0]}"
    if errors:
        raise invalid(errors)


def _opening_said(protocol, numbers):
    rules = f"rule {numbers[0]} opens" if len(numbers) == 1 else f"rules {', '.join(map(str, numbers))} open"
    return f"{rules} at least half of the {protocol} ports to at least half of the internet (IPv4 or IPv6)"


def default_rules(config):
    ports = [_ports(port) for port in config.get_list("CP_DEFAULT_FIREWALL_PORTS")]
    return [{"protocol": "tcp", "ports": port, "sources": {"addresses": list(WORLD)}} for port in ports]


# ---------------------------------------------------------------- the cloud's form


def cloud_spec(config, tenant_id, row):
    """The firewall as the cloud API takes it (POST and PUT alike).

    A firewall made before installation ids (`legacy_tags`) also names its servers and tags in
    their old forms: servers made then carry only those until the monitor has re-tagged them.
    """
    from . import ownership
    legacy = bool(row.get("legacy_tags"))
    tags = [ownership.firewall_tag(config, row["id"])]
    if legacy:
        tags.append(f"{ownership.legacy_prefix(config)}:fw:{row['id']}")
    return {"name": ownership.cloud_name(config, "firewall", row["id"]),
            "inbound_rules": [_cloud_rule(config, tenant_id, rule, "sources", legacy)
                              for rule in json.loads(row["inbound_rules"])],
            "outbound_rules": [_cloud_rule(config, tenant_id, rule, "destinations", legacy)
                               for rule in json.loads(row["outbound_rules"])],
            "tags": tags, "droplet_ids": []}


def _cloud_rule(config, tenant_id, rule, key, legacy):
    from .ownership import legacy_prefix, row_tag, scoped_tag
    ours = rule[key]
    target = {}
    if ours.get("addresses"):
        target["addresses"] = ours["addresses"]
    tags = [row_tag(config, server) for server in ours.get("servers", [])]
    tags += [scoped_tag(config, tenant_id, tag) for tag in ours.get("tags", [])]
    if legacy:
        old = legacy_prefix(config)
        tags += [f"{old}:{server}" for server in ours.get("servers", [])]
        tags += [f"{old}:t:{tenant_id}:{tag}" for tag in ours.get("tags", [])]
    if tags:
        target["tags"] = tags
    cloud = {"protocol": rule["protocol"], key: target}
    cloud["ports"] = "0" if rule.get("ports", "all") == "all" else rule["ports"]
    return cloud


def create_in_cloud(config, cloud, row):
    return cloud.create_firewall(cloud_spec(config, row["tenant_id"], row))


def update_in_cloud(config, cloud, row):
    cloud.update_firewall(row["cloud_id"], cloud_spec(config, row["tenant_id"], row))


def delete_in_cloud(config, cloud, cloud_id):
    return cloud.delete_firewall(cloud_id)


def needs_update(config, row, in_cloud):
    """A change not yet pushed, or (when the monitor has the cloud's copy) rules edited behind our back."""
    if row["applied_revision"] < row["revision"]:
        return True
    return in_cloud is not None and not same_rules(cloud_spec(config, row["tenant_id"], row), in_cloud)


def same_rules(wanted, cloud):
    """Whether the cloud's firewall already has the rules we want (order and empty lists aside).

    Every kind of target a rule names counts: we name addresses and tags only, so droplet ids, load
    balancers or clusters added in the cloud are a change too. The firewall's own droplet_ids do not:
    the cloud lists there the droplets its tags cover. A rule's action counts: ours name none, which the
    cloud reads as allow, so a rule turned to deny in the cloud is a change and one that says allow is not."""
    def norm(rules, key):
        out = []
        for rule in rules or []:
            target = rule.get(key) or {}
            ports = "0" if rule.get("protocol") == "icmp" or rule.get("ports") in (None, "", "all") else rule["ports"]
            out.append((rule.get("protocol"), ports, rule.get("action") or "allow",
                        sorted((kind, sorted(values)) for kind, values in target.items() if values)))
        return sorted(out)
    return (norm(wanted["inbound_rules"], "sources") == norm(cloud.get("inbound_rules"), "sources")
            and norm(wanted["outbound_rules"], "destinations") == norm(cloud.get("outbound_rules"), "destinations")
            and sorted(wanted["tags"]) == sorted(cloud.get("tags") or []))


# ---------------------------------------------------------------- API


def represent(row):
    return {"id": row["id"], "name": row["name"], "default": bool(row["is_default"]),
            "inbound_rules": json.loads(row["inbound_rules"]), "outbound_rules": json.loads(row["outbound_rules"]),
            "status": row["status"], "status_reason": row["status_reason"],
            "created_at": row["created_at"], "updated_at": row["updated_at"], "deleted_at": row["deleted_at"]}


def load_row(ctx, firewall_id, lock=False):
    return ctx.db.existing("firewall", f"SELECT {COLUMNS} FROM firewalls WHERE id = %s AND tenant_id = %s "
                           "AND status <> 'deleted'" + (" FOR UPDATE" if lock else ""), (firewall_id, ctx.tenant_id))


def listing(ctx, args):
    """One page of the tenant's firewalls (args: limit, cursor)."""
    return ctx.db.page(f"SELECT {COLUMNS} FROM firewalls", ["tenant_id = %s", "status <> 'deleted'"],
                       [ctx.tenant_id], args)


def create(ctx, fields):
    """POST /api/firewalls: the row and its operation, then the cloud at once (the monitor finishes it).
    Answers the firewall as shown, with its operation (`desired_state.accepted`)."""
    fields = validate(fields, schema(ctx.config))
    _check_rules(ctx, fields)
    _name_not_kept(fields, is_default=False)
    limits.spend(ctx, "cloud")

    def insert(place):
        made = desired_state.insert(ctx.db, ctx.principal, FAMILY, "firewall.create",
                                    {**_values(fields, is_default=False), "cap_slot": place}, fields["name"],
                                    racing_ok=True)
        if made is None:  # the name, or the place, taken meanwhile: the name is a Conflict
            desired_state.check_name_free(ctx.db, FAMILY, ctx.tenant_id, fields["name"])
        return made
    firewall_id = ctx.target = limits.within_cap(ctx, limits.FIREWALLS, insert)
    return desired_state.accepted(ctx, FAMILY, firewall_id, "firewall.create")


def _name_not_kept(fields, is_default):
    """`default` names the tenant's default firewall: ensure_default could not make it under a name taken."""
    if fields.get("name") == DEFAULT_NAME and not is_default:
        raise invalid({"name": f"{DEFAULT_NAME!r} is kept for the tenant's default firewall"})


def _values(fields, is_default):
    return {"name": fields["name"], "inbound_rules": json.dumps(fields["inbound_rules"]),
            "outbound_rules": json.dumps(fields["outbound_rules"]), "is_default": int(is_default)}


def update(ctx, firewall_id, fields):
    """PATCH /api/firewalls/<id>: new rules (or name) now; the cloud follows, retried by the monitor."""
    fields = validate(fields, schema(ctx.config, partial=True))
    _check_rules(ctx, fields)
    limits.spend(ctx, "cloud")
    db = ctx.db
    ctx.target = firewall_id
    for attempt in db.transaction():
        with attempt:
            row = load_row(ctx, firewall_id, lock=True)
            if row["status"] == "deleting":
                raise Conflict("the firewall is being deleted", "firewall-deleting")
            _name_not_kept(fields, row["is_default"])
            changes = {key: json.dumps(fields[key]) for key in ("inbound_rules", "outbound_rules") if key in fields}
            if "name" in fields:
                changes["name"] = fields["name"]
            desired_state.check_name_free(db, FAMILY, ctx.tenant_id, changes.get("name"), firewall_id)
            sets = ", ".join(f"{column} = %s" for column in changes)
            db.update(f"UPDATE firewalls SET {sets}{', ' if sets else ''}revision = revision + 1, "
                      "status = 'pending', status_reason = '', updated_at = UTC_TIMESTAMP(6) WHERE id = %s",
                      (*changes.values(), firewall_id))
            operations.finish_open(db, firewall_id, "firewall.update", "cancelled", "replaced by a later change")
            operations.start(db, ctx.principal, "firewall.update", firewall_id, target_type="firewall")
    return desired_state.accepted(ctx, FAMILY, firewall_id, "firewall.update")


def delete(ctx, firewall_id):
    """DELETE /api/firewalls/<id>: Conflict for the default one, or one that servers still rely on."""
    db = ctx.db
    ctx.target = firewall_id
    row = load_row(ctx, firewall_id)
    if row["is_default"]:
        raise Conflict("the default firewall cannot be deleted; change its rules instead", "default-firewall")
    users = db.one("SELECT COUNT(*) AS n FROM servers WHERE tenant_id = %s AND status <> 'deleted' "
                   "AND firewall_ids LIKE %s", (ctx.tenant_id, f'%"{firewall_id}"%'))["n"]
    if users:
        raise Conflict(f"{users} server(s) are behind this firewall; deleting it would leave them open. "
                       "Delete those servers first", "firewall-in-use")
    limits.spend(ctx, "cloud")
    return desired_state.delete(ctx, FAMILY, "firewall", row)


# ---------------------------------------------------------------- defaults


CLOUD_STATE = "id, name, status, status_reason, cloud_id"


def ensure_default(ctx):
    """The tenant's default firewall's id, made (with its operation) on first use; it must be in the cloud.
    A cloud that failed for now is a line in the operator's log (`ctx.log`)."""
    db, config, tenant_id = ctx.db, ctx.config, ctx.tenant_id

    def find():
        return db.one(f"SELECT {CLOUD_STATE} FROM firewalls WHERE tenant_id = %s AND is_default = 1 "
                      "AND status <> 'deleted'", (tenant_id,))
    found = find()
    if found is None:
        fields = {"name": DEFAULT_NAME, "inbound_rules": default_rules(config), "outbound_rules": OPEN_OUTBOUND}
        firewall_id = desired_state.insert(db, ctx.principal, FAMILY, "firewall.create",
                                           _values(fields, is_default=True), name=DEFAULT_NAME, racing_ok=True)
        if firewall_id is not None:  # else another request made it meanwhile
            desired_state.apply_now(ctx, FAMILY, firewall_id, "firewall.create")
        found = find()
        if found is None:
            raise Busy("the default firewall is being made; try again", retry_after=2)
    _require_in_cloud([found])
    return found["id"]


def named(ctx, firewall_ids):
    """Check that every id is one of the tenant's live firewalls (Invalid naming the first that is not),
    and that the cloud has each."""
    found = ctx.db.tenant_rows("firewalls", CLOUD_STATE, ctx.tenant_id, firewall_ids,
                               " AND status NOT IN ('deleting', 'deleted')")
    missing = [firewall_id for firewall_id in firewall_ids if firewall_id not in found]
    if missing:
        raise invalid({"firewalls": f"no firewall {missing[0]}"})
    _require_in_cloud([found[firewall_id] for firewall_id in firewall_ids])
    return firewall_ids


def _require_in_cloud(rows):
    """A server carries its firewalls' tags from its first boot; a firewall the cloud does not have yet
    covers nothing, so the server would boot open to the world. Refuse until the cloud has each one
    (one whose later change is pending is there, with its earlier rules)."""
    for row in rows:
        if row["cloud_id"]:
            continue
        if row["status"] == "error":
            raise Conflict(f"the firewall {row['name']} could not be made: {row['status_reason']}; "
                           "change its rules to try again", "firewall-failed")
        raise Unavailable(f"the firewall {row['name']} is not made in the cloud yet; "
                          "the monitor will make it within a minute or two", "firewall-not-ready", retry_after=60)


FAMILY = desired_state.Family("firewalls", "firewall", COLUMNS, represent, create_in_cloud, update_in_cloud,
                              delete_in_cloud, needs_update)
