"""The lab's one effectful builder: turns a `Topology` into network namespaces, veths,
bridges, addresses, routes, sysctls and two small nftables tables, and takes them down.

Layout (names from topology.py): `<prefix>-vpc` routes between one bridge per zone (the
router holds `.1`), the edge link and, per node, the pod CIDR and each gateway IP (/32, like
an AWS secondary IP) via the node. A node's `eth0` is a port of its zone's bridge. A pod's
`eth0` holds its /32 and a default route via 169.254.1.1, answered by proxy_arp on the
node's `cali…` end, which carries a /32 route to the pod (Calico's wiring). `<prefix>-edge`
does the cloud's NAT between the VPC and `<prefix>-internet`, which holds the internet
hosts' addresses on `lo`. Nodes masquerade pod traffic leaving the cluster (natOutgoing).
Azure (`AzureEdge`): zones share their subnet's bridge; the VPC (the VNet fabric) routes
neither pod CIDRs nor gateway IPs itself (BGP does, see `lab.hubroutes`), holds
RouteServerSubnet with one `<prefix>-<route server>` namespace per route server, and sends
the default route to the edge, which is the hub firewall (`rulesets.firewall_ruleset`).

Must not: touch the host namespace. Netlink sockets are opened by pyroute2 inside the named
namespace (never creating one) and checked with SIOCGSKNS before use; sysctl writes and
`nft` runs happen in a thread that has entered a lab namespace (`procs.in_netns`); every
veth is created with both ends already in lab namespaces. pyroute2 sockets are per thread,
so one must never be opened in a thread that entered a namespace and used from another. Must not create the nft table `egressgw` (the egress
dataplane's); ours is `ip egressgw-lab`. Must not leave a half-built lab: `build` and
`add_pod` undo their work before re-raising.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns
from pyroute2.netlink.exceptions import NetlinkError

from egressgw.lab import procs, state
from egressgw.lab.hub import AzureEdge, router
from egressgw.lab.rulesets import TABLE
from egressgw.lab.rulesets import edge_ruleset as edge_ruleset  # re-exported: they lived here
from egressgw.lab.rulesets import node_ruleset as node_ruleset
from egressgw.lab.topology import (
    POD_GATEWAY,
    PRIVATE_RANGES,
    AwsEdge,
    GatewayPod,
    Node,
    Pod,
    Topology,
    edge_ns,
    internet_ns,
    node_ns,
    pod_ns,
    rs_ns,
    valid_prefix,
    vpc_ns,
)

NETNS_DIR = procs.NETNS_DIR
HUB_BRIDGE = "br-hub-rs"
_SIOCGSKNS = 0x894C
P = ParamSpec("P")
R = TypeVar("R")
_SCOPE_LINK = 253

#: Every lab namespace: IPv4 only (quiet captures), no ICMP redirects (the VPC router, edge
#: and gateway pods forward out of the interface they received on), no reverse-path filter
#: (the egress dataplane's policy routing makes paths asymmetric; drivers may tighten it).
_QUIET = {
    "net/ipv6/conf/all/disable_ipv6": 1,
    "net/ipv6/conf/default/disable_ipv6": 1,
    **{
        f"net/ipv4/conf/{d}/{k}": 0
        for d in ("all", "default")
        for k in ("send_redirects", "accept_redirects", "rp_filter")
    },
}
_FORWARDING = {"net/ipv4/ip_forward": 1, **_QUIET}


def _blocking(fn: Callable[P, R]) -> Callable[P, R]:
    """pyroute2's synchronous API fails in a thread whose asyncio loop is running, so such a
    call runs in a helper thread instead. It still blocks the loop: async callers should
    prefer `await asyncio.to_thread(...)`."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return fn(*args, **kwargs)
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(fn, *args, **kwargs).result()

    return call


def _verify(sock_fd: int, netns: str) -> None:
    """Refuse a socket that is not in `netns` (SIOCGSKNS gives the socket's namespace)."""
    ns_fd = fcntl.ioctl(sock_fd, _SIOCGSKNS)
    try:
        if os.fstat(ns_fd).st_ino != os.stat(NETNS_DIR / netns).st_ino:
            raise RuntimeError(f"netlink socket is not in {netns}")
    finally:
        os.close(ns_fd)


def lab_namespaces(prefix: str) -> list[str]:
    """The existing namespaces of the lab `prefix`: those named `<prefix>-…`."""
    if not valid_prefix(prefix):
        raise ValueError(f"bad lab prefix {prefix!r}")
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(f"{prefix}-"))
    except FileNotFoundError:
        return []


class _Netlink:
    """One rtnetlink socket per namespace, closed together. pyroute2 keeps a socket per
    thread and opens each inside the namespace it was given, so a socket is never in the
    host's namespace even if used from another thread; `_verify` checks it anyway."""

    def __init__(self) -> None:
        self._socks: dict[str, Any] = {}

    def __call__(self, netns: str) -> Any:
        if netns not in self._socks:
            ipr = IPRoute(netns=netns, flags=0)  # flags=0: never create a missing namespace
            try:
                _verify(ipr.fileno(), netns)
            except BaseException:
                ipr.close()
                raise
            self._socks[netns] = ipr
        return self._socks[netns]

    def __enter__(self) -> _Netlink:
        return self

    def __exit__(self, *_: object) -> None:
        for sock in self._socks.values():
            sock.close()


def _up(
    ipr: Any,
    ifname: str,
    mtu: int | None = None,
    master: str | None = None,
    addr: IPv4Interface | None = None,
) -> int:
    index: int = ipr.link_lookup(ifname=ifname)[0]
    extra = {"mtu": mtu} if mtu else {}
    if master:
        extra["master"] = ipr.link_lookup(ifname=master)[0]
    ipr.link("set", index=index, state="up", **extra)
    if addr is not None:
        ipr.addr("add", index=index, address=str(addr.ip), prefixlen=addr.network.prefixlen)
    return index


def _veth(nl: _Netlink, netns: str, ifname: str, peer_netns: str, peer_ifname: str) -> None:
    """A veth pair born with one end in each namespace (never in the host's)."""
    peer = {"ifname": peer_ifname, "net_ns_fd": str(NETNS_DIR / peer_netns)}
    nl(netns).link("add", ifname=ifname, kind="veth", peer=peer)


def _edge_link(t: Topology) -> tuple[IPv4Interface, IPv4Interface]:
    """The VPC router's and the edge's interface addresses on the VPC-edge link."""
    plen = t.vpc_edge_link.prefixlen
    near, far = t.edge_link_hosts()
    return IPv4Interface(f"{near}/{plen}"), IPv4Interface(f"{far}/{plen}")


def _link_hosts(link: IPv4Network) -> tuple[IPv4Interface, IPv4Interface]:
    first, second = list(link.hosts())[:2]
    return IPv4Interface(f"{first}/{link.prefixlen}"), IPv4Interface(f"{second}/{link.prefixlen}")


def _create(namespaces: tuple[str, ...], forwarding: bool) -> None:
    for netns in namespaces:
        pr_netns.create(netns)
        procs.sysctl(netns, _FORWARDING if forwarding else _QUIET)


def _build_vpc(nl: _Netlink, t: Topology) -> None:
    vpc, edge = vpc_ns(t.prefix), edge_ns(t.prefix)
    ipr = nl(vpc)
    _up(ipr, "lo")
    for z in t.zones:
        if t.bridge(z.name) != z.bridge:
            continue  # a zone sharing another's subnet (Azure) shares its bridge
        ipr.link("add", ifname=z.bridge, kind="bridge")
        _up(ipr, z.bridge, t.underlay_mtu, addr=IPv4Interface(f"{z.router}/{z.subnet.prefixlen}"))
    near, far = _edge_link(t)
    _veth(nl, vpc, "edge", edge, "vpc")
    _up(ipr, "edge", addr=near)
    ipr.route("add", dst="0.0.0.0/0", gateway=str(far.ip))
    if isinstance(t.edge, AzureEdge):
        # Private destinations the fabric has no route for (no subnet, nothing learned over
        # BGP) are dropped here rather than bounced between the fabric and the firewall.
        for cidr in PRIVATE_RANGES:
            ipr.route("add", dst=str(cidr), type="unreachable")


def _build_hub(nl: _Netlink, t: Topology) -> None:
    """Azure: RouteServerSubnet (a bridge in the fabric) and one namespace per route server."""
    edge, vpc = t.edge, vpc_ns(t.prefix)
    if not isinstance(edge, AzureEdge) or edge.route_server_subnet is None:
        return
    subnet = edge.route_server_subnet
    nl(vpc).link("add", ifname=HUB_BRIDGE, kind="bridge")
    _up(
        nl(vpc),
        HUB_BRIDGE,
        t.underlay_mtu,
        addr=IPv4Interface(f"{router(subnet)}/{subnet.prefixlen}"),
    )
    for rs in edge.route_servers:
        ns, port = rs_ns(t.prefix, rs), f"r-{rs.name}"
        _veth(nl, vpc, port, ns, "eth0")
        _up(nl(vpc), port, t.underlay_mtu, master=HUB_BRIDGE)
        _up(nl(ns), "lo")
        _up(nl(ns), "eth0", t.underlay_mtu, addr=IPv4Interface(f"{rs.address}/{subnet.prefixlen}"))
        nl(ns).route("add", dst="0.0.0.0/0", gateway=str(router(subnet)))


def _build_edge(nl: _Netlink, t: Topology) -> None:
    edge, inet = edge_ns(t.prefix), internet_ns(t.prefix)
    ipr = nl(edge)
    _up(ipr, "lo")
    fabric, firewall = _edge_link(t)
    _up(ipr, "vpc", addr=firewall)
    near, far = _link_hosts(t.edge_internet_link)
    _veth(nl, edge, "internet", inet, "edge")
    _up(ipr, "internet", addr=near)
    # Azure: every private range is the VNets' (pods and egress pools included), and the
    # fabric knows, from what the route servers learned, where each part lives.
    private = t.vpc_cidrs if isinstance(t.edge, AwsEdge) else PRIVATE_RANGES
    for cidr in private:
        ipr.route("add", dst=str(cidr), gateway=str(fabric.ip))
    ipr.route("add", dst="0.0.0.0/0", gateway=str(far.ip))
    # Public addresses nobody is mapped to must not bounce between edge and internet.
    ipr.route("add", dst=str(t.edge.public_cidr), type="unreachable")
    inet_ipr = nl(inet)
    _up(inet_ipr, "lo")
    for host in t.internet_hosts:
        inet_ipr.addr("add", index=1, address=str(host.address), prefixlen=32)
    _up(inet_ipr, "edge", addr=far)
    inet_ipr.route("add", dst=str(t.edge.public_cidr), gateway=str(near.ip))


def _build_node(nl: _Netlink, t: Topology, node: Node) -> None:
    zone, vpc, nns = t.zone(node.zone), vpc_ns(t.prefix), node_ns(t.prefix, node.name)
    _veth(nl, vpc, node.vpc_port, nns, "eth0")
    _up(nl(vpc), node.vpc_port, t.underlay_mtu, master=t.bridge(zone.name))
    ipr = nl(nns)
    _up(ipr, "lo")
    _up(ipr, "eth0", t.underlay_mtu, addr=IPv4Interface(f"{node.ip}/{zone.subnet.prefixlen}"))
    ipr.route("add", dst="0.0.0.0/0", gateway=str(zone.router))
    if isinstance(t.edge, AwsEdge):  # Azure's fabric learns pod blocks over BGP, or not at all
        nl(vpc).route("add", dst=str(node.pod_cidr), gateway=str(node.ip))


def _attach(nl: _Netlink, t: Topology, pod: Pod) -> None:
    """Wire `pod` to its node as Calico's CNI does, and route a gateway's IP to the node."""
    node, nns, pns = t.node(pod.node), node_ns(t.prefix, pod.node), pod_ns(t.prefix, pod)
    _veth(nl, nns, pod.ifname, pns, "eth0")
    # proxy_delay 0: answer the pod's ARP for 169.254.1.1 at once, not up to 0.8 s later.
    procs.sysctl(
        nns,
        {f"net/ipv4/conf/{pod.ifname}/proxy_arp": 1, f"net/ipv4/neigh/{pod.ifname}/proxy_delay": 0},
    )
    host_end = _up(nl(nns), pod.ifname, t.pod_mtu)
    nl(nns).route("add", dst=f"{pod.ip}/32", oif=host_end, scope=_SCOPE_LINK)
    ipr = nl(pns)
    _up(ipr, "lo")
    eth0 = _up(ipr, "eth0", t.pod_mtu, addr=IPv4Interface(f"{pod.ip}/32"))
    ipr.route("add", dst=f"{POD_GATEWAY}/32", oif=eth0, scope=_SCOPE_LINK)
    ipr.route("add", dst="0.0.0.0/0", gateway=str(POD_GATEWAY), oif=eth0)
    if isinstance(pod, GatewayPod) and isinstance(t.edge, AwsEdge):  # Azure: over BGP
        nl(vpc_ns(t.prefix)).route("replace", dst=f"{pod.ip}/32", gateway=str(node.ip))


# --- building and taking down -----------------------------------------------------------


@contextlib.contextmanager
def _undo_on_failure(undo: Callable[[], None]) -> Iterator[None]:
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            undo()
        raise


@_blocking
def build(topology: Topology) -> None:
    """Build the whole lab. Refuses (FileExistsError) if any `<prefix>-…` namespace exists;
    on any failure tears the prefix down and re-raises."""
    t, existing = topology, lab_namespaces(topology.prefix)
    if existing:
        raise FileExistsError(f"lab {t.prefix} already has namespaces: {', '.join(existing)}")
    with _undo_on_failure(lambda: teardown(t.prefix)):
        infra = (vpc_ns(t.prefix), edge_ns(t.prefix))
        _create(infra + tuple(node_ns(t.prefix, n.name) for n in t.nodes), forwarding=True)
        _create((internet_ns(t.prefix), *(pod_ns(t.prefix, p) for p in t.pods)), forwarding=False)
        _create(tuple(rs_ns(t.prefix, rs) for rs in t.route_servers()), forwarding=False)
        _create(tuple(pod_ns(t.prefix, g) for g in t.gateways), forwarding=True)
        with _Netlink() as nl:
            _build_vpc(nl, t)
            _build_edge(nl, t)
            _build_hub(nl, t)
            for node in t.nodes:
                _build_node(nl, t, node)
            for pod in t.workloads():
                _attach(nl, t, pod)
        procs.nft(edge_ns(t.prefix), edge_ruleset(t))
        for node in t.nodes:
            procs.nft(node_ns(t.prefix, node.name), node_ruleset(t, node))


@_blocking
def add_pod(topology: Topology, pod: Pod) -> None:
    """Create `pod`'s namespace and wire it to its node, which `topology` must hold (the pod
    itself need not be in it). A gateway pod also gets its VPC route and, if it has one, its
    Elastic IP. On failure the pod's namespace is removed before re-raising."""
    netns = pod_ns(topology.prefix, pod)
    if os.path.exists(NETNS_DIR / netns):
        raise FileExistsError(f"namespace {netns} exists")
    with _undo_on_failure(lambda: _delete(topology, pod)):
        _create((netns,), forwarding=isinstance(pod, GatewayPod))
        with _Netlink() as nl:
            _attach(nl, topology, pod)
        if isinstance(pod, GatewayPod) and pod.elastic_ip is not None:
            associate_eip(topology.prefix, pod.elastic_ip, pod.ip)


@_blocking
def remove_pod(topology: Topology, pod: Pod) -> None:
    """Undo `add_pod`: for a gateway, drop its EIP mapping and its VPC route (only if it
    still points at this pod's node: the gateway may already live elsewhere); then kill the
    pod's processes, delete its veth and its namespace. Idempotent."""
    if isinstance(pod, GatewayPod) and isinstance(topology.edge, AwsEdge):
        if pod.elastic_ip is not None:
            disassociate_eip(topology.prefix, pod.elastic_ip, pod.ip)
        unroute_gateway_ip(topology.prefix, pod.ip, topology.node(pod.node).ip)
    _delete(topology, pod)


def _delete(t: Topology, pod: Pod) -> None:
    """Delete the node's end of the veth first: namespace destruction is asynchronous, and a
    pod re-created at once would find its interface name still taken."""
    with contextlib.suppress(NetlinkError, IndexError, OSError), _Netlink() as nl:
        nl(node_ns(t.prefix, pod.node)).link("del", ifname=pod.ifname)
    _delete_namespace(pod_ns(t.prefix, pod))


@_blocking
def route_gateway_ip(prefix: str, ip: IPv4Address, node_ip: IPv4Address) -> None:
    """Route a gateway pod's IP (/32) to the node hosting it, as AWS does for an ENI's
    secondary IP; replaces any route it had (the gateway moved)."""
    with _Netlink() as nl:
        nl(vpc_ns(prefix)).route("replace", dst=f"{ip}/32", gateway=str(node_ip))


@_blocking
def unroute_gateway_ip(prefix: str, ip: IPv4Address, node_ip: IPv4Address | None = None) -> None:
    """Remove the VPC's route to a gateway IP; with `node_ip`, only if it points there."""
    via = {"gateway": str(node_ip)} if node_ip is not None else {}
    with contextlib.suppress(NetlinkError, FileNotFoundError), _Netlink() as nl:
        nl(vpc_ns(prefix)).route("del", dst=f"{ip}/32", **via)


def associate_eip(prefix: str, eip: IPv4Address, private_ip: IPv4Address) -> None:
    """Map an Elastic IP 1:1 to a private IP at the edge, replacing in the same transaction
    any mapping of either. Live connections keep the NAT they started with (conntrack)."""
    stale = {e: p for e, p in eip_associations(prefix).items() if eip == e or private_ip == p}
    procs.nft(
        edge_ns(prefix),
        _unmap(stale)
        + f"add element ip {TABLE} eip_in {{ {eip} : {private_ip} }}\n"
        + f"add element ip {TABLE} eip_out {{ {private_ip} : {eip} }}\n",
    )


def disassociate_eip(prefix: str, eip: IPv4Address, private_ip: IPv4Address | None = None) -> None:
    """Remove the EIP's mapping (with `private_ip`: only if mapped to it). Idempotent."""
    current = eip_associations(prefix).get(eip)
    if current is not None and private_ip in (None, current):
        procs.nft(edge_ns(prefix), _unmap({eip: current}))


def _unmap(pairs: Mapping[IPv4Address, IPv4Address]) -> str:
    return "".join(
        f"delete element ip {TABLE} eip_in {{ {e} }}\ndelete element ip {TABLE} eip_out {{ {p} }}\n"
        for e, p in pairs.items()
    )


def eip_associations(prefix: str) -> dict[IPv4Address, IPv4Address]:
    """The edge's current EIP -> private IP map, read from the kernel ({} without an edge)."""
    if not (NETNS_DIR / edge_ns(prefix)).exists():
        return {}
    for item in procs.nft_json(edge_ns(prefix), "list", "map", "ip", TABLE, "eip_in")["nftables"]:
        if "map" in item:
            return {IPv4Address(k): IPv4Address(v) for k, v in item["map"].get("elem", [])}
    return {}


def _delete_namespace(netns: str) -> None:
    procs.kill_netns(netns)
    with contextlib.suppress(FileNotFoundError):
        pr_netns.remove(netns)


def teardown(prefix: str, root: Path | None = None) -> None:
    """Stop the lab's recorded processes (host-side ones included), kill whatever else runs
    in its namespaces and delete every `<prefix>-…` namespace. Idempotent; carries on past
    errors and raises the first one at the end. Leaves the state directory alone."""
    errors: list[Exception] = []
    try:
        procs.kill_recorded(state.load_processes(prefix, root))
    except Exception as e:
        errors.append(e)
    for netns in lab_namespaces(prefix):
        try:
            _delete_namespace(netns)
        except Exception as e:
            errors.append(e)
    if errors:
        raise errors[0]
