"""The node agent's BGP half: keep this node's BIRD equal to the cluster's BGP resources.

The node originates its pod blocks (its Node's podCIDRs inside a pool) and the egress IPs
of the gateway pods it hosts; whom it peers with and what it exports come from
BGPConfiguration, BGPPeer, BGPFilter and IPPool (calc.bgp). BIRD is reconfigured, never
restarted, so sessions survive every change; the egress dataplane never depends on BIRD.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Network
from pathlib import Path

from egressgw.calc import bgp as calc_bgp
from egressgw.calc.gateways import GATEWAY_ANNOTATION
from egressgw.calc.nodeplan import pod_cidrs
from egressgw.drivers.bird import BgpSpeaker, BirdDaemon, BirdError
from egressgw.model.resourceset import ResourceSet

log = logging.getLogger("egressgw.agent.bgp")


class BgpAgent:
    """Drives one node's BGP speaker."""

    def __init__(self, node: str, speaker: BgpSpeaker) -> None:
        self.node = node
        self.speaker = speaker
        self.started = False

    @classmethod
    def real(cls, node: str, netns: str | None, state_dir: Path) -> BgpAgent:
        """A BgpAgent running BIRD in `netns` with its files in `state_dir`."""
        return cls(node, BirdDaemon(netns, state_dir))

    def apply(self, resources: ResourceSet) -> None:
        """Compute and apply this node's BGP plan; errors are logged, never raised."""
        me = next((n for n in resources.nodes if n.metadata.name == self.node), None)
        if me is None:
            return
        pools = [p for p in resources.ip_pools if isinstance(p.spec.cidr, IPv4Network)]
        blocks = [
            c for c in pod_cidrs(me)
            if any(c.subnet_of(p.spec.cidr) for p in pools if isinstance(p.spec.cidr, IPv4Network))
        ]
        egress = sorted(
            p.ip for p in resources.pods
            if p.ip is not None and p.spec is not None and p.spec.node_name == self.node
            and GATEWAY_ANNOTATION in p.metadata.annotations
        )
        try:
            plan = calc_bgp.node_bgp_plan(
                me, list(resources.nodes), resources.bgp_configuration, list(resources.bgp_peers),
                dict(resources.bgp_filters), pools, blocks, egress,
            )
            for note in plan.notes:
                log.info("bgp: %s", note)
            if isinstance(self.speaker, BirdDaemon) and not self.started:
                self.speaker.start(plan)  # adopts a BIRD already serving our socket
            else:
                self.speaker.apply(plan)
            self.started = True
        except (calc_bgp.BgpPlanError, BirdError, OSError) as err:
            log.error("bgp: %s", err)
