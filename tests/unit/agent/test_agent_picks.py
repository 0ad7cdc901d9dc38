"""A restarted agent adopts its maxNextHops picks from the kernel (fake drivers): nobody's
gateway changes, though a fresh computation would pick differently."""

from __future__ import annotations

from pathlib import Path

from egressgw.calc import annotations as ann
from egressgw.calc.hops import preference
from egressgw.drivers.fakes import FakeNftables, FakeRouting
from egressgw.model import parsing
from egressgw.model.meta import Resource
from egressgw.store.resources import ResKey
from tests.unit.agent.test_agent import agent, cluster, gateway_tables


def test_a_restart_keeps_the_picks_the_kernel_holds(tmp_path: Path) -> None:
    state = cluster({ann.SELECTOR: "egress-gateway == 'egw-2'", ann.MAX_NEXT_HOPS: "1"})
    first = agent(tmp_path)
    first.apply_state(state)
    assert list(gateway_tables(first).values()) == [{"10.99.8.8"}]
    # A second replica whose address a fresh computation would prefer for netshoot.
    ip = next(a for a in (f"10.99.8.{i}" for i in range(9, 30))
              if preference(("default", "netshoot"), [a, "10.99.8.8"])[0] == a)
    gw = next(o for k, o in state.items() if k[2] == "egw-2-0")
    body = parsing.to_dict(gw)
    body["metadata"]["name"] = "egw-2-1"
    body["status"] = {"podIP": ip}
    grown: dict[ResKey, Resource] = {**state, ("Pod", "default", "egw-2-1"): parsing.from_dict(body)}
    first.apply_state(grown)
    assert list(gateway_tables(first).values()) == [{"10.99.8.8"}]  # sticky
    fresh = agent(tmp_path, nft=FakeNftables())
    fresh.apply_state(grown)
    assert list(gateway_tables(fresh).values()) == [{ip}]  # what no history gives
    nft, routing = first.nft, first.routing
    assert isinstance(nft, FakeNftables) and isinstance(routing, FakeRouting)
    held = (nft.read(), routing.read())
    restarted = agent(tmp_path, nft=nft)
    restarted.routing = routing
    restarted.apply_state(grown)
    assert (nft.read(), routing.read()) == held
    assert restarted.slots == first.slots
