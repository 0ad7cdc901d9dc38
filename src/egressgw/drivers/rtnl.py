"""Typed rtnetlink verbs for the objects egressgw keeps: links, neighbours, FDB entries,
rules, routes and nexthop objects, in one network namespace, over pyroute2.

Holds: `Rtnl`, one netlink session with a verb per kernel operation (messages are built and
parsed in drivers.rtnlmsg). Each verb does exactly one request; reads return plain values.

Must not: decide anything (drivers.netlink diffs and orders), or create a namespace by
accident (sockets open with flags=0: a missing namespace is an error, not a new one).
"""

from __future__ import annotations

import errno
import socket
from ipaddress import IPv4Address
from types import TracebackType
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
)
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_DELROUTE,
    RTM_DELRULE,
    RTM_GETROUTE,
    RTM_GETRULE,
    RTM_NEWROUTE,
    RTM_NEWRULE,
)
from pyroute2.netlink.rtnl.fibmsg import fibmsg

from egressgw.drivers import rtnlmsg
from egressgw.drivers.rtnlmsg import KernelRoute, Link, Nexthop
from egressgw.plan.ownership import RT_PROTO
from egressgw.plan.routing import Rule, VxlanLink

NUD_PERMANENT = 0x80
NTF_SELF = 0x02
WRITE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
DELETE = NLM_F_REQUEST | NLM_F_ACK
DUMP = NLM_F_REQUEST | NLM_F_DUMP
GONE = (errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL)


class Rtnl:
    """One rtnetlink session in `netns` (None: the caller's own namespace)."""

    def __init__(self, netns: str | None) -> None:
        self.ipr: Any = IPRoute(netns=netns, flags=0) if netns else IPRoute()
        self.ipr.status["nlm_generator"] = False  # pyroute2 0.9.7 forgets to set it
        self.ipr.asyncore.marshal.msg_map[rtnlmsg.RTM_NEWNEXTHOP] = rtnlmsg.nhmsg
        self.ipr.asyncore.marshal.msg_map[RTM_NEWROUTE] = rtnlmsg.rtmsg_nh

    def close(self) -> None:
        self.ipr.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _request(self, msg: Any, kind: int, flags: int) -> list[Any]:
        return list(self.ipr.nlm_request(msg, kind, flags))

    def _delete(self, msg: Any, kind: int) -> None:
        try:
            self._request(msg, kind, DELETE)
        except NetlinkError as err:
            if err.code not in GONE:
                raise

    # ------------------------------------------------------------ links

    def links(self) -> dict[str, Link]:
        return {link.name: link for link in map(rtnlmsg.parse_link, self.ipr.get_links())}

    def add_vxlan(self, link: VxlanLink, underlay_index: int | None) -> None:
        extra = {"vxlan_local": str(link.local)} if link.local is not None else {}
        if underlay_index:
            extra["vxlan_link"] = underlay_index  # type: ignore[assignment]
        self.ipr.link(
            "add", ifname=link.name, kind="vxlan", vxlan_id=link.vni, vxlan_port=link.port,
            vxlan_learning=0, address=link.mac, mtu=link.mtu, **extra,
        )  # fmt: skip

    def set_link(self, index: int, mtu: int, mac: str) -> None:
        self.ipr.link("set", index=index, mtu=mtu, address=mac, state="up")

    def del_link(self, index: int) -> None:
        try:
            self.ipr.link("del", index=index)
        except NetlinkError as err:
            if err.code not in GONE:
                raise

    # ------------------------------------------------------------ neighbours and FDB

    def neighbours(self, index: int) -> dict[IPv4Address, str]:
        """Permanent IPv4 neighbours on a device: address -> MAC."""
        found = {}
        for msg in self.ipr.neigh("dump", ifindex=index, family=socket.AF_INET):
            if msg["ifindex"] == index and msg["state"] & NUD_PERMANENT and msg.get("NDA_LLADDR"):
                found[IPv4Address(msg.get("NDA_DST"))] = str(msg.get("NDA_LLADDR"))
        return found

    def set_neighbour(self, index: int, address: IPv4Address, mac: str) -> None:
        self.ipr.neigh("replace", dst=str(address), lladdr=mac, ifindex=index, state=NUD_PERMANENT)

    def del_neighbour(self, index: int, address: IPv4Address) -> None:
        try:
            self.ipr.neigh("del", dst=str(address), ifindex=index)
        except NetlinkError as err:
            if err.code not in GONE:
                raise

    def fdb(self, index: int) -> set[tuple[str, IPv4Address]]:
        """A vxlan device's remote entries: (MAC, VTEP IP)."""
        found = set()
        for msg in self.ipr.fdb("dump"):
            if msg["ifindex"] == index and msg.get("NDA_DST"):
                found.add((str(msg.get("NDA_LLADDR")), IPv4Address(msg.get("NDA_DST"))))
        return found

    def add_fdb(self, index: int, mac: str, destination: IPv4Address) -> None:
        self.ipr.fdb(
            "append",
            ifindex=index,
            lladdr=mac,
            dst=str(destination),
            state=NUD_PERMANENT,
            flags=NTF_SELF,
        )

    def del_fdb(self, index: int, mac: str, destination: IPv4Address) -> None:
        try:
            self.ipr.fdb("del", ifindex=index, lladdr=mac, dst=str(destination), flags=NTF_SELF)
        except NetlinkError as err:
            if err.code not in GONE:
                raise

    # ------------------------------------------------------------ rules

    def rules(self) -> list[Rule]:
        """Our IPv4 rules (protocol RT_PROTO)."""
        msg = fibmsg()
        msg["family"] = socket.AF_INET
        found = self._request(msg, RTM_GETRULE, DUMP)
        return [rtnlmsg.parse_rule(r) for r in found if r.get("FRA_PROTOCOL") == RT_PROTO]

    def add_rule(self, rule: Rule) -> None:
        self._request(rtnlmsg.rule_msg(rule), RTM_NEWRULE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE)

    def del_rule(self, rule: Rule) -> None:
        self._delete(rtnlmsg.rule_msg(rule), RTM_DELRULE)

    # ------------------------------------------------------------ nexthop objects

    def nexthops(self) -> list[Nexthop]:
        """Every nexthop object in the namespace (ownership is the caller's test)."""
        return [
            rtnlmsg.parse_nexthop(nh)
            for nh in self._request(rtnlmsg.nhmsg(), rtnlmsg.RTM_GETNEXTHOP, DUMP)
        ]

    def set_nexthop(self, nhid: int, gateway: IPv4Address, oif: int, onlink: bool) -> None:
        self._request(
            rtnlmsg.nexthop_msg(nhid, gateway, oif, onlink), rtnlmsg.RTM_NEWNEXTHOP, WRITE
        )

    def set_group(self, nhid: int, members: tuple[int, ...], buckets: int, idle: int) -> None:
        """Create or replace a resilient group; on replace the kernel keeps the buckets of
        surviving members where they are."""
        msg = rtnlmsg.group_msg(nhid, members, buckets, idle)
        self._request(msg, rtnlmsg.RTM_NEWNEXTHOP, WRITE)

    def del_nexthop(self, nhid: int) -> None:
        msg = rtnlmsg.nhmsg()
        msg["attrs"] = [("NHA_ID", nhid)]
        self._delete(msg, rtnlmsg.RTM_DELNEXTHOP)

    # ------------------------------------------------------------ routes

    def routes(self) -> list[KernelRoute]:
        """Our IPv4 routes (protocol RT_PROTO) in every table."""
        msg = rtnlmsg.rtmsg_nh()
        msg["family"] = socket.AF_INET
        found = self._request(msg, RTM_GETROUTE, DUMP)
        return [rtnlmsg.parse_route(r) for r in found if r["proto"] == RT_PROTO]

    def set_route(self, route: KernelRoute) -> None:
        self._request(rtnlmsg.route_msg(route), RTM_NEWROUTE, WRITE)

    def del_route(self, route: KernelRoute) -> None:
        self._delete(rtnlmsg.route_msg(route), RTM_DELROUTE)

    def route_get(self, destination: IPv4Address) -> tuple[int, IPv4Address | None] | None:
        """How normal routing reaches `destination`: (oif, gateway or None if on-link)."""
        try:
            (msg,) = self.ipr.route("get", dst=str(destination))
        except NetlinkError:
            return None
        if msg["type"] != 1:
            return None
        gateway = msg.get("RTA_GATEWAY")
        return int(msg.get("RTA_OIF")), IPv4Address(gateway) if gateway else None
