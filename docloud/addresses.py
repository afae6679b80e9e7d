"""Where droplets' addresses and VPC ranges come from.

Public addresses are taken from the documentation ranges so none is ever a
real host; private ones from the droplet's VPC. Each region has a default VPC
with a stable id and range.
"""

import ipaddress
import uuid

from .catalog import REGION_NAMES

# Public addresses come from the documentation ranges (RFC 5737) so nothing
# the sandbox hands out can ever be a real host. .1 is each range's gateway.
PUBLIC_V4_NETS = tuple(ipaddress.ip_network(net) for net in
                       ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
HOSTS_PER_PUBLIC_NET = 253  # .2 to .254
PUBLIC_V6_NET = ipaddress.ip_network("2001:db8:1::/64")  # RFC 3849


def _v4(net, offset, kind):
    return {"ip_address": str(net.network_address + offset), "netmask": str(net.netmask),
            "gateway": str(net.network_address + 1), "type": kind}


def public_v4(droplet_id):
    """Consecutive ids get distinct addresses; the 759 addresses then repeat."""
    index = droplet_id % (len(PUBLIC_V4_NETS) * HOSTS_PER_PUBLIC_NET)
    net = PUBLIC_V4_NETS[index // HOSTS_PER_PUBLIC_NET]
    return _v4(net, 2 + index % HOSTS_PER_PUBLIC_NET, "public")


def private_v4(droplet_id, ip_range):
    """An address inside the droplet's VPC, skipping the network address, the
    gateway (.1) and the broadcast address; consecutive ids get distinct
    addresses until the range wraps around."""
    net = ipaddress.ip_network(ip_range)
    return _v4(net, 2 + droplet_id % (net.num_addresses - 3), "private")


def public_v6(droplet_id):
    base = PUBLIC_V6_NET.network_address
    return {"ip_address": str(base + 2 + droplet_id), "netmask": 64,
            "gateway": str(base + 1), "type": "public"}


# VPC ranges the sandbox picks itself: each region's default VPC is a /20
# inside 10.16.0.0/12, and a VPC created without an ip_range gets a free /20
# from 10.100.0.0/14. Both stay clear of 172.16.0.0/12, where the product
# allocates tenant VPCs, so its choices never collide with ours.
DEFAULT_VPC_NET = ipaddress.ip_network("10.16.0.0/12")
AUTO_VPC_NET = ipaddress.ip_network("10.100.0.0/14")
AUTO_VPC_PREFIX = 20
RFC1918_NETS = tuple(ipaddress.ip_network(net) for net in
                     ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
VPC_PREFIXES = range(16, 29)  # /16 (largest) to /28 (smallest), as DigitalOcean allows


def default_vpc_uuid(region):
    # Stable per region, like the account's default VPC on DigitalOcean.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cloudprovisioner-sandbox:vpc:{region}"))


def default_vpc_range(region):
    """The region's default VPC: the n-th /20 of DEFAULT_VPC_NET, n its catalog position."""
    size = 2 ** (32 - AUTO_VPC_PREFIX)
    start = DEFAULT_VPC_NET.network_address + list(REGION_NAMES).index(region) * size
    return ipaddress.ip_network(f"{start}/{AUTO_VPC_PREFIX}")


DEFAULT_VPC_IDS = {default_vpc_uuid(region): region for region in REGION_NAMES}
