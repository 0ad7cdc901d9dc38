"""Stateful in-memory stand-ins for the dataplane drivers, for tests of whoever calls them
(the agent, the gateway process): `FakeNftables` (NftDriver), `FakeRouting`
(RoutingDriver) and `FakeGatewayNet` (GatewayNetDriver).

They keep what the kernel would hold, using the same pure translations as the real drivers
(plan.nft, plan.routing), count changes the same way (an unchanged plan changes nothing),
record every nft transaction, and can be told to fail their next apply, in which case they
change nothing and report the error, as the real ones do.

Must not: do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from ipaddress import IPv4Address
from typing import Any

from egressgw.plan import nft as render
from egressgw.plan.dataplane import ApplyStats, GatewayPlan, NodePlan, RoutingSettings
from egressgw.plan.nft import Json, NftState
from egressgw.plan.routing import RoutingState, gateway_routing, node_routing


def _injected(failure: str | None) -> ApplyStats | None:
    return None if failure is None else ApplyStats(errors=(failure,))


class FakeNftables:
    """NftDriver: the node table as the NftState a plan leaves."""

    def __init__(self) -> None:
        self.state: NftState | None = None
        self.transactions: list[Json] = []  # every non-empty document "committed"
        self.fail_next: str | None = None

    def apply(self, plan: NodePlan) -> ApplyStats:
        failed, self.fail_next = _injected(self.fail_next), None
        if failed is not None:
            return failed
        wanted = render.node_state(plan)
        doc = render.reconcile_node(self.state, plan, wanted)
        if doc["nftables"]:
            self.transactions.append(doc)
        before, self.state = self.state, wanted
        return render.changes(before, wanted)

    def read(self, routing: RoutingSettings = RoutingSettings()) -> NftState | None:  # noqa: B008
        return self.state

    def invalidate(self) -> None:
        """Nothing to forget: the fake's picture is always right."""

    def remove(self) -> None:
        self.state = None


def routing_stats(old: RoutingState, new: RoutingState) -> ApplyStats:
    """What it takes to go from `old` to `new`, counted as the netlink driver counts."""
    added = removed = changed = 0
    for f in fields(RoutingState):
        if f.name in ("link", "routes"):
            continue
        before: Any = getattr(old, f.name)
        after: Any = getattr(new, f.name)
        added, removed = added + len(after - before), removed + len(before - after)
    routes_old = {r.key: r for r in old.routes}
    routes_new = {r.key: r for r in new.routes}
    added += len(routes_new.keys() - routes_old.keys())
    removed += len(routes_old.keys() - routes_new.keys())
    changed += sum(routes_old[k] != routes_new[k] for k in routes_old.keys() & routes_new.keys())
    if old.link != new.link:
        added, removed = added + (old.link is None), removed + (new.link is None)
        changed += old.link is not None and new.link is not None
    return ApplyStats(added, removed, changed)


class FakeRouting:
    """RoutingDriver: the node's routing objects as the RoutingState a plan stands for."""

    def __init__(
        self,
        native_devices: Mapping[IPv4Address, str] | None = None,  # on-link gateways (native)
        mtus: Mapping[str, int] | None = None,
    ) -> None:
        self.native_devices = dict(native_devices or {})
        self.mtus = dict(mtus or {"eth0": 1500})
        self.state = RoutingState()
        self.fail_next: str | None = None

    def apply(self, plan: NodePlan) -> ApplyStats:
        failed, self.fail_next = _injected(self.fail_next), None
        if failed is not None:
            return failed
        desired = node_routing(plan, self.native_devices)
        stats, self.state = routing_stats(self.state, desired), desired
        return stats

    def remove(self) -> ApplyStats:
        stats, self.state = routing_stats(self.state, RoutingState()), RoutingState()
        return stats

    def read(self) -> RoutingState:
        return self.state

    def link_mtu(self, name: str) -> int | None:
        return self.mtus.get(name)


class FakeGatewayNet:
    """GatewayNetDriver: the pod's routing objects and the fingerprint of its nft table."""

    def __init__(self) -> None:
        self.state = RoutingState()
        self.nft_fingerprint: str | None = None
        self.fail_next: str | None = None

    def apply(self, plan: GatewayPlan) -> ApplyStats:
        failed, self.fail_next = _injected(self.fail_next), None
        if failed is not None:
            return failed
        desired = gateway_routing(plan)
        stats, self.state = routing_stats(self.state, desired), desired
        fingerprint = render.gateway_fingerprint(plan)
        if fingerprint != self.nft_fingerprint:
            self.nft_fingerprint = fingerprint
            stats += ApplyStats(changed=1)
        return stats
