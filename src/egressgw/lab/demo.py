"""The AWS reference demo (REF-AWS README), walked on a running lab.

1. Annotate pod default/netshoot `egress.projectcalico.org/selector: egress-gateway ==
   'egw-N'` for N = 1, 2, 3 in turn; each time fetch the ifconfig.me stand-in from inside
   netshoot and compare the address the echo service saw with egw-N's Elastic IP.
2. Remove it; annotate namespace default `egress.projectcalico.org/egressGatewayPolicy:
   egress-gateway-policy`: 8.8.8.8's stand-in must see egw-5, 4.2.2.2's egw-6, anything
   else (ifconfig.me) egw-4.
3. Remove that too: every destination must see the NAT gateway of netshoot's zone again.

Each check retries for up to 5 s (the dataplane follows the store asynchronously) and
records what the echo service answered. Expected addresses are read from the store (the
gateway pods' Elastic IP annotations) and the lab's topology, never written here. The
annotations are removed however the walk ends. This module runs and measures; it prints
nothing (the CLI renders `DemoResult`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, Generic, Protocol, TypeVar

from egressgw.calc.gateways import ELASTIC_IP_ANNOTATION, GATEWAY_ANNOTATION
from egressgw.lab import procs
from egressgw.lab.running import LabHandle
from egressgw.lab.topology import InternetHost, Topology, pod_ns
from egressgw.lab.topology import Pod as LabPod
from egressgw.model import Pod, Resource
from egressgw.store import etcd
from egressgw.store.codec import resource_store
from egressgw.store.resources import ResKey, ResourceStore

SELECTOR = "egress.projectcalico.org/selector"
POLICY = "egress.projectcalico.org/egressGatewayPolicy"
POLICY_NAME = "egress-gateway-policy"
CLIENT_NAMESPACE, CLIENT_NAME = "default", "netshoot"
CLIENT: ResKey = ("Pod", CLIENT_NAMESPACE, CLIENT_NAME)
NAMESPACE: ResKey = ("Namespace", None, "default")
STEP_TIMEOUT = 5.0
IFCONFIG_ME = "ifconfig.me"
#: The policy walk: which real destination goes through which gateway (REF-AWS's rules).
POLICY_ROUTES = (("8.8.8.8", "egw-5"), ("4.2.2.2", "egw-6"), (IFCONFIG_ME, "egw-4"))


@dataclass(frozen=True)
class DemoStep:
    step: str  # the annotation state: "selector" (netshoot's), "policy" (default's), "reset"
    host: str  # the internet host fetched from ("ifconfig.me")
    destination: IPv4Address  # its lab address
    stands_for: str  # the real address it plays
    via: str  # what should carry the traffic ("egw-1", "NAT us-east-1a")
    expected: tuple[IPv4Address, ...]  # the echo service must see one of these
    seen: IPv4Address | None  # what it saw last (None: no answer)
    ok: bool
    elapsed_ms: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "host": self.host,
            "destination": str(self.destination),
            "stands_for": self.stands_for,
            "via": self.via,
            "expected": [str(e) for e in self.expected],
            "seen": None if self.seen is None else str(self.seen),
            "ok": self.ok,
            "elapsed_ms": self.elapsed_ms,
        }


class Step(Protocol):
    """One checked step of a demo walk (`DemoStep`, `demo_azure.AzureStep`)."""

    @property
    def ok(self) -> bool: ...

    def as_dict(self) -> dict[str, Any]: ...


S = TypeVar("S", bound=Step)


@dataclass(frozen=True)
class DemoResult(Generic[S]):
    """A walked demo (AWS or Azure): the lab, the stand-ins it used and every step."""

    prefix: str
    stand_ins: tuple[str, ...]
    steps: tuple[S, ...]

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lab": self.prefix,
            "ok": self.ok,
            "stand_ins": list(self.stand_ins),
            "steps": [s.as_dict() for s in self.steps],
        }


OnStep = Callable[[DemoStep], None]


def _ignore(_item: object) -> None:
    pass


# --- observing ------------------------------------------------------------------------------


def fetch(netns: str, address: IPv4Address) -> IPv4Address | None:
    """What the echo service at `address` says our source was, asked from `netns`."""
    url = f"http://{address}/"
    done = procs.exec_in(
        netns, ["curl", "-sS", "--noproxy", "*", "--max-time", "1", url], timeout=3
    )
    try:
        return IPv4Address(done.stdout.strip()) if done.returncode == 0 else None
    except ValueError:
        return None


@dataclass(frozen=True)
class _Check:
    step: str
    host: InternetHost
    via: str
    expected: tuple[IPv4Address, ...]


def _observe(netns: str, check: _Check, since: float) -> DemoStep:
    """Fetch until the echo service sees an expected address or STEP_TIMEOUT passes."""
    seen = None
    while True:
        seen = fetch(netns, check.host.address)
        elapsed = time.monotonic() - since
        if seen in check.expected or elapsed > STEP_TIMEOUT:
            break
        time.sleep(0.05)
    return DemoStep(
        check.step,
        check.host.name,
        check.host.address,
        str(check.host.stands_for),
        check.via,
        check.expected,
        seen,
        seen in check.expected,
        round(elapsed * 1000),
    )


# --- the walk -------------------------------------------------------------------------------


def gateway_elastic_ips(pods: Sequence[Resource]) -> dict[str, tuple[IPv4Address, ...]]:
    """Gateway name -> the Elastic IPs of its pods, as the controller annotated them."""
    found: dict[str, set[IPv4Address]] = {}
    for p in pods:
        gateway = p.metadata.annotations.get(GATEWAY_ANNOTATION)
        eip = p.metadata.annotations.get(ELASTIC_IP_ANNOTATION)
        if isinstance(p, Pod) and gateway and eip:
            found.setdefault(gateway, set()).add(IPv4Address(eip))
    return {g: tuple(sorted(e)) for g, e in found.items()}


def _host(topology: Topology, name_or_address: str) -> InternetHost:
    """The internet host called so, or standing in for that address."""
    for h in topology.internet_hosts:
        if name_or_address in (h.name, str(h.stands_for)):
            return h
    raise LookupError(f"the lab has no internet host for {name_or_address}")


def _client(topology: Topology) -> LabPod:
    client = topology.find(CLIENT_NAMESPACE, CLIENT_NAME)
    if client is None:
        raise LookupError(f"pod {CLIENT_NAMESPACE}/{CLIENT_NAME} is not wired in the lab")
    return client


def _plan(topology: Topology, eips: dict[str, tuple[IPv4Address, ...]]) -> list[list[_Check]]:
    """The checks after each of the five annotation states, in order."""
    me = _host(topology, IFCONFIG_ME)
    zone = topology.node(_client(topology).node).zone
    nat = topology.nat_address(zone)
    assert nat is not None
    selector = [[_Check("selector", me, f"egw-{n}", eips.get(f"egw-{n}", ()))] for n in (1, 2, 3)]
    policy = [_Check("policy", _host(topology, d), g, eips.get(g, ())) for d, g in POLICY_ROUTES]
    direct = [_Check("reset", _host(topology, d), f"NAT {zone}", (nat,)) for d, _ in POLICY_ROUTES]
    return [*selector, policy, direct]


async def _annotate(resources: ResourceStore[Resource], stage: int) -> None:
    """Stage 0-2: netshoot selects egw-1..3; 3: the namespace policy; 4: no annotations."""
    if stage < 3:
        await resources.patch_annotations(
            CLIENT, {SELECTOR: f"egress-gateway == 'egw-{stage + 1}'"}
        )
    elif stage == 3:
        await resources.patch_annotations(CLIENT, {}, [SELECTOR])
        await resources.patch_annotations(NAMESPACE, {POLICY: POLICY_NAME})
    else:
        await _reset(resources)


async def _reset(resources: ResourceStore[Resource]) -> None:
    await resources.patch_annotations(CLIENT, {}, [SELECTOR])
    await resources.patch_annotations(NAMESPACE, {}, [POLICY])


async def _walk(
    handle: LabHandle, progress: Callable[[str], None], on_step: OnStep
) -> DemoResult[DemoStep]:
    store = await etcd.connect(handle.info.etcd)
    resources = resource_store(store)
    steps: list[DemoStep] = []
    try:
        pods, _ = await resources.list_all("Pod")
        topology = handle.topology()
        client = _client(topology)
        plan = _plan(topology, gateway_elastic_ips(pods))
        await _reset(resources)  # the README starts with no egress annotation at all
        for stage, checks in enumerate(plan):
            progress(f"{checks[0].step}: {', '.join(c.via for c in checks)}")
            since = time.monotonic()
            await _annotate(resources, stage)
            for check in checks:
                step = await asyncio.to_thread(
                    _observe, pod_ns(handle.prefix, client), check, since
                )
                steps.append(step)
                on_step(step)
                since = time.monotonic()
    finally:
        await _reset(resources)
        await store.close()
    return DemoResult(handle.prefix, handle.info.stand_ins, tuple(steps))


def aws_demo(
    handle: LabHandle,
    progress: Callable[[str], None] = _ignore,
    on_step: OnStep = _ignore,
) -> DemoResult[DemoStep]:
    """Walk the REF-AWS README on the lab `handle` (which runs the `aws` scenario)."""
    return asyncio.run(_walk(handle, progress, on_step))
