"""The node agent: keeps one node's egress dataplane equal to what the cluster state says.

Process loop (felix doctrine): change nothing before the first full list from the store;
then on every change compute the plan (pure), apply it with the drivers (declarative:
they read the kernel back and change only the difference), and hand each local gateway pod
its plan. On start it adopts what the kernel holds: slot numbers are read back from our
nft map, so live connections keep their marks. It never flushes anything on exit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from egressgw.agent.bgp import BgpAgent
from egressgw.agent.health import Prober
from egressgw.calc import annotations as ann
from egressgw.calc import decision, nodeplan, snapshot
from egressgw.calc.cluster import ClusterView, Workload, workload_from
from egressgw.calc.gateways import GATEWAY_ANNOTATION
from egressgw.calc.nodeplan import ConfigKey
from egressgw.drivers.netlink import NetlinkRouting, RoutingDriver
from egressgw.drivers.nftables import NftDriver, NodeNftables
from egressgw.model import Pod
from egressgw.model.meta import Resource
from egressgw.model.resourceset import ResourceSet
from egressgw.plan import dataplane as dp
from egressgw.plan import routing as plan_routing
from egressgw.plan.serial import gateway_to_json
from egressgw.store.base import Store
from egressgw.store.codec import resource_store
from egressgw.store.resources import Informer, ResKey, ResourceStore

log = logging.getLogger("egressgw.agent")
RESYNC_SECONDS = 60.0  # re-read the kernel this often even when nothing changed


@dataclass
class AgentConfig:
    """How this agent runs."""

    node: str
    netns: str | None  # None: this process's own namespace (a hostNetwork pod)
    transport: dp.Transport
    gateway_dir: Path
    underlay_mtu: int = 1500


@dataclass
class Agent:
    """One node's agent; `apply_state` is the whole reconcile, callable from tests."""

    config: AgentConfig
    nft: NftDriver
    routing: RoutingDriver
    bgp: BgpAgent | None = None  # when this node speaks BGP
    slots: dict[ConfigKey, int] = field(default_factory=dict)
    last: nodeplan.NodeResult | None = None
    failed: frozenset[IPv4Address] = frozenset()  # gateways the prober found dead
    _workloads: dict[int, tuple[Pod, Workload]] = field(default_factory=dict)
    adopted: bool = False
    _history: dict[tuple[str, str], ConfigKey] = field(default_factory=dict)  # read back on start
    last_apply_ms: float = 0.0

    @classmethod
    def real(cls, config: AgentConfig, bgp_dir: Path | None = None) -> Agent:
        """An agent with the kernel drivers for its namespace (and BIRD if `bgp_dir`)."""
        bgp = None if bgp_dir is None else BgpAgent.real(config.node, config.netns, bgp_dir)
        return cls(config, NodeNftables(config.netns), NetlinkRouting(config.netns), bgp)

    def apply_state(self, objects: Mapping[ResKey, Resource]) -> dp.ApplyStats:
        """Compute and apply this node's plan for the cluster state `objects`."""
        start = time.perf_counter()
        # What is in the store was checked when it was written.
        resources = ResourceSet.trusted(objects.values())
        nodes = nodeplan.node_infos(resources.nodes)
        me = next((n for n in nodes if n.name == self.config.node), None)
        if me is None:
            log.warning("node %s is not in the store yet", self.config.node)
            return dp.ApplyStats()
        felix = resources.felix_configuration.spec
        routing = dp.RoutingSettings(rule_priority=felix.egress_ip_routing_rule_priority)
        view = snapshot.view_of(resources, failed=self.failed, workload=self._workload)
        self._workloads = {id(p): self._workloads[id(p)] for p in resources.pods}
        if not self.adopted:
            self.slots = self._adopt(view, routing)
            self.adopted = True
        vxlan = None
        if self.config.transport is dp.Transport.VXLAN:
            vxlan = dp.VxlanSettings(local=me.ip, mtu=dp.vxlan_mtu(self.config.underlay_mtu),
                                     vni=felix.egress_ip_vxlan_vni, port=felix.egress_ip_vxlan_port)
        result = nodeplan.node_plan(view, me, nodes, routing, self.slots, vxlan, self.last, self._history)
        self._history = {}
        for problem in result.problems:
            log.warning("%s", problem)
        # Routes before classification: a packet is only marked into a table that exists.
        stats = self.routing.apply(result.plan) + self.nft.apply(result.plan)
        self.slots = dict(result.slots)
        self.last = result
        self._write_gateway_plans(result.gateways, _detection(resources, view, result.gateways))
        if self.bgp is not None:
            self.bgp.apply(resources)
        self.last_apply_ms = (time.perf_counter() - start) * 1000
        for error in stats.errors:
            log.error("apply: %s", error)
        log.info("applied in %.1f ms: %s", self.last_apply_ms, stats)
        return stats

    def _workload(self, pod: Pod) -> Workload:
        """`workload_from`, memoised on the (immutable) Pod object itself."""
        found = self._workloads.get(id(pod))
        if found is None or found[0] is not pod:
            found = (pod, workload_from(pod))
            self._workloads[id(pod)] = found
        return found[1]

    def _adopt(self, view: ClusterView, routing: dp.RoutingSettings) -> dict[ConfigKey, int]:
        """Slots as the kernel holds them: each pod's configuration keeps its old slot, its
        maxNextHops picks are read back from its table (kept in `_history`), so a restart
        changes nobody's picks, and the tables no pod is classified into (lingering for a
        drain or a growth) become the `before` of the first plan, so they keep lingering."""
        held = self.nft.read(routing)
        if held is None:
            return {}
        by_source = {(iif, src): slot for iif, src, slot in held.classifications}
        tables = plan_routing.held_tables(self.routing.read(), routing, view.internal)
        adopted: dict[ConfigKey, int] = {}
        for w in view.on_node(self.config.node):
            slot = by_source.get((nodeplan.calico_ifname(w.namespace, w.name), str(w.ip)))
            if w.ip is None or slot is None:
                continue
            gateways = {r.destination: r.gateways for r in tables[slot].routes} if slot in tables else {}
            key = nodeplan.adopted_key(decision.egress_config(view, w), gateways)
            if key:
                self._history[w.key] = key
                if slot not in adopted.values():
                    adopted.setdefault(key, slot)
        self.last = nodeplan.restarted(routing, tables, adopted, self._history)
        log.info("adopted %d slots and %d tables from the kernel", len(adopted), len(tables))
        return adopted

    def _write_gateway_plans(
        self, plans: Mapping[tuple[str, str], dp.GatewayPlan], detection: Mapping[tuple[str, str], Any]
    ) -> None:
        directory = self.config.gateway_dir
        directory.mkdir(parents=True, exist_ok=True)
        wanted = {f"{ns}.{name}.json": gateway_to_json(p, detection.get((ns, name)))
                  for (ns, name), p in plans.items()}
        for name, text in wanted.items():
            path = directory / name
            if path.exists() and path.read_text() == text:
                continue
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
        for stale in directory.glob("*.json"):
            if stale.name not in wanted:
                stale.unlink(missing_ok=True)


def _detection(
    resources: ResourceSet, view: ClusterView, pods: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Any]:
    """The EgressGateway `egressGatewayFailureDetection` of each of the gateway `pods`, as
    manifest JSON. (Only the node's own gateways: not a pass over every pod.)"""
    specs = {
        (g.metadata.namespace or "default", g.metadata.name): g.spec.egress_gateway_failure_detection
        for g in resources.egress_gateways
    }
    out: dict[tuple[str, str], Any] = {}
    for ns, name in pods:
        spec = specs.get((ns, view.workloads[ns, name].annotations.get(GATEWAY_ANNOTATION, "")))
        if spec is not None:
            out[(ns, name)] = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return out


def maintenance_annotations(
    result: nodeplan.NodeResult, objects: Mapping[ResKey, Resource]
) -> dict[tuple[str, str], dict[str, str]]:
    """The reference's gatewayMaintenance* annotations for each local client pod whose
    connections still use a draining gateway (reference §4.4); {} for the others."""
    by_ip = {p.ip: p for p in objects.values() if isinstance(p, Pod) and p.ip is not None}
    wanted: dict[tuple[str, str], dict[str, str]] = {}
    for pod, gateway_ip in result.maintenance.items():
        gw = by_ip.get(gateway_ip)
        if gw is None or gw.metadata.deletion_timestamp is None:
            continue
        finish = gw.metadata.deletion_timestamp
        start = finish - timedelta(seconds=gw.metadata.deletion_grace_period_seconds or 0)
        wanted[pod] = {
            ann.MAINTENANCE_GATEWAY_IP: str(gateway_ip),
            ann.MAINTENANCE_STARTED: start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            ann.MAINTENANCE_FINISHED: finish.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    return wanted


async def _annotate(
    resources: ResourceStore[Resource], node: str, result: nodeplan.NodeResult,
    objects: Mapping[ResKey, Resource],
) -> None:
    wanted = maintenance_annotations(result, objects)
    keys = (ann.MAINTENANCE_GATEWAY_IP, ann.MAINTENANCE_STARTED, ann.MAINTENANCE_FINISHED)
    for obj in objects.values():
        if not isinstance(obj, Pod) or obj.spec is None or obj.spec.node_name != node:
            continue
        pod = (obj.metadata.namespace or "default", obj.metadata.name)
        have = {k: v for k, v in obj.metadata.annotations.items() if k in keys}
        want = wanted.get(pod, {})
        if have != want:
            await resources.patch_annotations(
                ("Pod", pod[0], pod[1]), want, [k for k in have if k not in want]
            )


def reconcile(agent: Agent, state: Mapping[ResKey, Resource], full_collection: bool = False) -> dp.ApplyStats:
    """`agent.apply_state`, with the process's collector policy; `run` reconciles with it.

    The agent holds ~15 tracked objects per pod, so with 10,000s of pods a full collection
    takes ~100 ms, and a reconcile promotes enough new ones to set one off nearly every
    time. What is alive after a reconcile is frozen (`gc.freeze`: never scanned again;
    refcounting still frees it), so collections look only at what the next reconcile
    makes. Cycles among frozen objects are only found by the `full_collection` that `run`
    asks for once per RESYNC_SECONDS."""
    stats = agent.apply_state(state)
    if full_collection:
        gc.unfreeze()
        gc.collect()
    gc.freeze()
    return stats


async def run(agent: Agent, store: Store) -> None:
    """Follow the store forever, reconciling after each batch of changes."""
    changed = asyncio.Event()
    latest: dict[str, Mapping[ResKey, Resource]] = {}

    async def on_change(state: Mapping[ResKey, Resource], revision: int) -> None:
        latest["state"] = dict(state)
        changed.set()

    resources = resource_store(store)
    informer = Informer(resources, on_change, delay=0.01)
    loop = asyncio.get_running_loop()

    def wake() -> None:
        loop.call_soon_threadsafe(changed.set)

    prober = Prober(agent.config.netns, wake)
    prober.start()
    task = asyncio.create_task(informer.run())
    collected = time.monotonic()
    try:
        while True:
            try:
                await asyncio.wait_for(changed.wait(), RESYNC_SECONDS)
            except TimeoutError:
                agent.nft.invalidate()  # catch edits made behind our back
            changed.clear()
            if "state" in latest:
                state = latest["state"]
                agent.failed = prober.failed
                full = time.monotonic() - collected >= RESYNC_SECONDS
                collected = time.monotonic() if full else collected
                await asyncio.to_thread(reconcile, agent, state, full)
                if agent.last is not None:
                    prober.set_targets(agent.last.plan.gateways)
                    await _annotate(resources, agent.config.node, agent.last, state)
    finally:
        task.cancel()

