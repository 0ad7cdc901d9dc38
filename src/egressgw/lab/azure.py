"""The Azure lab's hub at run time: route servers (gobgpd), the firewall's deny responder,
the fabric's BGP-learned routes, and the readbacks the demo, the CLI and the tests use.

`start_hub` starts, under the lab's Supervisor: one gobgpd per route server in its own
namespace (GoBGP, not the BIRD the nodes run, so what it learns is an honest check), the
firewall's HTTP deny responder in the edge namespace, and `lab.hubroutes` in the VPC
namespace (the VNet fabric), which programs the routes the route servers learned.

Files, under `<lab dir>/`: `hub/<route server>/` (gobgpd.toml, gobgpd.sock), and each
node's BIRD under `nodes/<node>/bird/` (bird.conf, bird.ctl), written by the agent.

Must not: listen outside the lab's namespaces (gobgpd's API is a Unix socket), or decide
anything about BGP policy: it only runs and reads the route servers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from egressgw.drivers.bird import BirdDaemon
from egressgw.drivers.routeserver import (
    GOBGPD,
    LearnedRoute,
    RouteServer,
    RouteServerError,
    RouteServerNeighbor,
    RouteServerPeer,
)
from egressgw.lab import firewall, hubroutes, procs, state
from egressgw.lab.hub import DENY_PORT, AzureEdge, FabricRoutes, RouteServerHost
from egressgw.lab.topology import Topology, edge_ns, node_ns, rs_ns, vpc_ns


def azure_edge(topology: Topology) -> AzureEdge:
    if not isinstance(topology.edge, AzureEdge):
        raise LookupError(f"lab {topology.prefix} has no Azure hub ({topology.edge.mode} edge)")
    return topology.edge


def hub_dir(prefix: str, rs: RouteServerHost, root: Path | None = None) -> Path:
    return state.lab_dir(prefix, root) / "hub" / rs.name


def bird_dir(prefix: str, node: str, root: Path | None = None) -> Path:
    """Where the node's agent keeps BIRD's files (`--bgp-dir`)."""
    return state.lab_dir(prefix, root) / "nodes" / node / "bird"


def route_server(topology: Topology, name: str, root: Path | None = None) -> RouteServer:
    """The driver of route server `name` (or address): for its config and its readbacks."""
    edge = azure_edge(topology)
    rs = edge.route_server(name)
    return RouteServer(
        rs_ns(topology.prefix, rs),
        hub_dir(topology.prefix, rs, root),
        asn=edge.route_server_as,
        address=rs.address,
        peers=[RouteServerPeer(p, edge.peer_as) for p in rs.peers],
        # Graceful-restart helpers (RFC 4724): when a node's BIRD dies or restarts, the
        # routes it advertised are kept, stale, until it is back, so return traffic to its
        # gateways keeps flowing; a reset session is retried after 1 s, not 5 s.
        graceful_restart_time=120,
        connect_retry=1,
    )


def route_servers(topology: Topology, root: Path | None = None) -> dict[str, RouteServer]:
    return {rs.name: route_server(topology, rs.name, root) for rs in topology.route_servers()}


def node_bird(topology: Topology, node: str, root: Path | None = None) -> BirdDaemon:
    """The node's BIRD (started by its agent), for readbacks."""
    return BirdDaemon(node_ns(topology.prefix, node), bird_dir(topology.prefix, node, root))


# --- starting ---------------------------------------------------------------------------


def gobgpd_argv(rs: RouteServer) -> list[str]:
    """gobgpd with the driver's config file, its API on the Unix socket only."""
    return [
        GOBGPD,
        *("-f", str(rs.config), "-t", "toml", "-p", "--pprof-disable"),
        *("--api-hosts", f"unix://{rs.socket}"),
    ]


def start_hub(sup: procs.Supervisor, topology: Topology, root: Path, timeout: float = 10.0) -> None:
    """Start the route servers, the deny responder and the fabric's route programming."""
    servers = route_servers(topology, root)
    for name, rs in servers.items():
        rs.state_dir.mkdir(parents=True, exist_ok=True)
        rs.config.write_text(rs.render())
        rs.socket.unlink(missing_ok=True)
        sup.start(f"gobgpd-{name}", gobgpd_argv(rs), rs.netns)
    for rs in servers.values():
        _wait_api(rs, timeout)
    address = topology.edge_link_hosts()[1]
    deny = ("--listen", str(address), "--port", str(DENY_PORT))
    argv = procs.python_argv("egressgw.lab.firewall", *deny)
    sup.start("firewall", argv, edge_ns(topology.prefix), ready=firewall.READY)
    argv = procs.python_argv("egressgw.lab.hubroutes", "--lab", topology.prefix)
    env = {state.ROOT_ENV: str(root)}
    sup.start("hub-routes", argv, vpc_ns(topology.prefix), env=env, ready=hubroutes.READY)


def _wait_api(rs: RouteServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            rs.neighbors()
            return
        except RouteServerError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wait_established(topology: Topology, root: Path | None = None, timeout: float = 30.0) -> None:
    """Until every route server has its BGP connection with every node it peers with up."""
    deadline = time.monotonic() + timeout
    for rs_host in topology.route_servers():
        rs = route_server(topology, rs_host.name, root)
        rs.wait_established(list(rs_host.peers), max(0.1, deadline - time.monotonic()))


# --- reading back -----------------------------------------------------------------------


def learned(topology: Topology, name: str, root: Path | None = None) -> list[LearnedRoute]:
    """What route server `name` learned, read from gobgpd itself (its Loc-RIB)."""
    return route_server(topology, name, root).learned_routes()


def learned_azure(
    topology: Topology, name: str, root: Path | None = None
) -> list[dict[str, object]]:
    """`learned` shaped as `az network routeserver peering list-learned-routes` prints it."""
    edge = azure_edge(topology)
    return [r.as_azure(edge.route_server_as) for r in learned(topology, name, root)]


def neighbors(topology: Topology, name: str, root: Path | None = None) -> list[RouteServerNeighbor]:
    return route_server(topology, name, root).neighbors()


def fabric(topology: Topology) -> FabricRoutes:
    """The routes the VNet fabric holds from BGP, read from the kernel of the VPC namespace."""
    done = procs.exec_in(
        vpc_ns(topology.prefix), ["ip", "-j", "route", "show", "proto", hubroutes.PROTO]
    )
    return hubroutes.parse_kernel(json.loads(done.stdout or "[]"))


def as_paths(
    routes: Sequence[LearnedRoute],
) -> set[tuple[IPv4Network, IPv4Address, IPv4Address, tuple[int, ...]]]:
    """(prefix, next hop, source peer, AS path) of each IPv4 path: what tests compare."""
    return {
        (r.network, r.next_hop, r.source_peer, r.as_path)
        for r in routes
        if isinstance(r.network, IPv4Network)
        and isinstance(r.next_hop, IPv4Address)
        and isinstance(r.source_peer, IPv4Address)
    }
