"""The drivers' in-memory fakes honour the same contract as the real drivers."""

from __future__ import annotations

from ipaddress import IPv4Address

from egressgw.drivers.fakes import FakeGatewayNet, FakeNftables, FakeRouting
from tests.unit.plan import nft_examples as ex


def test_fake_nftables_counts_and_records() -> None:
    fake = FakeNftables()
    assert fake.apply(ex.node_a()).added == 5  # 3 pods + 2 slots
    assert fake.apply(ex.node_a()).changes == 0
    stats = fake.apply(ex.node_b())
    assert (stats.added, stats.removed) == (3, 3)
    assert len(fake.transactions) == 2
    fake.fail_next = "boom"
    assert fake.apply(ex.node_a()).errors == ("boom",)
    assert fake.read() is not None and fake.read().slots == {0, 5}  # type: ignore[union-attr]


def test_fake_routing_changes_nothing_on_reapply() -> None:
    fake = FakeRouting()
    assert fake.apply(ex.node_a()).added > 0
    assert fake.apply(ex.node_a()).changes == 0
    assert fake.apply(ex.node_b()).changes > 0
    assert fake.link_mtu("eth0") == 1500
    fake.remove()
    assert fake.read().rules == frozenset()


def test_fake_routing_resolves_native_gateways_from_its_table() -> None:
    fake = FakeRouting(native_devices={IPv4Address("172.18.0.50"): "eth0"})
    fake.apply(ex.node_native())
    assert any(r.hops for r in fake.read().routes)


def test_fake_gateway_net() -> None:
    fake = FakeGatewayNet()
    assert fake.apply(ex.gateway()).changes > 0
    assert fake.apply(ex.gateway()).changes == 0
