"""What the Azure lab shows from the outside: HTTP answers as a pod gets them, what the hub
firewall saw, what each route server learned, and the store edits the walkthrough makes.

- `http`: one request from a namespace (curl), as status and body: the firewall's 470 or the
  echo service's answer (the address it saw, i.e. the firewall's public address);
- `firewall_seen` / `clear_seen`: the firewall's record of the connections it allowed and
  denied (source, destination, port), from its nftables sets;
- `expected_paths`: the paths a route server should hold when the nodes advertise given
  prefixes (each node sends each prefix, the originating node stays the next hop);
- `move_gateway`: a gateway pod rescheduled, as an edit of the lab's store.

Observations are read from the kernel and from the processes that answer, never from
egressgw's own state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from egressgw.lab import procs
from egressgw.lab.rulesets import TABLE
from egressgw.lab.running import LabHandle, edited, with_store
from egressgw.lab.topology import edge_ns
from egressgw.model import Pod

Path_ = tuple[IPv4Network, IPv4Address, IPv4Address, tuple[int, ...]]  # prefix, hop, peer, AS path
SEEN = ("seen_allowed", "seen_denied")


@dataclass(frozen=True)
class HttpAnswer:
    status: int | None  # None: no HTTP answer at all (refused, timed out)
    body: str

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "body": self.body}


def http(netns: str, address: IPv4Address, host: str | None = None, port: int = 80) -> HttpAnswer:
    """GET / from `netns` to `address` (as `host`, when given, like a resolved name)."""
    target = host or str(address)
    argv = ["curl", "-sS", "--noproxy", "*", "--max-time", "1", "-o", "-", "-w", "\n%{http_code}"]
    if host is not None:
        argv += ["--resolve", f"{host}:{port}:{address}"]
    done = procs.exec_in(netns, [*argv, f"http://{target}:{port}/"], timeout=3)
    body, _, code = done.stdout.rpartition("\n")
    status = int(code) if code.isdigit() and code != "000" else None
    return HttpAnswer(status, body.strip() if status is not None else done.stderr.strip())


@dataclass(frozen=True)
class Seen:
    """A connection the firewall decided on."""

    verdict: str  # "allowed" or "denied"
    source: IPv4Address
    destination: IPv4Address
    port: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "source": str(self.source),
            "destination": str(self.destination),
            "port": self.port,
        }


def firewall_seen(prefix: str) -> list[Seen]:
    """The firewall's record since the last `clear_seen`, from its nftables sets."""
    found: list[Seen] = []
    for name in SEEN:
        listing = procs.nft_json(edge_ns(prefix), "list", "set", "ip", TABLE, name)["nftables"]
        for item in (i["set"] for i in listing if "set" in i):
            for element in item.get("elem", []):
                src, dst, port = element["concat"]
                verdict = name.removeprefix("seen_")
                found.append(Seen(verdict, IPv4Address(src), IPv4Address(dst), int(port)))
    return sorted(found, key=lambda s: (s.verdict, int(s.source), int(s.destination), s.port))


def clear_seen(prefix: str) -> None:
    procs.nft(edge_ns(prefix), "".join(f"flush set ip {TABLE} {name}\n" for name in SEEN))


def expected_paths(
    originated: Mapping[IPv4Network, IPv4Address], peers: Iterable[IPv4Address], asn: int
) -> set[Path_]:
    """Every node a route server peers with sends it every prefix (its own, and the others'
    it learned over iBGP), and keepOriginalNextHop leaves the originating node as the next
    hop: one path per (prefix, peer), AS path the cluster's AS."""
    listed = tuple(peers)
    return {(net, hop, peer, (asn,)) for net, hop in originated.items() for peer in listed}


# --- the store ------------------------------------------------------------------------------


def move_gateway(handle: LabHandle, namespace: str, name: str, node: str) -> Pod:
    """Reschedule gateway pod `namespace/name` on `node`, keeping its address, as a pod
    evicted and rescheduled keeps its IPAM handle: the kubelet moves it, the agents move its
    advertisement. The controller keeps the placement it reads back from the pod."""

    def to_node(body: dict[str, Any]) -> None:
        body.setdefault("spec", {})["nodeName"] = node

    moved = with_store(handle, lambda res: res.update(("Pod", namespace, name), edited(to_node)))
    assert isinstance(moved, Pod)
    return moved
