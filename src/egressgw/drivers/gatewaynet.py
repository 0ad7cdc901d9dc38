"""A gateway pod's own networking, applied inside its namespace: vxlan0 (MAC from its IP),
return routes to client nodes over the tunnel, SNAT to the egress IP, MSS clamp, and the
forwarding sysctls (reference §6.3, done declaratively and idempotently).

Everything here is the pod's: the nft table `inet egressgw_gw`, vxlan0 with its
neighbour/FDB entries, and main-table routes with protocol RT_PROTO. The pod's own
addresses, its eth0 and its default route are the CNI's and are never touched.

Must not: run outside the gateway pod's namespace (it would SNAT the node), or flush on exit.
"""

from __future__ import annotations

from typing import Protocol

from egressgw.drivers.netlink import GATEWAY_SCOPE, reconcile
from egressgw.drivers.nftables import Nft, NftError
from egressgw.drivers.rtnl import Rtnl
from egressgw.plan import nft as render
from egressgw.plan import ownership
from egressgw.plan.dataplane import ApplyStats, GatewayPlan
from egressgw.plan.routing import RoutingState, gateway_routing


class GatewayNetDriver(Protocol):
    """A gateway pod's dataplane."""

    def apply(self, plan: GatewayPlan) -> ApplyStats: ...


class GatewayNet:
    """GatewayNetDriver inside `netns` (None: this process's namespace, i.e. in the pod)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self.nft = Nft(netns)

    def apply(self, plan: GatewayPlan) -> ApplyStats:
        """Routing first (the tunnel must exist before SNAT sends replies into it)."""
        with Rtnl(self.netns) as rt:
            stats = reconcile(rt, self.netns, gateway_routing(plan), GATEWAY_SCOPE)
        return stats + self._apply_nft(plan)

    def _apply_nft(self, plan: GatewayPlan) -> ApplyStats:
        try:
            listing = self.nft.list_table(ownership.GATEWAY_NFT_TABLE)
            fingerprint = None if listing is None else render.parse_fingerprint(listing)
            doc = render.reconcile_gateway(fingerprint, plan)
            self.nft.run(doc)
        except NftError as err:
            return ApplyStats(errors=(f"nft: {err}",))
        return ApplyStats(changed=1) if doc["nftables"] else ApplyStats()

    def remove(self) -> ApplyStats:
        """Delete everything of ours (explicit teardown; never called on exit)."""
        with Rtnl(self.netns) as rt:
            stats = reconcile(rt, self.netns, RoutingState(), GATEWAY_SCOPE)
        self.nft.run(render.delete_table(ownership.GATEWAY_NFT_TABLE))
        return stats
