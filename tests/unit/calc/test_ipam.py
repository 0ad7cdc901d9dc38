"""IPAM: blocks, affinity, reservations, determinism, and never an address twice."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egressgw.calc import ipam

POOL = ipam.Pool("p", IPv4Network("10.99.0.0/29"), 31)


def test_blocks_are_affine_to_nodes() -> None:
    a1, s = ipam.assign(ipam.IpamState(), "h1", "node-a", [POOL])
    b1, s = ipam.assign(s, "h2", "node-b", [POOL])
    a2, s = ipam.assign(s, "h3", "node-a", [POOL])
    assert (a1, a2, b1) == (IPv4Address("10.99.0.0"), IPv4Address("10.99.0.1"), IPv4Address("10.99.0.2"))
    assert s.affinities == {ip_network("10.99.0.0/31"): "node-a", ip_network("10.99.0.2/31"): "node-b"}


def test_assign_is_idempotent_per_handle() -> None:
    a, s = ipam.assign(ipam.IpamState(), "h", "n", [POOL])
    again, s2 = ipam.assign(s, "h", "n", [POOL])
    assert a == again and s2 is s


def test_reservations_are_never_handed_out() -> None:
    reserved = [IPv4Network("10.99.0.0/30")]
    a, _ = ipam.assign(ipam.IpamState(), "h", "n", [POOL], reserved)
    assert a == IPv4Address("10.99.0.4")


def test_exhaustion_names_the_pools() -> None:
    s = ipam.IpamState()
    for i in range(8):
        _, s = ipam.assign(s, f"h{i}", f"n{i % 3}", [POOL])
    with pytest.raises(ipam.IpamExhausted, match="p"):
        ipam.assign(s, "h9", "n0", [POOL])


def test_release_frees_address_and_empty_block() -> None:
    a, s = ipam.assign(ipam.IpamState(), "h", "n", [POOL])
    s = ipam.release(s, "h")
    assert not s.allocations and not s.affinities
    again, _ = ipam.assign(s, "other", "m", [POOL])
    assert again == a


def test_pools_are_tried_in_order() -> None:
    second = ipam.Pool("q", IPv4Network("10.98.0.0/30"), 32)
    full = ipam.Pool("full", IPv4Network("10.97.0.0/32"), 32)
    _, s = ipam.assign(ipam.IpamState(), "x", "n", [full])
    a, _ = ipam.assign(s, "h", "n", [full, second])
    assert a == IPv4Address("10.98.0.0")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), min_size=1, max_size=40))
def test_never_twice_and_deterministic(ops: list[tuple[str, bool]]) -> None:
    pools = [POOL, ipam.Pool("q", IPv4Network("10.98.0.0/28"), 30)]
    results = []
    for _ in range(2):
        s = ipam.IpamState()
        trace = []
        for i, (node, release_one) in enumerate(ops):
            if release_one and s.allocations:
                s = ipam.release(s, sorted(s.allocations.values())[0])
            try:
                addr, s = ipam.assign(s, f"h{i}", node, pools)
            except ipam.IpamExhausted:
                addr = None
            trace.append(addr)
            assert len(set(s.allocations)) == len(s.allocations.values())
            assert len(set(s.allocations.values())) == len(s.allocations)
        results.append(trace)
    assert results[0] == results[1]
