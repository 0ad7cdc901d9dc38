"""The route server's gobgpd config: graceful-restart helper mode per neighbor, on request."""

from __future__ import annotations

import tomllib
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from egressgw.drivers.routeserver import RouteServer, RouteServerPeer

PEERS = [RouteServerPeer(ip_address("10.1.0.4"), 63400), RouteServerPeer(ip_address("10.1.0.5"), 63400)]


def config(**options: Any) -> dict[str, Any]:
    rs = RouteServer(
        "ns", Path("/nonexistent"), asn=65515, address=ip_address("10.0.1.4"), peers=PEERS, **options
    )
    return tomllib.loads(rs.render())


def test_default_neighbors_are_not_graceful_restart_helpers() -> None:
    neighbors = config()["neighbors"]
    assert [n["config"]["neighbor-address"] for n in neighbors] == ["10.1.0.4", "10.1.0.5"]
    assert all("graceful-restart" not in n and "afi-safis" not in n for n in neighbors)
    assert {n["timers"]["config"]["connect-retry"] for n in neighbors} == {5}


def test_graceful_restart_makes_every_neighbor_a_helper() -> None:
    neighbors = config(graceful_restart_time=120, connect_retry=1)["neighbors"]
    for n in neighbors:
        assert n["graceful-restart"]["config"] == {"enabled": True, "restart-time": 120}
        [family] = n["afi-safis"]
        assert family["config"]["afi-safi-name"] == "ipv4-unicast"
        assert family["mp-graceful-restart"]["config"]["enabled"] is True
        assert n["timers"]["config"]["connect-retry"] == 1
        assert n["ebgp-multihop"]["config"]["enabled"] is True
