"""The agent's reconcile over fake drivers: classification, shared tables, gateway plans,
slot adoption after a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from egressgw import manifests
from egressgw.agent.node import Agent, AgentConfig
from egressgw.calc import annotations as ann
from egressgw.calc.nodeplan import calico_ifname
from egressgw.controller.gateways import Controller
from egressgw.drivers.fakes import FakeNftables, FakeRouting
from egressgw.model import parsing
from egressgw.model.meta import Resource
from egressgw.plan import dataplane as dp
from egressgw.plan.serial import gateway_from_json
from egressgw.store.memory import MemoryStore
from egressgw.store.resources import ResKey

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def cluster(pod_annotations: dict[str, str]) -> dict[ResKey, Resource]:
    async def build() -> dict[ResKey, Resource]:
        store = MemoryStore()
        controller = Controller(store, {})
        objs = list(manifests.load([EXAMPLES / "aws-public-ip"]).all)
        netshoot = next(o for o in objs if o.kind == "Pod")
        body = parsing.to_dict(netshoot)
        body["metadata"]["annotations"] = pod_annotations
        body["spec"] = {"nodeName": "node-1"}
        body["status"] = {"podIP": "10.244.0.7"}
        objs = [o for o in objs if o is not netshoot] + [parsing.from_dict(body)]
        await controller.resources.apply(objs)
        listed, _ = await controller.resources.list_all()
        await controller.reconcile({(o.key.kind, o.key.namespace, o.key.name): o for o in listed})
        listed, _ = await controller.resources.list_all()
        return {(o.key.kind, o.key.namespace, o.key.name): o for o in listed}

    return asyncio.run(build())


def agent(tmp_path: Path, node: str = "node-1", nft: FakeNftables | None = None) -> Agent:
    config = AgentConfig(node, None, dp.Transport.VXLAN, tmp_path / node, 9001)
    return Agent(config, nft or FakeNftables(), FakeRouting())


def test_annotated_pod_is_classified_into_a_table_via_its_gateway(tmp_path: Path) -> None:
    a = agent(tmp_path)
    state = cluster({ann.SELECTOR: "egress-gateway == 'egw-2'"})
    a.apply_state(state)
    held = a.nft.read()
    assert held is not None
    (entry,) = held.classifications
    assert entry[:2] == (calico_ifname("default", "netshoot"), "10.244.0.7")
    gw_ip = next(o for k, o in state.items() if k[2] == "egw-2-0").ip  # type: ignore[attr-defined]
    routes = a.routing.read().routes
    default = [r for r in routes if str(r.destination) == "0.0.0.0/0" and r.hops]
    assert default and {h.gateway for r in default for h in r.hops} == {gw_ip}


def test_gateway_pods_on_the_node_get_plans(tmp_path: Path) -> None:
    state = cluster({})
    for node in ("node-1", "node-2", "node-3", "node-4"):
        agent(tmp_path, node).apply_state(state)
    plans = sorted(p.name for p in tmp_path.glob("*/*.json"))
    assert plans == [f"default.egw-{i}-0.json" for i in range(1, 7)]
    plan = gateway_from_json(next(tmp_path.glob("*/default.egw-1-0.json")).read_text())
    assert plan.vxlan is not None and plan.return_routes == ()  # nodes have no pod CIDRs here


def test_restart_adopts_slots_from_the_kernel(tmp_path: Path) -> None:
    state = cluster({ann.SELECTOR: "egress-gateway == 'egw-2'"})
    nft = FakeNftables()
    first = agent(tmp_path, nft=nft)
    first.apply_state(state)
    before = nft.read()
    restarted = agent(tmp_path, nft=nft)
    restarted.apply_state(state)
    assert restarted.slots == first.slots
    assert nft.read() == before


def test_a_new_replica_gets_a_fresh_table_and_the_old_one_lingers(tmp_path: Path) -> None:
    """Live connections carry their slot's mark: their table stays as it was, while new
    connections get a table over both replicas (calc/linger.py)."""
    state = cluster({ann.SELECTOR: "egress-gateway == 'egw-2'"})
    a = agent(tmp_path)
    a.apply_state(state)
    (old,) = a.slots.values()
    gw = next(o for k, o in state.items() if k[2] == "egw-2-0")
    body = parsing.to_dict(gw)
    body["metadata"]["name"] = "egw-2-1"
    body["status"] = {"podIP": "10.99.8.9"}
    grown = {**state, ("Pod", "default", "egw-2-1"): parsing.from_dict(body)}
    a.apply_state(grown)
    held = a.nft.read()
    assert held is not None
    ((*_, new),) = held.classifications
    assert new != old
    assert gateway_tables(a) == {1000 + old: {"10.99.8.8"}, 1000 + new: {"10.99.8.8", "10.99.8.9"}}


def test_a_draining_gateway_keeps_its_old_table_for_live_connections(tmp_path: Path) -> None:
    from egressgw.agent.node import maintenance_annotations

    state = cluster({ann.SELECTOR: "egress-gateway == 'egw-2'"})
    gw = next(o for k, o in state.items() if k[2] == "egw-2-0")
    second = parsing.to_dict(gw)
    second["metadata"]["name"] = "egw-2-1"
    second["status"] = {"podIP": "10.99.8.9"}
    state = {**state, ("Pod", "default", "egw-2-1"): parsing.from_dict(second)}
    a = agent(tmp_path)
    a.apply_state(state)
    (old_slot,) = a.slots.values()
    draining = parsing.to_dict(gw)
    draining["metadata"]["deletionTimestamp"] = "2026-11-23T12:00:30Z"
    draining["metadata"]["deletionGracePeriodSeconds"] = 30
    state = {**state, ("Pod", "default", "egw-2-0"): parsing.from_dict(draining)}
    a.apply_state(state)
    held = a.nft.read()
    assert held is not None
    (entry,) = held.classifications
    new_slot = entry[2]
    assert new_slot != old_slot and set(a.slots.values()) == {old_slot, new_slot}
    by_table = {}
    for r in a.routing.read().routes:
        if str(r.destination) == "0.0.0.0/0" and r.hops:
            by_table[r.table] = {str(h.gateway) for h in r.hops}
    assert sorted(by_table.values(), key=len) == [{"10.99.8.9"}, {"10.99.8.8", "10.99.8.9"}]
    assert a.last is not None
    notes = maintenance_annotations(a.last, state)[("default", "netshoot")]
    assert notes == {ann.MAINTENANCE_GATEWAY_IP: "10.99.8.8",
                     ann.MAINTENANCE_STARTED: "2026-11-23T12:00:00Z",
                     ann.MAINTENANCE_FINISHED: "2026-11-23T12:00:30Z"}
    gone = {k: v for k, v in state.items() if k[2] != "egw-2-0"}
    a.apply_state(gone)
    # The old table retires but stays, unchanged and unclassified: its connections through
    # egw-2-1 carry its mark and would lose their route without it.
    assert sorted(a.slots.values()) == sorted([old_slot, new_slot])
    held = a.nft.read()
    assert held is not None and [c[2] for c in held.classifications] == [new_slot]
    assert maintenance_annotations(a.last, gone) == {}


def gateway_tables(a: Agent) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for r in a.routing.read().routes:
        if str(r.destination) == "0.0.0.0/0" and r.hops:
            found[r.table] = {str(h.gateway) for h in r.hops}
    return found


def test_a_retired_table_goes_with_its_configuration(tmp_path: Path) -> None:
    """After a drain the old table serves the survivors' connections; so does the old table
    after growth. Scaling back takes a retired table back when it holds exactly the new set.
    All go when the pod stops using the configuration."""
    state = cluster({ann.SELECTOR: "egress-gateway == 'egw-2'"})
    gw = next(o for k, o in state.items() if k[2] == "egw-2-0")

    def replica(name: str, ip: str, terminating: bool = False) -> tuple[ResKey, Resource]:
        body = parsing.to_dict(gw)
        body["metadata"]["name"] = name
        body["status"] = {"podIP": ip}
        if terminating:
            body["metadata"]["deletionTimestamp"] = "2026-11-23T12:00:30Z"
            body["metadata"]["deletionGracePeriodSeconds"] = 30
        return ("Pod", "default", name), parsing.from_dict(body)

    base = {k: v for k, v in state.items() if k[2] != "egw-2-0"}

    def apply(*pods: tuple[ResKey, Resource], annotated: bool = True) -> dict[int, set[str]]:
        client = {} if annotated else {("Pod", "default", "netshoot"): _unannotated(state)}
        a.apply_state({**base, **dict(pods), **client})
        return gateway_tables(a)

    def live() -> int:
        held = a.nft.read()
        assert held is not None
        ((*_, slot),) = held.classifications
        return 1000 + int(slot)

    a = agent(tmp_path)
    apply(replica("egw-2-0", "10.99.8.8"), replica("egw-2-1", "10.99.8.9"))
    (first,) = a.slots.values()
    apply(replica("egw-2-0", "10.99.8.8", True), replica("egw-2-1", "10.99.8.9"))
    tables = apply(replica("egw-2-1", "10.99.8.9"))  # egw-2-0 is gone
    assert tables[1000 + first] == {"10.99.8.8", "10.99.8.9"}  # retired, unchanged
    assert len(tables) == 2
    survivor = live()
    # A replica added: a fresh table for new connections, the survivor's lingers.
    tables = apply(replica("egw-2-1", "10.99.8.9"), replica("egw-2-2", "10.99.8.10"))
    assert tables[1000 + first] == {"10.99.8.8", "10.99.8.9"} and tables[survivor] == {"10.99.8.9"}
    assert tables[live()] == {"10.99.8.9", "10.99.8.10"} and len(tables) == 3
    # Drained again: new connections go back to the survivor's table, which holds just that.
    tables = apply(replica("egw-2-1", "10.99.8.9"), replica("egw-2-2", "10.99.8.10", True))
    assert live() == survivor and len(tables) == 3
    tables = apply(replica("egw-2-1", "10.99.8.9"))  # drain over: every table stays
    assert sorted(map(sorted, tables.values())) == [
        ["10.99.8.10", "10.99.8.9"], ["10.99.8.8", "10.99.8.9"], ["10.99.8.9"]
    ]
    # ...until netshoot stops using the configuration: then every table of it goes.
    assert apply(replica("egw-2-1", "10.99.8.9"), annotated=False) == {}
    assert a.slots == {}


def _unannotated(state: dict[ResKey, Resource]) -> Resource:
    body = parsing.to_dict(state[("Pod", "default", "netshoot")])
    body["metadata"]["annotations"] = {}
    return parsing.from_dict(body)


def test_a_restarted_agent_keeps_a_lingering_table_and_changes_nothing(tmp_path: Path) -> None:
    state = cluster({ann.SELECTOR: "egress-gateway == 'egw-2'"})
    body = parsing.to_dict(state[("Pod", "default", "egw-2-0")])
    body["metadata"]["name"] = "egw-2-1"
    body["status"] = {"podIP": "10.99.8.9"}
    grown = {**state, ("Pod", "default", "egw-2-1"): parsing.from_dict(body)}
    first = agent(tmp_path)
    first.apply_state(state)
    first.apply_state(grown)  # a replica added: a fresh table, the old one lingers
    before = gateway_tables(first)
    assert sorted(map(sorted, before.values())) == [["10.99.8.8"], ["10.99.8.8", "10.99.8.9"]]
    # A new agent over the same kernel state (the fakes keep it) adopts both tables.
    again = Agent(first.config, first.nft, first.routing)
    stats = again.apply_state(grown)
    assert gateway_tables(again) == before and stats.changes == 0
