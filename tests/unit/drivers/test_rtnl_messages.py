"""The nexthop-aware netlink messages encode what the kernel needs (no kernel involved)."""

from __future__ import annotations

import struct

from pyroute2.netlink.rtnl.rtmsg import rtmsg

from egressgw.drivers.rtnlmsg import nhmsg, rtmsg_nh


def attr_types(data: bytes, header: int) -> list[int]:
    types, at = [], 16 + header
    while at < len(data):
        length, kind = struct.unpack_from("HH", data, at)
        types.append(kind & 0x3FFF)
        at += (length + 3) & ~3
    return types


def test_route_message_carries_rta_nh_id_even_after_pyroute2_compiled_rtmsg() -> None:
    rtmsg().encode()  # pyroute2 compiles rtmsg's attribute table here...
    msg = rtmsg_nh()  # ...which a subclass would otherwise inherit, silently dropping NH_ID
    msg["family"], msg["attrs"] = 2, [("RTA_TABLE", 1000), ("RTA_NH_ID", 0x45470001)]
    msg.encode()
    assert 30 in attr_types(msg.data, header=12)


def test_resilient_group_message() -> None:
    msg = nhmsg()
    msg["attrs"] = [("NHA_ID", 7), ("NHA_GROUP", struct.pack("=IBBH", 5, 0, 0, 0)), ("NHA_GROUP_TYPE", 1),
                    ("NHA_RES_GROUP", {"attrs": [("NHA_RES_GROUP_BUCKETS", 128)]})]  # fmt: skip
    msg.encode()
    assert attr_types(msg.data, header=8) == [1, 2, 3, 12]
    nested = msg.data.index(struct.pack("H", 12 | 0x8000))  # NLA_F_NESTED set
    assert nested > 0
