"""The node agent's BGP half: keep this node's BIRD equal to the cluster's BGP resources, and
keep it running.

The node originates its pod blocks (its Node's podCIDRs inside a pool) and the egress IPs
of the gateway pods it hosts; whom it peers with and what it exports come from
BGPConfiguration, BGPPeer, BGPFilter and IPPool (calc.bgp). BIRD is reconfigured, never
restarted, so sessions survive every change; the egress dataplane never depends on BIRD.

Once BIRD has started, a watchdog thread waits for it to die (the driver wakes it the moment
the process exits, and checks the control socket every second) and starts it again with the
newest plan, in graceful-restart recovery so its peers keep its routes meanwhile. A BIRD that
keeps dying soon after each start is restarted after growing delays, never in a tight loop.
The agent leaves BIRD running when it exits (a new agent adopts it), as before.
"""

from __future__ import annotations

import logging
import threading
import time
from ipaddress import IPv4Network
from pathlib import Path

from egressgw.calc import bgp as calc_bgp
from egressgw.calc.gateways import GATEWAY_ANNOTATION
from egressgw.calc.nodeplan import pod_cidrs
from egressgw.drivers.bird import BgpSpeaker, BirdDaemon, BirdError
from egressgw.model.resourceset import ResourceSet
from egressgw.plan.bgp import NodeBgpPlan

log = logging.getLogger("egressgw.agent.bgp")

WATCH_SECONDS = 1.0  # the longest a vanished control socket goes unnoticed
STABLE_SECONDS = 10.0  # a BIRD that ran this long before dying is restarted at once
MAX_DELAY_SECONDS = 30.0


def restart_delay(short_runs: int) -> float:
    """Seconds to wait before restarting a BIRD that died after `short_runs` consecutive runs
    shorter than STABLE_SECONDS: 0 after a good run, then 1, 2, 4, ... up to 30."""
    if short_runs <= 0:
        return 0.0
    return min(MAX_DELAY_SECONDS, 2.0 ** (short_runs - 1))


class BgpAgent:
    """Drives one node's BGP speaker and restarts it when it dies."""

    def __init__(self, node: str, speaker: BgpSpeaker) -> None:
        self.node = node
        self.speaker = speaker
        self.started = False
        self.restarts = 0  # successful restarts after a death
        self._plan: NodeBgpPlan | None = None  # the newest plan, what a restart runs
        self._lock = threading.Lock()  # one caller at a time drives the speaker
        self._closing = threading.Event()
        self._watchdog: threading.Thread | None = None

    @classmethod
    def real(cls, node: str, netns: str | None, state_dir: Path) -> BgpAgent:
        """A BgpAgent running BIRD in `netns` with its files in `state_dir`."""
        return cls(node, BirdDaemon(netns, state_dir))

    def apply(self, resources: ResourceSet) -> None:
        """Compute and apply this node's BGP plan; errors are logged, never raised."""
        try:
            plan = self.plan(resources)
        except calc_bgp.BgpPlanError as err:
            log.error("bgp: %s", err)
            return
        if plan is not None:
            self.apply_plan(plan)

    def plan(self, resources: ResourceSet) -> NodeBgpPlan | None:
        """This node's BGP plan (None while the node is not in `resources`)."""
        me = next((n for n in resources.nodes if n.metadata.name == self.node), None)
        if me is None:
            return None
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
        plan = calc_bgp.node_bgp_plan(
            me, list(resources.nodes), resources.bgp_configuration, list(resources.bgp_peers),
            dict(resources.bgp_filters), pools, blocks, egress,
        )
        for note in plan.notes:
            log.info("bgp: %s", note)
        return plan

    def apply_plan(self, plan: NodeBgpPlan) -> None:
        """Start the speaker with `plan` (adopting a BIRD already serving our socket) or
        reconfigure it; once started, watch it. Errors are logged, never raised."""
        with self._lock:
            self._plan = plan
            try:
                if self.started:
                    self.speaker.apply(plan)
                else:
                    self.speaker.start(plan)
                    self.started = True
            except (BirdError, OSError) as err:
                # A dead BIRD fails here too; the watchdog restarts it with this plan.
                log.error("bgp: %s", err)
        if self.started and self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="bird-watchdog", daemon=True)
            self._watchdog.start()

    def close(self) -> None:
        """Stop watching (BIRD keeps running, as when the agent exits)."""
        self._closing.set()
        if self._watchdog is not None:
            self._watchdog.join()
            self._watchdog = None

    # ------------------------------------------------------------ watchdog

    def _watch(self) -> None:
        short_runs, since = 0, float("-inf")  # the first death is restarted at once
        while not self._closing.is_set():
            why = self.speaker.wait_exit(WATCH_SECONDS)
            if why is None or self._closing.is_set():
                continue
            short_runs = short_runs + 1 if time.monotonic() - since < STABLE_SECONDS else 0
            delay = restart_delay(short_runs)
            log.warning("bgp: BIRD is gone (%s); restarting it in %.0f s", why, delay)
            if self._closing.wait(delay):
                return
            since = time.monotonic()
            self._restart()

    def _restart(self) -> None:
        start = time.monotonic()
        with self._lock:
            plan = self._plan
            if plan is None:
                return
            try:
                self.speaker.restart(plan)
            except (BirdError, OSError) as err:
                log.error("bgp: restarting BIRD failed: %s", err)
                return
            self.restarts += 1
        took = (time.monotonic() - start) * 1000
        log.warning("bgp: BIRD restarted in graceful-restart recovery in %.0f ms", took)
