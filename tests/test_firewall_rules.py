"""Firewall rules and VPC ranges as the API checks them, and when the monitor rewrites a firewall.

Unit tests: the checkers are called directly with literal input. Their ValueError messages reach API
clients as 422 field errors, so each is pinned word for word.
"""

import pytest

from cloudprovisioner import firewalls, vpcs
from cloudprovisioner.firewalls import _address, _ports, same_rules
from tests.support import make_config

CONFIG = make_config({})
SERVER = "a" * 26  # the shape of a server id (ids.looks_like_id)


def error_of(check, value):
    with pytest.raises(ValueError) as raised:
        check(value)
    return str(raised.value)


# ---------------------------------------------------------------- ports


@pytest.mark.parametrize(("value", "expected"), [
    ("all", "all"),
    ("1", "1"),
    ("22", "22"),
    ("65535", "65535"),
    ("022", "22"),
    ("8000-9000", "8000-9000"),
    ("20-20", "20"),
    ("1-65535", "all"),
    ("2-65535", "2-65535"),
    ("1-65534", "1-65534"),
    ("1-2", "1-2"),
    ("65534-65535", "65534-65535"),
    ("22-", "22"),
])
def test_ports_in_canonical_form(value, expected):
    assert _ports(value) == expected


SHAPE = ' is not "22", "8000-9000" or "all"'
RANGE = ": ports are 1-65535 and a range goes low-high"


@pytest.mark.parametrize(("value", "message"), [
    (22, 'ports must be a string: "22", "8000-9000" or "all"'),
    (None, 'ports must be a string: "22", "8000-9000" or "all"'),
    (["22"], 'ports must be a string: "22", "8000-9000" or "all"'),
    ("0", "ports '0'" + RANGE),
    ("65536", "ports '65536'" + RANGE),
    ("0-22", "ports '0-22'" + RANGE),
    ("22-65536", "ports '22-65536'" + RANGE),
    ("0-65535", "ports '0-65535'" + RANGE),
    ("30-20", "ports '30-20'" + RANGE),
    ("2-1", "ports '2-1'" + RANGE),
    ("ALL", "ports 'ALL'" + SHAPE),
    ("", "ports ''" + SHAPE),
    ("-", "ports '-'" + SHAPE),
    ("-22", "ports '-22'" + SHAPE),
    ("22-x", "ports '22-x'" + SHAPE),
    ("x-22", "ports 'x-22'" + SHAPE),
    ("1-2-3", "ports '1-2-3'" + SHAPE),
    (" 22", "ports ' 22'" + SHAPE),
    ("+22", "ports '+22'" + SHAPE),
    ("22:80", "ports '22:80'" + SHAPE),
    # Digits, but not ASCII ones: int() would take them (Arabic-Indic 22 is 22).
    ("\u0662\u0662", "ports '\u0662\u0662'" + SHAPE),
    ("\u0662\u0662-80", "ports '\u0662\u0662-80'" + SHAPE),
    ("22-\u0668\u0660", "ports '22-\u0668\u0660'" + SHAPE),
])
def test_ports_refused(value, message):
    assert error_of(_ports, value) == message


# ---------------------------------------------------------------- addresses


@pytest.mark.parametrize(("value", "expected"), [
    ("203.0.113.7", "203.0.113.7/32"),
    ("203.0.113.7/32", "203.0.113.7/32"),
    ("203.0.113.0/24", "203.0.113.0/24"),
    ("0.0.0.0/0", "0.0.0.0/0"),
    ("2001:db8::1", "2001:db8::1/128"),
    ("2001:DB8:0:0::/64", "2001:db8::/64"),
    ("::/0", "::/0"),
])
def test_addresses_in_canonical_form(value, expected):
    assert _address(value) == expected


@pytest.mark.parametrize(("value", "message"), [
    (3405803783, "addresses must be strings"),  # ipaddress itself would take an int
    (None, "addresses must be strings"),
    ("203.0.113.7/24", "'203.0.113.7/24' has host bits set; did you mean 203.0.113.0/24?"),
    ("203.0.113.7/0", "'203.0.113.7/0' has host bits set; did you mean 0.0.0.0/0?"),
    ("2001:db8::1/64", "'2001:db8::1/64' has host bits set; did you mean 2001:db8::/64?"),
    ("::1/0", "'::1/0' has host bits set; did you mean ::/0?"),
    ("203.0.113.0/33", "'203.0.113.0/33' is not an IP address or network (CIDR)"),
    ("2001:db8::/129", "'2001:db8::/129' is not an IP address or network (CIDR)"),
    ("256.0.0.1", "'256.0.0.1' is not an IP address or network (CIDR)"),
    ("example.com", "'example.com' is not an IP address or network (CIDR)"),
    ("", "'' is not an IP address or network (CIDR)"),
])
def test_addresses_refused(value, message):
    assert error_of(_address, value) == message


# ---------------------------------------------------------------- one rule


# Checkers are made in each test, not at import: mutmut picks its mutant when a function is called.
def check_inbound(value):
    return firewalls._rule(CONFIG, "sources")(value)


def check_outbound(value):
    return firewalls._rule(CONFIG, "destinations")(value)


def test_a_rule_comes_back_checked_and_canonical():
    assert check_inbound({"protocol": "tcp", "ports": "1-65535",
                    "sources": {"addresses": ["203.0.113.7", "2001:db8::/32"], "servers": [SERVER],
                                "tags": ["web"]}}) == {
        "protocol": "tcp", "ports": "all",
        "sources": {"addresses": ["203.0.113.7/32", "2001:db8::/32"], "servers": [SERVER], "tags": ["web"]}}
    assert check_outbound({"protocol": "udp", "ports": "53", "destinations": {"addresses": ["::/0"], "tags": []}}) == {
        "protocol": "udp", "ports": "53", "destinations": {"addresses": ["::/0"]}}


def test_icmp_has_no_ports():
    assert check_inbound({"protocol": "icmp", "sources": {"tags": ["db"]}}) == {
        "protocol": "icmp", "sources": {"tags": ["db"]}}
    assert check_inbound({"protocol": "icmp", "ports": None, "sources": {"tags": ["db"]}}) == {
        "protocol": "icmp", "sources": {"tags": ["db"]}}
    assert error_of(check_inbound, {"protocol": "icmp", "ports": "all", "sources": {"tags": ["db"]}}) == \
        "icmp has no ports"
    assert error_of(check_inbound, {"protocol": "icmp", "ports": "", "sources": {"tags": ["db"]}}) == \
        "icmp has no ports"


PROTOCOL = "protocol must be tcp, udp or icmp"


@pytest.mark.parametrize(("check", "value", "message"), [
    (check_inbound, "tcp 22", "must be an object with protocol, ports and sources"),
    (check_outbound, ["tcp"], "must be an object with protocol, ports and destinations"),
    (check_inbound, {"protocol": "tcp", "ports": "22", "sources": {"tags": ["a"]}, "zeta": 1, "alpha": 2},
     "unknown field 'alpha'"),
    (check_inbound, {"protocol": "tcp", "ports": "22", "destinations": {"tags": ["a"]}},
     "unknown field 'destinations'"),
    (check_outbound, {"protocol": "tcp", "ports": "22", "sources": {"tags": ["a"]}}, "unknown field 'sources'"),
    (check_inbound, {"ports": "22", "sources": {"tags": ["a"]}}, PROTOCOL),
    (check_inbound, {"protocol": "TCP", "ports": "22", "sources": {"tags": ["a"]}}, PROTOCOL),
    (check_inbound, {"protocol": "sctp", "ports": "22", "sources": {"tags": ["a"]}}, PROTOCOL),
    (check_inbound, {"protocol": "tcp", "sources": {"tags": ["a"]}}, 'tcp needs ports: "22", "8000-9000" or "all"'),
    (check_inbound, {"protocol": "udp", "ports": None, "sources": {"tags": ["a"]}},
     'udp needs ports: "22", "8000-9000" or "all"'),
    (check_inbound, {"protocol": "tcp", "ports": "0", "sources": {"tags": ["a"]}},
     "ports '0': ports are 1-65535 and a range goes low-high"),
    (check_inbound, {"protocol": "tcp", "ports": "22"}, "sources is required"),
    (check_outbound, {"protocol": "tcp", "ports": "22", "destinations": None}, "destinations is required"),
    (check_inbound, {"protocol": "tcp", "ports": "22", "sources": {}},
     "sources: must be an object with addresses, servers and/or tags"),
    (check_outbound, {"protocol": "udp", "ports": "22", "destinations": {"addresses": ["10.0.0.1/8"]}},
     "destinations: addresses: item 0: '10.0.0.1/8' has host bits set; did you mean 10.0.0.0/8?"),
    (check_inbound, {"protocol": "icmp", "sources": {"addresses": [], "tags": []}},
     "sources: must name at least one address, server or tag"),
])
def test_a_rule_refused(check, value, message):
    assert error_of(check, value) == message


# ---------------------------------------------------------------- every port to the world

# Most ports to most of the internet, however it is spelled: each case is the inbound rules and what takes the
# flag, by protocol (the rules named in the refusal). Half of 1-65535 is 32768 ports; half of IPv4 is a /1.
WORLD4, WORLD6 = "0.0.0.0/0", "::/0"


def tcp(ports, *addresses, protocol="tcp"):
    return {"protocol": protocol, "ports": ports, "sources": {"addresses": list(addresses)}}


@pytest.mark.parametrize(("rules", "expected"), [
    # the literal spellings
    ([tcp("all", WORLD4)], {"tcp": [0]}),
    ([tcp("all", WORLD6, protocol="udp")], {"udp": [0]}),
    ([tcp("all", "203.0.113.0/24", WORLD6)], {"tcp": [0]}),
    ([tcp("443", WORLD4, WORLD6), tcp("all", WORLD4)], {"tcp": [1]}),  # the narrow rule beside it is not named
    # every port but one, or but the first
    ([tcp("1-65534", WORLD4, WORLD6)], {"tcp": [0]}),
    ([tcp("2-65535", WORLD6, protocol="udp")], {"udp": [0]}),
    ([tcp("1024-65535", WORLD4)], {"tcp": [0]}),
    # the whole internet in halves, in one rule or two
    ([tcp("all", "0.0.0.0/1", "128.0.0.0/1")], {"tcp": [0]}),
    ([tcp("all", "0.0.0.0/1"), tcp("all", "128.0.0.0/1")], {"tcp": [0, 1]}),
    ([tcp("all", "::/1", "8000::/1")], {"tcp": [0]}),
    ([tcp("all", "0.0.0.0/1")], {"tcp": [0]}),  # half of IPv4 is enough
    ([tcp("all", "::/1")], {"tcp": [0]}),
    ([tcp("all", "0.0.0.0/2", "64.0.0.0/2")], {"tcp": [0]}),
    # the ports in halves
    ([tcp("1-32767", WORLD4), tcp("32768-65535", WORLD4)], {"tcp": [0, 1]}),
    ([tcp("1-32768", WORLD4)], {"tcp": [0]}),  # 32768 ports: half
    # ports and addresses spread over rules: 40000 ports each to two quarters
    ([tcp("1-40000", "0.0.0.0/2"), tcp("1-40000", "64.0.0.0/2")], {"tcp": [0, 1]}),
    # both protocols
    ([tcp("all", WORLD4), tcp("all", WORLD4, protocol="udp")], {"tcp": [0], "udp": [1]}),
    # below either half: no flag
    ([tcp("1-32767", WORLD4, WORLD6)], {}),  # 32767 ports
    ([tcp("all", "0.0.0.0/2")], {}),  # a quarter of IPv4
    ([tcp("all", "0.0.0.0/2", "128.0.0.0/3")], {}),  # three eighths
    ([tcp("all", "::/2")], {}),
    ([tcp("all", "0.0.0.0/2", protocol="tcp"), tcp("all", "64.0.0.0/2", protocol="udp")], {}),  # two protocols
    ([tcp("1-40000", "0.0.0.0/2"), tcp("30000-65535", "64.0.0.0/2")], {}),  # half of IPv4 on 10001 ports only
    ([tcp("all", "10.0.0.0/8", "2001:db8::/32")], {}),
    ([tcp("49152-65535", WORLD4, WORLD6, protocol="udp"), tcp("10000-20000", WORLD4, protocol="udp")], {}),
    ([tcp("22", WORLD4), tcp("80", WORLD4), tcp("443", WORLD4, WORLD6)], {}),
    ([{"protocol": "tcp", "ports": "all", "sources": {"tags": ["web"], "servers": [SERVER]}}], {}),
    ([{"protocol": "icmp", "sources": {"addresses": [WORLD4, WORLD6]}}], {}),
])
def test_most_ports_to_most_of_the_internet_take_the_flag(rules, expected):
    assert firewalls.wide_open(rules) == expected


# ---------------------------------------------------------------- whether the cloud has our rules

# A firewall as cloud_spec writes it (icmp and every port are "0"), and as the cloud answers it: rules
# and lists in another order, empty lists and icmp's ports left out, its own fields besides.
WANTED = {
    "name": "cp-firewall-1",
    "inbound_rules": [
        {"protocol": "tcp", "sources": {"addresses": ["0.0.0.0/0", "::/0"]}, "ports": "22"},
        {"protocol": "tcp", "sources": {"addresses": ["203.0.113.0/24"], "tags": ["cp:s1", "cp:t:web"]},
         "ports": "0"},
        {"protocol": "icmp", "sources": {"tags": ["cp:s2"]}, "ports": "0"},
    ],
    "outbound_rules": [
        {"protocol": "udp", "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}, "ports": "0"},
        {"protocol": "tcp", "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}, "ports": "0"},
        {"protocol": "icmp", "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}, "ports": "0"},
    ],
    "tags": ["cp:fw:1", "old:fw:1"], "droplet_ids": [],
}


def cloud():
    return {
        "id": "fw-1", "name": "cp-firewall-1", "status": "succeeded", "pending_changes": [],
        "inbound_rules": [
            {"protocol": "icmp", "sources": {"tags": ["cp:s2"]}},
            {"protocol": "tcp", "ports": "0", "sources": {"tags": ["cp:t:web", "cp:s1"],
                                                           "addresses": ["203.0.113.0/24"]}},
            {"protocol": "tcp", "ports": "22", "sources": {"addresses": ["::/0", "0.0.0.0/0"]}},
        ],
        "outbound_rules": [
            {"protocol": "icmp", "ports": "0", "destinations": {"addresses": ["::/0", "0.0.0.0/0"]}},
            {"protocol": "tcp", "ports": "0", "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}},
            {"protocol": "udp", "ports": "0", "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}},
        ],
        "tags": ["old:fw:1", "cp:fw:1"], "droplet_ids": [101, 102],
    }


def test_same_rules_in_another_order_as_the_cloud_shows_them():
    assert same_rules(WANTED, cloud()) is True


def test_every_port_and_icmp_ports_as_the_cloud_may_write_them():
    for ports in ("all", "", None):
        changed = cloud()
        changed["inbound_rules"][1]["ports"] = ports
        changed["outbound_rules"][1]["ports"] = ports
        changed["outbound_rules"][0]["ports"] = ports
        assert same_rules(WANTED, changed) is True, ports
    for ports in ("22", "all"):
        changed = cloud()
        changed["inbound_rules"][0]["ports"] = ports
        assert same_rules(WANTED, changed) is True, ports
    changed = cloud()
    del changed["inbound_rules"][1]["ports"]
    assert same_rules(WANTED, changed) is True


def test_empty_lists_are_as_good_as_none():
    wanted = {"inbound_rules": [{"protocol": "tcp", "ports": "22", "sources": {"addresses": ["0.0.0.0/0"]}}],
              "outbound_rules": [], "tags": []}
    assert same_rules(wanted, {"inbound_rules": [{"protocol": "tcp", "ports": "22",
                                                  "sources": {"addresses": ["0.0.0.0/0"], "tags": []}}],
                               "outbound_rules": None}) is True
    assert same_rules(wanted, {"inbound_rules": [{"protocol": "tcp", "ports": "22",
                                                  "sources": {"addresses": ["0.0.0.0/0"], "tags": None}}],
                               "tags": None}) is True
    assert same_rules({"inbound_rules": [], "outbound_rules": [{"protocol": "icmp", "destinations": {"tags": ["t"]}}],
                       "tags": ["cp:fw:1"]},
                      {"inbound_rules": None, "outbound_rules": [{"protocol": "icmp", "ports": "0",
                                                                  "destinations": {"tags": ["t"],
                                                                                   "addresses": None}}],
                       "tags": ["cp:fw:1"]}) is True
    # A rule whose targets the cloud left out is one with none.
    assert same_rules({"inbound_rules": [{"protocol": "icmp", "sources": {}}], "outbound_rules": [], "tags": []},
                      {"inbound_rules": [{"protocol": "icmp"}]}) is True
    assert same_rules({"inbound_rules": [{"protocol": "icmp", "sources": {}}], "outbound_rules": [], "tags": []},
                      {"inbound_rules": [{"protocol": "icmp", "sources": None}]}) is True


def edit(change):
    changed = cloud()
    change(changed)
    return changed


@pytest.mark.parametrize("change", [
    # ports and protocols
    lambda c: c["inbound_rules"][2].update(ports="2222"),
    lambda c: c["inbound_rules"][2].update(ports="22-23"),
    lambda c: c["inbound_rules"][1].update(ports="1-65534"),
    lambda c: c["inbound_rules"][1].update(ports="22"),
    lambda c: c["outbound_rules"][2].update(ports="53"),
    lambda c: c["inbound_rules"][2].update(protocol="udp"),
    lambda c: c["inbound_rules"][0].update(protocol="tcp"),
    lambda c: c["outbound_rules"][0].update(protocol="udp"),
    lambda c: c["outbound_rules"][1].update(protocol="udp"),
    # each address
    lambda c: c["inbound_rules"][2]["sources"].update(addresses=["0.0.0.0/0"]),
    lambda c: c["inbound_rules"][2]["sources"].update(addresses=["::/0"]),
    lambda c: c["inbound_rules"][2]["sources"].update(addresses=["::/0", "0.0.0.0/0", "198.51.100.1/32"]),
    lambda c: c["inbound_rules"][1]["sources"].update(addresses=["203.0.113.0/25"]),
    lambda c: c["inbound_rules"][1]["sources"].pop("addresses"),
    lambda c: c["inbound_rules"][0]["sources"].update(addresses=["198.51.100.1/32"]),
    lambda c: c["outbound_rules"][1]["destinations"].update(addresses=["0.0.0.0/0"]),
    lambda c: c["outbound_rules"][0]["destinations"].update(addresses=["10.0.0.0/8", "::/0"]),
    # each tag of a rule, and of the firewall
    lambda c: c["inbound_rules"][1]["sources"].update(tags=["cp:t:web"]),
    lambda c: c["inbound_rules"][1]["sources"].update(tags=["cp:s1"]),
    lambda c: c["inbound_rules"][1]["sources"].update(tags=["cp:s1", "cp:t:web", "other:s9"]),
    lambda c: c["inbound_rules"][0]["sources"].update(tags=["cp:s3"]),
    lambda c: c["inbound_rules"][2]["sources"].update(tags=["cp:s2"]),
    lambda c: c["outbound_rules"][2]["destinations"].update(tags=["cp:s1"]),
    lambda c: c.update(tags=["cp:fw:1"]),
    lambda c: c.update(tags=["old:fw:1"]),
    lambda c: c.update(tags=["cp:fw:1", "old:fw:1", "cp:fw:2"]),
    lambda c: c.update(tags=[]),
    lambda c: c.pop("tags"),
    # droplets, load balancers or clusters a rule admits besides ours
    lambda c: c["inbound_rules"][2]["sources"].update(droplet_ids=[101]),
    lambda c: c["inbound_rules"][0]["sources"].update(droplet_ids=[7]),
    lambda c: c["outbound_rules"][1]["destinations"].update(droplet_ids=[101]),
    lambda c: c["inbound_rules"][1]["sources"].update(load_balancer_uids=["lb-1"]),
    lambda c: c["inbound_rules"][1]["sources"].update(kubernetes_ids=["k8s-1"]),
    # rules added, dropped, or moved between inbound and outbound
    lambda c: c["inbound_rules"].pop(0),
    lambda c: c["inbound_rules"].pop(2),
    lambda c: c["outbound_rules"].pop(1),
    lambda c: c["inbound_rules"].append({"protocol": "udp", "ports": "53", "sources": {"addresses": ["::/0"]}}),
    lambda c: c["outbound_rules"].append({"protocol": "icmp", "destinations": {"tags": ["cp:s2"]}}),
    lambda c: c.update(inbound_rules=[]),
    lambda c: c.pop("inbound_rules"),
    lambda c: c.update(outbound_rules=[]),
    lambda c: c.pop("outbound_rules"),
    lambda c: c.update(inbound_rules=c["outbound_rules"], outbound_rules=c["inbound_rules"]),
    lambda c: c["outbound_rules"].append(
        {"protocol": c["inbound_rules"][0]["protocol"], "destinations": c["inbound_rules"].pop(0)["sources"]}),
])
def test_any_one_difference_is_different(change):
    assert same_rules(WANTED, edit(change)) is False


def test_rules_that_differ_only_by_direction_are_different():
    rule = {"protocol": "tcp", "ports": "22"}
    inbound = {"inbound_rules": [{**rule, "sources": {"addresses": ["0.0.0.0/0"]}}], "outbound_rules": [], "tags": []}
    outbound = {"inbound_rules": [], "outbound_rules": [{**rule, "destinations": {"addresses": ["0.0.0.0/0"]}}],
                "tags": []}
    assert same_rules(inbound, outbound) is False
    assert same_rules(outbound, inbound) is False
    assert same_rules(inbound, inbound) is True
    assert same_rules(outbound, outbound) is True
    # A rule under the other list's key has no targets there.
    crossed = {"inbound_rules": [{**rule, "destinations": {"addresses": ["0.0.0.0/0"]}}], "outbound_rules": [],
               "tags": []}
    assert same_rules(inbound, crossed) is False


# ---------------------------------------------------------------- VPC ranges


@pytest.mark.parametrize("value", [
    "10.0.0.0/16", "10.20.0.0/20", "10.255.255.240/28",
    "172.16.0.0/16", "172.31.0.0/16", "172.31.255.240/28",
    "192.168.0.0/16", "192.168.255.240/28",
])
def test_vpc_ranges_taken(value):
    assert vpcs.ip_range(value) == value


PRIVATE = "must be private (RFC 1918): inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
SIZE = "must be from /16 (65,536 addresses) to /28 (16)"


@pytest.mark.parametrize(("value", "message"), [
    (None, "must be a string like 10.20.0.0/20"),
    (167772160, "must be a string like 10.20.0.0/20"),  # ipaddress itself would take an int
    ("", "'' is not an IPv4 network like 10.20.0.0/20"),
    ("ten", "'ten' is not an IPv4 network like 10.20.0.0/20"),
    ("10.0.0.0/33", "'10.0.0.0/33' is not an IPv4 network like 10.20.0.0/20"),
    ("fd00::/16", "'fd00::/16' is not an IPv4 network like 10.20.0.0/20"),
    ("10.20.0.1/20", "'10.20.0.1/20' has host bits set; did you mean 10.20.0.0/20?"),
    ("10.20.16.0/16", "'10.20.16.0/16' has host bits set; did you mean 10.20.0.0/16?"),
    ("10.20.0.0", "'10.20.0.0' has host bits set; did you mean 10.20.0.0/32?"),
    ("010.20.0.0/20", "'010.20.0.0/20' is not an IPv4 network like 10.20.0.0/20"),
    ("10.0.0.0/15", SIZE),
    ("10.0.0.0/8", SIZE),
    ("10.0.0.0/29", SIZE),
    ("10.0.0.0/32", SIZE),
    ("0.0.0.0/0", SIZE),
    ("11.0.0.0/16", PRIVATE),
    ("9.255.0.0/16", PRIVATE),
    ("172.15.0.0/16", PRIVATE),
    ("172.32.0.0/16", PRIVATE),
    ("192.167.0.0/16", PRIVATE),
    ("192.169.0.0/16", PRIVATE),
    ("100.64.0.0/16", PRIVATE),
    ("169.254.0.0/16", PRIVATE),
])
def test_vpc_ranges_refused(value, message):
    assert error_of(vpcs.ip_range, value) == message


def test_a_deny_rule_is_drift_and_a_rule_that_says_allow_is_not():
    assert same_rules(WANTED, edit(lambda c: c["inbound_rules"][2].update(action="deny"))) is False
    assert same_rules(WANTED, edit(lambda c: c["outbound_rules"][0].update(action="deny"))) is False
    assert same_rules(WANTED, edit(lambda c: c["inbound_rules"][2].update(action="allow"))) is True
