"""The lab's route server: GoBGP's gobgpd standing in for Azure Route Server.

Holds: RouteServer, which runs gobgpd inside a network namespace from a TOML file it writes
(one explicit neighbor per node, as ARS is configured), serves gobgpd's API only on a Unix
socket in its state directory, and reads back what gobgpd learned with the `gobgp` CLI.
With `graceful_restart_time` every neighbor is a graceful-restart helper (RFC 4724): when a
node's BIRD dies or restarts, the routes it sent are kept (stale) until it is back and has
sent them again, instead of being withdrawn.
LearnedRoute is shaped like `az network routeserver peering list-learned-routes` output.

Must not: listen anywhere but inside its namespace (the API is a Unix socket, BGP binds the
given address), or stand in for our own BGP code: it is a different implementation on purpose,
so that what it learns is an honest check of what the nodes advertise.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

from egressgw.plan.bgp import IPAddress, IPNetwork

GOBGPD = "/usr/bin/gobgpd"
GOBGP = "/usr/bin/gobgp"
_ORIGINS = {0: "IGP", 1: "EGP", 2: "Incomplete"}
_ESTABLISHED = 6  # gobgp's apipb.PeerState.SessionState ESTABLISHED


class RouteServerError(RuntimeError):
    """gobgpd did not start or did not answer."""


@dataclass(frozen=True)
class RouteServerPeer:
    address: IPAddress
    remote_as: int
    multihop: bool = True  # nodes set multihop too (Calico's template does)


@dataclass(frozen=True)
class LearnedRoute:
    """One path gobgpd holds for a prefix."""

    network: IPNetwork
    next_hop: IPAddress
    as_path: tuple[int, ...]
    source_peer: IPAddress
    origin: str  # the BGP ORIGIN attribute: IGP, EGP or Incomplete
    local_address: IPAddress
    best: bool
    weight: int = 32768  # what ARS reports for every learned route

    def as_azure(self, local_as: int) -> dict[str, object]:
        """The route as `list-learned-routes` prints it (ARS's origin says eBGP or iBGP)."""
        first_as = self.as_path[0] if self.as_path else local_as
        return {
            "localAddress": str(self.local_address),
            "network": str(self.network),
            "nextHop": str(self.next_hop),
            "sourcePeer": str(self.source_peer),
            "asPath": ",".join(str(asn) for asn in self.as_path),
            "origin": "IBgp" if first_as == local_as else "EBgp",
            "weight": self.weight,
        }


@dataclass(frozen=True)
class RouteServerNeighbor:
    address: IPAddress
    established: bool
    uptime: int  # gobgp's timestamp (s) of the last transition to Established; 0 if never
    opens_received: int  # one per session the peer opened: a reset shows as an increase
    updates_received: int


class RouteServer:
    """gobgpd in `netns`, AS `asn`, listening for BGP on `address`:`port` only."""

    def __init__(
        self,
        netns: str,
        state_dir: Path,
        *,
        asn: int,
        address: IPAddress,
        peers: Sequence[RouteServerPeer],
        port: int = 179,
        timeout: float = 10.0,
        graceful_restart_time: int | None = None,
        connect_retry: int = 5,
    ) -> None:
        self.netns, self.state_dir, self.timeout = netns, state_dir, timeout
        self.asn, self.address, self.port = asn, address, port
        self.graceful_restart_time, self.connect_retry = graceful_restart_time, connect_retry
        self.peers = tuple(sorted(peers, key=lambda p: (p.address.version, int(p.address))))
        self.config = state_dir / "gobgpd.toml"
        self.socket = state_dir / "gobgpd.sock"
        self.pidfile = state_dir / "gobgpd.pid"
        self.log = state_dir / "gobgpd.log"
        self._child: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(self.render())
        command = [GOBGPD, "-f", str(self.config), "-t", "toml", "-p", "--pprof-disable"]
        command += ["--api-hosts", f"unix://{self.socket}"]
        with self.log.open("ab") as log:
            self._child = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *command],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.pidfile.write_text(f"{self._child.pid}\n")
        self._wait_until_up()

    def stop(self) -> None:
        if self._child is not None:
            self._child.terminate()
            try:
                self._child.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait(timeout=self.timeout)
            self._child = None
        for path in (self.socket, self.pidfile):
            path.unlink(missing_ok=True)

    def render(self) -> str:
        """gobgpd's TOML: the global section and one neighbor per node."""
        lines = [
            "[global.config]",
            f"  as = {self.asn}",
            f'  router-id = "{self.address}"',
            f"  port = {self.port}",
            f'  local-address-list = ["{self.address}"]',
        ]
        for peer in self.peers:
            lines += _neighbor(peer, self.connect_retry)
            if self.graceful_restart_time is not None:
                lines += _graceful_restart(self.graceful_restart_time)
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------ readback

    def neighbors(self) -> list[RouteServerNeighbor]:
        return [_neighbor_state(n) for n in self._gobgp_json("neighbor")]

    def wait_established(self, addresses: Sequence[IPAddress], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        wanted = set(addresses)
        while time.monotonic() < deadline:
            if wanted <= {n.address for n in self.neighbors() if n.established}:
                return
            time.sleep(0.1)
        raise RouteServerError(f"sessions with {sorted(map(str, wanted))} not established")

    def learned_routes(self, neighbor: IPAddress | None = None) -> list[LearnedRoute]:
        """Every path gobgpd holds (Loc-RIB), or what one neighbor sent (Adj-RIB-In)."""
        if neighbor is None:
            rib = self._gobgp_json("global", "rib")
        else:
            rib = self._gobgp_json("neighbor", str(neighbor), "adj-in")
        paths = (_learned(path, self.address) for entries in rib.values() for path in entries)
        return sorted(paths, key=lambda r: (int(r.network.network_address), int(r.source_peer)))

    # ------------------------------------------------------------ plumbing

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._child is not None and self._child.poll() is not None:
                raise RouteServerError(f"gobgpd exited at start; see {self.log}")
            with contextlib.suppress(RouteServerError):
                self._gobgp_json("global")
                return
            time.sleep(0.05)
        raise RouteServerError(f"gobgpd did not answer on {self.socket}")

    def _gobgp_json(self, *args: str) -> Any:
        result = subprocess.run(
            [GOBGP, "--target", f"unix://{self.socket}", "-j", *args],
            capture_output=True,
            text=True,
            timeout=self.timeout,
        )
        if result.returncode != 0 or not result.stdout.strip():
            raise RouteServerError(f"gobgp {' '.join(args)}: {result.stdout}{result.stderr}")
        data = json.loads(result.stdout)
        if isinstance(data, dict) and "error" in data:
            raise RouteServerError(f"gobgp {' '.join(args)}: {data['error']}")
        return data


def _neighbor(peer: RouteServerPeer, connect_retry: int) -> list[str]:
    lines = [
        "",
        "[[neighbors]]",
        "  [neighbors.config]",
        f'    neighbor-address = "{peer.address}"',
        f"    peer-as = {peer.remote_as}",
        "  [neighbors.timers.config]",
        f"    connect-retry = {connect_retry}",
        "    idle-hold-time-after-reset = 1",
    ]
    if peer.multihop:
        lines += [
            "  [neighbors.ebgp-multihop.config]",
            "    enabled = true",
            "    multihop-ttl = 64",
        ]
    return lines


def _graceful_restart(restart_time: int) -> list[str]:
    """Helper mode for the neighbor: `restart-time` is what gobgpd announces for itself; for
    the neighbor's routes it honours the restart time the neighbor announces (BIRD: 120 s)."""
    return [
        "  [neighbors.graceful-restart.config]",
        "    enabled = true",
        f"    restart-time = {restart_time}",
        "  [[neighbors.afi-safis]]",
        "    [neighbors.afi-safis.config]",
        '      afi-safi-name = "ipv4-unicast"',
        "    [neighbors.afi-safis.mp-graceful-restart.config]",
        "      enabled = true",
    ]


def _neighbor_state(data: dict[str, Any]) -> RouteServerNeighbor:
    state = data.get("state", {})
    received = state.get("messages", {}).get("received", {})
    uptime = data.get("timers", {}).get("state", {}).get("uptime", {})
    return RouteServerNeighbor(
        address=ip_address(state.get("neighbor_address") or data["conf"]["neighbor_address"]),
        established=state.get("session_state") == _ESTABLISHED,
        uptime=int(uptime.get("seconds", 0)),
        opens_received=int(received.get("open", 0)),
        updates_received=int(received.get("update", 0)),
    )


def _learned(path: dict[str, Any], local: IPAddress) -> LearnedRoute:
    origin, as_path, next_hop = "IGP", (), None
    for attr in path.get("attrs", []):
        if attr["type"] == 1:
            origin = _ORIGINS.get(attr["value"], str(attr["value"]))
        elif attr["type"] == 2:
            as_path = tuple(a for seg in attr.get("as_paths", []) for a in seg.get("asns", []))
        elif attr["type"] in (3, 14):  # NEXT_HOP, or MP_REACH_NLRI for IPv6
            next_hop = attr.get("nexthop") or next(iter(attr.get("nexthops", [])), None)
    if next_hop is None:
        raise RouteServerError(f"path without a next hop: {path}")
    return LearnedRoute(
        network=ip_network(path["nlri"]["prefix"]),
        next_hop=ip_address(next_hop),
        as_path=as_path,
        source_peer=ip_address(path.get("neighbor-ip") or path["source-id"]),
        origin=origin,
        local_address=local,
        best=bool(path.get("best", False)),
    )
