"""The rtnetlink messages and values behind drivers.rtnl: what pyroute2 0.9 lacks (`nhmsg`
for nexthop objects, `rtmsg_nh` that speaks RTA_NH_ID), and the translation between kernel
messages and our observed values (`Link`, `Nexthop`, `KernelRoute`, plan.routing.Rule).

Must not: do I/O (building and parsing messages only).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from pyroute2.netlink import NLA_F_NESTED, nla, nlmsg
from pyroute2.netlink.rtnl.fibmsg import FR_ACT_GOTO, FR_ACT_NOP, FR_ACT_TO_TBL, fibmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from egressgw.plan.ownership import RT_PROTO
from egressgw.plan.routing import RouteType, Rule, RuleAction, VxlanLink

RTM_NEWNEXTHOP, RTM_DELNEXTHOP, RTM_GETNEXTHOP = 104, 105, 106
NEXTHOP_GRP_TYPE_RES = 1
RTNH_F_ONLINK = 4
IFF_UP = 0x1
USER_HZ = 100  # nexthop timers travel in clock_t
COMPAT_TABLE = 252  # rtm_table when the real id is in RTA_TABLE
ROUTE_TYPES = {RouteType.UNICAST: 1, RouteType.UNREACHABLE: 7, RouteType.THROW: 9}
RULE_ACTIONS = {
    RuleAction.LOOKUP: FR_ACT_TO_TBL,
    RuleAction.GOTO: FR_ACT_GOTO,
    RuleAction.NOP: FR_ACT_NOP,
}


class nhmsg(nlmsg):  # type: ignore[misc]  # kernel name; pyroute2 is untyped
    """struct nhmsg { u8 family, scope, protocol, resvd; u32 flags; } + NHA_* attributes."""

    prefix = "NHA_"
    fields = (("family", "B"), ("scope", "B"), ("protocol", "B"), ("resvd", "B"), ("flags", "I"))
    nla_map = (
        (0, "NHA_UNSPEC", "none"),
        (1, "NHA_ID", "uint32"),
        (2, "NHA_GROUP", "cdata"),  # struct nexthop_grp { u32 id; u8 weight, r1; u16 r2; }[]
        (3, "NHA_GROUP_TYPE", "uint16"),
        (4, "NHA_BLACKHOLE", "flag"),
        (5, "NHA_OIF", "uint32"),
        (6, "NHA_GATEWAY", "ip4addr"),
        (7, "NHA_ENCAP_TYPE", "uint16"),
        (8, "NHA_ENCAP", "cdata"),
        (9, "NHA_GROUPS", "flag"),
        (10, "NHA_MASTER", "uint32"),
        (11, "NHA_FDB", "flag"),
        (12, "NHA_RES_GROUP", "res_group"),
        (13, "NHA_RES_BUCKET", "cdata"),
    )

    class res_group(nla):  # type: ignore[misc]
        prefix = "NHA_RES_GROUP_"
        nla_flags = NLA_F_NESTED  # strict validation insists on it
        nla_map = (
            (0, "NHA_RES_GROUP_PAD", "none"),
            (1, "NHA_RES_GROUP_BUCKETS", "uint16"),
            (2, "NHA_RES_GROUP_IDLE_TIMER", "uint32"),
            (3, "NHA_RES_GROUP_UNBALANCED_TIMER", "uint32"),
            (4, "NHA_RES_GROUP_UNBALANCED_TIME", "uint64"),
        )


class rtmsg_nh(rtmsg):  # type: ignore[misc]
    """rtmsg that also knows RTA_NH_ID (30), so routes name their nexthop object."""

    # pyroute2 compiles nla_map once per class and looks the flag up through inheritance:
    # once rtmsg is compiled, a subclass would silently use rtmsg's map and drop RTA_NH_ID.
    _nlmsg_base__compiled_nla = False

    nla_map = (
        *((i, name, kind) for i, (name, kind) in enumerate(rtmsg.nla_map)),
        (24, "RTA_PAD", "hex"),
        (25, "RTA_UID", "uint32"),
        (26, "RTA_TTL_PROPAGATE", "uint8"),
        (27, "RTA_IP_PROTO", "uint8"),
        (28, "RTA_SPORT", "uint16"),
        (29, "RTA_DPORT", "uint16"),
        (30, "RTA_NH_ID", "uint32"),
    )


@dataclass(frozen=True, slots=True)
class Link:
    """An interface as the kernel shows it; `vxlan` only for vxlan devices."""

    index: int
    name: str
    mtu: int
    mac: str
    up: bool
    kind: str
    vxlan: VxlanLink | None = None
    underlay_index: int = 0
    learning: bool = False


@dataclass(frozen=True, slots=True)
class Nexthop:
    """A nexthop object: a member (gateway + oif) or a group (member ids)."""

    id: int
    protocol: int
    gateway: IPv4Address | None = None
    oif: int = 0
    onlink: bool = False
    group: tuple[int, ...] = ()
    resilient: tuple[int, int] | None = None  # (buckets, idle timer in seconds)


@dataclass(frozen=True, slots=True)
class KernelRoute:
    """One of our routes as the kernel shows it."""

    table: int
    destination: IPv4Network
    metric: int
    type: RouteType | None
    nhid: int = 0  # a nexthop object (node routes) ...
    gateway: IPv4Address | None = None  # ... or one plain next hop (gateway routes)
    oif: int = 0
    onlink: bool = False

    @property
    def key(self) -> tuple[int, IPv4Network, int]:
        return (self.table, self.destination, self.metric)


def nh_group(members: tuple[int, ...]) -> bytes:
    return b"".join(struct.pack("=IBBH", member, 0, 0, 0) for member in members)


def parse_group(data: bytes | None) -> tuple[int, ...]:
    data = data or b""
    return tuple(struct.unpack_from("=I", data, at)[0] for at in range(0, len(data), 8))


def group_msg(nhid: int, members: tuple[int, ...], buckets: int, idle: int) -> Any:
    """A resilient group of `members`; `idle` in seconds."""
    res = {
        "attrs": [
            ("NHA_RES_GROUP_BUCKETS", buckets),
            ("NHA_RES_GROUP_IDLE_TIMER", idle * USER_HZ),
        ]
    }
    msg = nhmsg()
    msg["protocol"] = RT_PROTO
    msg["attrs"] = [
        ("NHA_ID", nhid),
        ("NHA_GROUP", nh_group(members)),
        ("NHA_GROUP_TYPE", NEXTHOP_GRP_TYPE_RES),
        ("NHA_RES_GROUP", res),
    ]
    return msg


def nexthop_msg(nhid: int, gateway: IPv4Address, oif: int, onlink: bool) -> Any:
    msg = nhmsg()
    msg["family"], msg["protocol"] = socket.AF_INET, RT_PROTO
    msg["flags"] = RTNH_F_ONLINK if onlink else 0
    msg["attrs"] = [("NHA_ID", nhid), ("NHA_OIF", oif), ("NHA_GATEWAY", str(gateway))]
    return msg


def parse_link(msg: Any) -> Link:
    kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or ""
    name, mtu, mac = msg.get("IFLA_IFNAME"), msg.get("IFLA_MTU"), msg.get("IFLA_ADDRESS") or ""
    if kind != "vxlan":
        return Link(msg["index"], name, mtu, mac, bool(msg["flags"] & IFF_UP), kind)
    data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
    local = data.get("IFLA_VXLAN_LOCAL")
    vxlan = VxlanLink(
        name, data.get("IFLA_VXLAN_ID"), data.get("IFLA_VXLAN_PORT"), mtu, mac,
        IPv4Address(local) if local else None, None,
    )  # fmt: skip
    return Link(
        msg["index"], name, mtu, mac, bool(msg["flags"] & IFF_UP), kind, vxlan,
        data.get("IFLA_VXLAN_LINK") or 0, bool(data.get("IFLA_VXLAN_LEARNING")),
    )  # fmt: skip


def rule_msg(rule: Rule) -> Any:
    msg = fibmsg()
    msg["family"] = socket.AF_INET
    msg["action"] = RULE_ACTIONS[rule.action]
    msg["table"] = rule.table if rule.table < 256 else COMPAT_TABLE
    attrs = [("FRA_PRIORITY", rule.priority), ("FRA_PROTOCOL", RT_PROTO)]
    if rule.fwmask:
        attrs += [("FRA_FWMARK", rule.fwmark), ("FRA_FWMASK", rule.fwmask)]
    if rule.action is RuleAction.LOOKUP:
        attrs.append(("FRA_TABLE", rule.table))
    if rule.action is RuleAction.GOTO:
        attrs.append(("FRA_GOTO", rule.goto))
    msg["attrs"] = attrs
    return msg


def parse_rule(msg: Any) -> Rule:
    action = {v: k for k, v in RULE_ACTIONS.items()}.get(msg["action"], RuleAction.NOP)
    return Rule(
        priority=msg.get("FRA_PRIORITY") or 0,
        action=action,
        fwmark=msg.get("FRA_FWMARK") or 0,
        fwmask=msg.get("FRA_FWMASK") or 0,
        table=(msg.get("FRA_TABLE") or msg["table"]) if action is RuleAction.LOOKUP else 0,
        goto=msg.get("FRA_GOTO") or 0,
    )


def parse_nexthop(msg: Any) -> Nexthop:
    res = msg.get("NHA_RES_GROUP")
    resilient = None
    if res is not None:
        idle = res.get("NHA_RES_GROUP_IDLE_TIMER") or 0
        resilient = (res.get("NHA_RES_GROUP_BUCKETS") or 0, idle // USER_HZ)
    gateway = msg.get("NHA_GATEWAY")
    return Nexthop(
        id=msg.get("NHA_ID"),
        protocol=msg["protocol"],
        gateway=IPv4Address(gateway) if gateway else None,
        oif=msg.get("NHA_OIF") or 0,
        onlink=bool(msg["flags"] & RTNH_F_ONLINK),
        group=parse_group(msg.get("NHA_GROUP")),
        resilient=resilient,
    )


def route_msg(route: KernelRoute) -> Any:
    msg = rtmsg_nh()
    msg["family"] = socket.AF_INET
    msg["dst_len"] = route.destination.prefixlen
    msg["table"] = route.table if route.table < 256 else COMPAT_TABLE
    msg["proto"] = RT_PROTO
    msg["type"] = ROUTE_TYPES[route.type or RouteType.UNICAST]
    attrs: list[tuple[str, Any]] = [("RTA_TABLE", route.table)]
    if route.destination.prefixlen:
        attrs.append(("RTA_DST", str(route.destination.network_address)))
    if route.metric:
        attrs.append(("RTA_PRIORITY", route.metric))
    if route.nhid:
        attrs.append(("RTA_NH_ID", route.nhid))
    if route.gateway is not None:
        attrs += [("RTA_GATEWAY", str(route.gateway)), ("RTA_OIF", route.oif)]
        msg["flags"] = RTNH_F_ONLINK if route.onlink else 0
    msg["attrs"] = attrs
    return msg


def parse_route(msg: Any) -> KernelRoute:
    types = {v: k for k, v in ROUTE_TYPES.items()}
    dst = msg.get("RTA_DST") or "0.0.0.0"
    nhid = msg.get("RTA_NH_ID") or 0
    gateway = None if nhid else msg.get("RTA_GATEWAY")  # with nhid the kernel echoes the hop
    return KernelRoute(
        table=msg.get("RTA_TABLE") or msg["table"],
        destination=IPv4Network(f"{dst}/{msg['dst_len']}"),
        metric=msg.get("RTA_PRIORITY") or 0,
        type=types.get(msg["type"]),
        nhid=nhid,
        gateway=IPv4Address(gateway) if gateway else None,
        oif=(msg.get("RTA_OIF") or 0) if gateway else 0,
        onlink=bool(gateway) and bool(msg["flags"] & RTNH_F_ONLINK),
    )
