"""What egressgw owns in the kernel, so a restarted process recognises its objects without memory.

Holds: the names, numbers and ranges that mark a kernel object as ours (felix dataplane.md:
"every driver must identify its own resources"), and the two MAC formulas both ends of a
VXLAN tunnel compute independently. Drivers touch nothing outside these and never flush
on exit.

| object             | ours when                                                          |
|--------------------|--------------------------------------------------------------------|
| nft table          | `inet egressgw` (node), `inet egressgw_gw` (gateway pod)           |
| ip rule            | protocol RT_PROTO (priority P: skip + lookups, P+1: nop)           |
| route              | protocol RT_PROTO (tables table_base + slot on nodes, main on gws) |
| nexthop object     | protocol RT_PROTO and id in NEXTHOP_IDS                            |
| vxlan device       | named NODE_VXLAN_DEVICE / GATEWAY_VXLAN_DEVICE, with its neighbours |
|                    | and FDB entries                                                    |

Must not: do I/O or hold per-cluster settings (those are in plan.dataplane.RoutingSettings).
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Final

# Route, rule and nexthop protocol number, "egressgw". Free in /etc/iproute2/rt_protos
# (BIRD uses 12, static 4, kernel 2), so BIRD's kernel protocol never mistakes them for its own.
RT_PROTO: Final = 0x42

NFT_FAMILY: Final = "inet"
NODE_NFT_TABLE: Final = "egressgw"
GATEWAY_NFT_TABLE: Final = "egressgw_gw"

NODE_VXLAN_DEVICE: Final = "egress.egw"
GATEWAY_VXLAN_DEVICE: Final = "vxlan0"
DEFAULT_VXLAN_VNI: Final = 4097  # FelixConfiguration egressIPVXLANVNI
DEFAULT_VXLAN_PORT: Final = 4790  # FelixConfiguration egressIPVXLANPort
VXLAN_OVERHEAD: Final = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
TCP_IP_HEADERS: Final = 40  # MSS = MTU - IPv4 20 - TCP 20

DEFAULT_RULE_PRIORITY: Final = 100  # FelixConfiguration egressIPRoutingRulePriority
DEFAULT_TABLE_BASE: Final = 1000  # above Calico's routeTableRanges default [1, 250]
# Bits 8-13: clear of Calico (0xffff0000), kube-proxy (0x4000, 0x8000) and the AWS VPC
# CNI connmark (0x80). 63 egress configurations per node; configurable.
DEFAULT_MARK_MASK: Final = 0x00003F00

# Nexthop object ids: "EG" in the top half, 65,536 ids. Ids are global to a namespace, so
# the range keeps us clear of anyone else who numbers nexthops from 1.
NEXTHOP_ID_FIRST: Final = 0x45470000
NEXTHOP_ID_LAST: Final = 0x4547FFFF
NEXTHOP_IDS: Final = range(NEXTHOP_ID_FIRST, NEXTHOP_ID_LAST + 1)

# Resilient groups: when a member leaves only its buckets move; a new member takes buckets
# only once they have been idle this long, so live flows keep their gateway.
RESILIENT_BUCKETS: Final = 128
RESILIENT_IDLE_TIMER: Final = 120  # seconds
# A gateway route's fail-closed twin: an `unreachable` route for the same prefix at this
# metric. If the kernel deletes the group (its last member's device went away), traffic is
# dropped instead of leaking out of the table to normal routing.
FALLBACK_METRIC: Final = 0x4247

GATEWAY_MAC_PREFIX: Final = (0xA2, 0x2A)  # reference §6.1.10: a2:2a:<gateway IPv4 octets>
NODE_MAC_PREFIX: Final = (0xA2, 0x2B)  # ours: a2:2b:<node IPv4 octets>


def vtep_mac(prefix: tuple[int, int], address: IPv4Address) -> str:
    """The locally administered MAC `<prefix>:<4 octets of address>`; pure."""
    octets = (*prefix, *address.packed)
    return ":".join(f"{octet:02x}" for octet in octets)


def gateway_mac(address: IPv4Address) -> str:
    """The MAC of a gateway pod's vxlan0, from its IP (both ends compute it)."""
    return vtep_mac(GATEWAY_MAC_PREFIX, address)


def node_mac(address: IPv4Address) -> str:
    """The MAC of a client node's egress.egw, from its node IP (both ends compute it)."""
    return vtep_mac(NODE_MAC_PREFIX, address)
