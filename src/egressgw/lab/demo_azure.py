"""The Azure reference walkthrough (REF-AZ README) on a running `azure` lab.

`lab up azure` leaves the cluster as the README finds it before its patches: the default
pool still exported, no FelixConfiguration, no EgressGatewayPolicy, no annotation. Then:

1. `bgp`: BGPConfiguration (AS 63400, no mesh), both nodes route reflectors, every session
   of every route server and every node's BIRD established;
2. `gateways`: tenant0's pool and its two gateway replicas, one per zone;
3. `routes`: each route server learned the pod blocks and the egress /31s, each from both
   nodes, next hop the originating node, AS path 63400;
4. `disable-bgp-export`: the README's `kubectl patch ippool default-ipv4-ippool`: only the
   egress /31s remain;
5. `bgp-filter`: BGPFilter export-egress-ips (the README's one rule) attached to the route
   server peers: only tenant0's /31s remain;
6. `denied`: curl www.tigera.io from netshoot: the firewall answers 470 (source: the node);
7. `allowed`: egress support on, namespace default -> tenant0: allowed, through a gateway;
8. `policy`: EgressGatewayPolicy egw-policy on namespace default: www.tigera.io (no rule)
   leaves directly and is denied again; 8.8.8.8 goes through tenant0, which the firewall
   sees as tenant0's source but allows only to www.tigera.io.

Each step retries until what it observes is what it expects, or its timeout. Expectations
come from the store (nodes, gateway pods, pools) and the scenario, observations from the
route servers, the fabric's kernel, the firewall and curl. The store is put back to the
starting state however the walk ends. This module prints nothing (the CLI renders).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from egressgw.calc.gateways import GATEWAY_ANNOTATION, ZONE_LABEL
from egressgw.calc.nodeplan import pod_cidrs
from egressgw.lab import azure, observe
from egressgw.lab.demo import DemoResult
from egressgw.lab.hub import DENY_BODY, DENY_STATUS
from egressgw.lab.running import LabHandle, with_store
from egressgw.lab.topology import Topology, pod_ns
from egressgw.lab.walkthrough import FILTER, POLICY_NAME, TENANT, Walkthrough
from egressgw.model import BGPFilter, IPPool, Node, Pod, Resource
from egressgw.model.parsing import to_dict
from egressgw.store.resources import ResourceStore

CLIENT, TIGERA, GOOGLE_DNS = ("default", "netshoot"), "www.tigera.io", "8.8.8.8"
BGP_TIMEOUT, HTTP_TIMEOUT = 15.0, 5.0
Progress = Callable[[str], None]


@dataclass(frozen=True)
class AzureStep:
    step: str
    title: str
    ok: bool
    elapsed_ms: int
    expected: dict[str, Any]
    observed: dict[str, Any]

    def summary(self) -> str:
        """One line of what was observed, for a table."""
        o = self.observed
        if "http" in o:
            seen = ", ".join(f"{s['verdict']} {s['source']}" for s in o["firewall"]) or "nothing"
            return f"HTTP {o['http']['status']} {o['http']['body'][:40]}; firewall: {seen}"
        if "routes" in o:
            nets = sorted(
                {f"{r['network']}→{r['nextHop']}" for rs in o["routes"].values() for r in rs}
            )
            paths = ", ".join(f"{name} {len(rs)} paths" for name, rs in o["routes"].items())
            return f"{paths}: {' '.join(nets) or 'none'}"
        if "pods" in o:
            return ", ".join(f"{p['pod']} {p['node']} ({p['zone']}) {p['ip']}" for p in o["pods"])
        up = [f"{n} {sum(v)}/{len(v)}" for n, v in _states(o.get("route_servers", {})).items()]
        up += [f"{n} {sum(v)}/{len(v)}" for n, v in _states(o.get("nodes", {})).items()]
        return "sessions up: " + ", ".join(up)

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "title": self.title,
            "ok": self.ok,
            "elapsed_ms": self.elapsed_ms,
            "expected": self.expected,
            "observed": self.observed,
        }


def _states(sessions: dict[str, dict[str, Any]]) -> dict[str, list[bool]]:
    return {
        k: [v is True or str(v).startswith("Established") for v in s.values()]
        for k, s in sessions.items()
    }


def _ignore(_item: object) -> None:
    pass


def until(
    check: Callable[[], tuple[bool, dict[str, Any]]], timeout: float
) -> tuple[bool, dict[str, Any], int]:
    """Run `check` until it says ok or `timeout` passes: (ok, last observation, ms taken)."""
    start = time.monotonic()
    while True:
        ok, observed = check()
        elapsed = time.monotonic() - start
        if ok or elapsed > timeout:
            return ok, observed, round(elapsed * 1000)
        time.sleep(0.05)


# --- the walk -------------------------------------------------------------------------------


class Walk:
    def __init__(
        self, handle: LabHandle, progress: Progress, on_step: Callable[[AzureStep], None]
    ) -> None:
        self.handle, self.progress, self.on_step = handle, progress, on_step
        self.topology: Topology = handle.topology()
        self.walkthrough = Walkthrough.load(handle)
        self.steps: list[AzureStep] = []

    def store(self, work: Callable[[ResourceStore[Resource]], Any]) -> Any:
        return with_store(self.handle, work)

    def record(
        self,
        step: str,
        title: str,
        check: Callable[[], tuple[bool, dict[str, Any]]],
        expected: dict[str, Any],
        timeout: float,
    ) -> None:
        self.progress(f"{step}: {title}")
        ok, observed, ms = until(check, timeout)
        self.steps.append(found := AzureStep(step, title, ok, ms, expected, observed))
        self.on_step(found)

    def objects(self) -> list[Resource]:
        found, _ = self.store(lambda res: res.list_all())
        return list(found)

    # --- BGP ---

    def sessions(self) -> tuple[bool, dict[str, Any]]:
        t, root = self.topology, self.handle.root
        servers = {
            rs.name: {str(n.address): n.established for n in azure.neighbors(t, rs.name, root)}
            for rs in t.route_servers()
        }
        birds = {
            n.name: {
                p.name: p.info
                for p in azure.node_bird(t, n.name, root).protocols()
                if p.proto == "BGP"
            }
            for n in t.nodes
        }
        ok = all(all(s.values()) and s for s in servers.values()) and all(
            b and all(v.startswith("Established") for v in b.values()) for b in birds.values()
        )
        return ok, {"route_servers": servers, "nodes": birds}

    def bgp_step(self) -> None:
        config = self.walkthrough.before[("BGPConfiguration", "default")]
        nodes = [r for r in self.objects() if isinstance(r, Node)]
        expected = {
            "bgpConfiguration": to_dict(config)["spec"],
            "routeReflectors": sorted(
                n.metadata.name for n in nodes if n.metadata.labels.get("route-reflector") == "true"
            ),
            "sessions": "every route server and every node's BIRD: Established",
        }
        self.record(
            "bgp", "BGP configuration and route reflectors", self.sessions, expected, BGP_TIMEOUT
        )

    def gateway_pods(self, objects: Sequence[Resource]) -> list[Pod]:
        return sorted(
            (
                p
                for p in objects
                if isinstance(p, Pod) and p.metadata.annotations.get(GATEWAY_ANNOTATION) == TENANT
            ),
            key=lambda p: p.metadata.name,
        )

    def gateways_step(self) -> None:
        pool = self.walkthrough.before[("IPPool", "tenant0-pool")]
        assert isinstance(pool, IPPool)
        zones = {
            n.metadata.name: n.metadata.labels.get(ZONE_LABEL)
            for n in self.objects()
            if isinstance(n, Node)
        }

        def check() -> tuple[bool, dict[str, Any]]:
            pods = self.gateway_pods(self.objects())
            listed = [
                {
                    "pod": p.metadata.name,
                    "node": p.spec.node_name,
                    "zone": zones.get(p.spec.node_name or ""),
                    "ip": str(p.ip),
                }
                for p in pods
            ]
            spread = len({z["zone"] for z in listed}) == len(listed) == 2
            return spread and all(p.ip is not None and p.ip in pool.spec.cidr for p in pods), {
                "pods": listed
            }

        expected = {
            "pool": str(pool.spec.cidr),
            "blockSize": pool.spec.effective_block_size,
            "replicas": 2,
            "zones": "one per zone",
        }
        self.record(
            "gateways",
            "tenant0 pool and gateway: 2 replicas spread over zones",
            check,
            expected,
            BGP_TIMEOUT,
        )

    def originated(
        self, pod_blocks: bool, within: IPv4Network | None
    ) -> dict[IPv4Network, IPv4Address]:
        """What the nodes should advertise: their pod blocks (if exported) and each gateway
        pod's block, limited to `within` when a filter says so."""
        objects = self.objects()
        nodes = {n.metadata.name: n for n in objects if isinstance(n, Node)}
        pools = [
            p for p in objects if isinstance(p, IPPool) and isinstance(p.spec.cidr, IPv4Network)
        ]
        found: dict[IPv4Network, IPv4Address] = {}
        for n in nodes.values():
            ip = n.internal_ip
            if pod_blocks and ip is not None:
                found |= dict.fromkeys(pod_cidrs(n), ip)
        for pod in (
            p
            for p in objects
            if isinstance(p, Pod) and GATEWAY_ANNOTATION in p.metadata.annotations
        ):
            node = nodes.get(pod.spec.node_name or "")
            pool = next((p for p in pools if pod.ip is not None and pod.ip in p.spec.cidr), None)
            if node is None or node.internal_ip is None or pool is None or pod.ip is None:
                continue
            found[IPv4Network(f"{pod.ip}/{pool.spec.effective_block_size}", strict=False)] = (
                node.internal_ip
            )
        return {net: hop for net, hop in found.items() if within is None or net.subnet_of(within)}

    def routes_step(
        self, step: str, title: str, pod_blocks: bool, within: IPv4Network | None
    ) -> None:
        t, root = self.topology, self.handle.root
        edge = azure.azure_edge(t)

        def check() -> tuple[bool, dict[str, Any]]:
            want = self.originated(pod_blocks, within)
            ok = all(
                azure.as_paths(azure.learned(t, rs.name, root))
                == observe.expected_paths(want, rs.peers, edge.peer_as)
                for rs in t.route_servers()
            )
            observed = {
                "routes": {
                    rs.name: azure.learned_azure(t, rs.name, root) for rs in t.route_servers()
                },
                "fabric": {
                    str(net): [str(h) for h in hops] for net, hops in azure.fabric(t).items()
                },
            }
            return ok, observed

        want = self.originated(pod_blocks, within)
        expected = {
            "routes": [
                {"network": str(n), "nextHop": str(h), "asPath": str(edge.peer_as)}
                for n, h in sorted(want.items())
            ],
            "sourcePeers": "every node each route server peers with",
        }
        self.record(step, title, check, expected, BGP_TIMEOUT)

    # --- HTTP through the firewall ---

    def http_step(
        self, step: str, title: str, host: str, answer: tuple[int, str], sources: set[IPv4Address]
    ) -> None:
        """GET / of `host` from netshoot must be answered `answer` (status, body), and the
        firewall must have seen it from one of `sources`."""
        t = self.topology
        target = next(h for h in t.internet_hosts if host in (h.name, str(h.stands_for)))
        client = t.find(*CLIENT)
        assert client is not None
        name = target.name if "." in target.name else None

        def check() -> tuple[bool, dict[str, Any]]:
            observe.clear_seen(t.prefix)
            got = observe.http(pod_ns(t.prefix, client), target.address, name)
            seen = observe.firewall_seen(t.prefix)
            ok = (got.status, got.body) == answer and bool(seen)
            ok = ok and {s.source for s in seen} <= sources
            return ok, {"http": got.as_dict(), "firewall": [s.as_dict() for s in seen]}

        expected = {
            "url": f"http://{host}/ ({target.address})",
            "http": {"status": answer[0], "body": answer[1]},
            "firewall_sources": sorted(map(str, sources)),
        }
        self.record(step, title, check, expected, HTTP_TIMEOUT)

    def client_node_ip(self) -> IPv4Address:
        client = self.topology.find(*CLIENT)
        assert client is not None
        return self.topology.node(client.node).ip

    def filter_cidr(self) -> IPv4Network:
        """What the README's BGPFilter lets out: the cidr of its one rule."""
        flt = self.walkthrough.after[("BGPFilter", FILTER)]
        assert isinstance(flt, BGPFilter)
        cidr = flt.spec.export_v4[0].cidr
        assert isinstance(cidr, IPv4Network)
        return cidr

    def tenant_ips(self) -> set[IPv4Address]:
        return {p.ip for p in self.gateway_pods(self.objects()) if p.ip is not None}

    # --- the whole walkthrough ---

    def run(self) -> DemoResult[AzureStep]:
        w = self.walkthrough
        self.store(w.reset)
        try:
            self.walk(w)
        finally:
            self.store(w.reset)
        return DemoResult(self.handle.prefix, self.handle.info.stand_ins, tuple(self.steps))

    def walk(self, w: Walkthrough) -> None:
        self.bgp_step()
        self.gateways_step()
        self.routes_step("routes", "route servers learn pod blocks and egress /31s", True, None)
        self.store(w.disable_export)
        title = "disableBGPExport on the default pool: egress /31s only"
        self.routes_step("disable-bgp-export", title, False, None)
        self.store(w.attach_filter)
        within = self.filter_cidr()
        title = f"BGPFilter {FILTER} on the route-server peers: {within} only"
        self.routes_step("bgp-filter", title, False, within)
        public = azure.azure_edge(self.topology).public_address
        node, deny = {self.client_node_ip()}, (DENY_STATUS, DENY_BODY)
        title = "curl www.tigera.io from netshoot: denied by the firewall"
        self.http_step("denied", title, TIGERA, deny, node)
        self.store(w.enable_egress)
        title = "egress support on, namespace default -> tenant0: allowed"
        self.http_step("allowed", title, TIGERA, (200, str(public)), self.tenant_ips())
        self.store(w.apply_policy)
        title = f"{POLICY_NAME}: www.tigera.io has no rule, leaves directly: denied"
        self.http_step("policy-direct", title, TIGERA, deny, node)
        title = f"{POLICY_NAME}: 8.8.8.8 goes through tenant0, which may only reach www.tigera.io"
        self.http_step("policy-gateway", title, GOOGLE_DNS, deny, self.tenant_ips())


def azure_demo(
    handle: LabHandle,
    progress: Progress = _ignore,
    on_step: Callable[[AzureStep], None] = _ignore,
) -> DemoResult[AzureStep]:
    """Walk the REF-AZ README on the lab `handle` (which runs the `azure` scenario)."""
    return Walk(handle, progress, on_step).run()
