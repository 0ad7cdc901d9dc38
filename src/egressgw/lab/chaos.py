"""Faults and changes a lab can suffer, for the HA demo, benchmark and tests.

- `kill_gateway`: the pod dies as a crashed pod or node would: its gateway process gets
  SIGKILL and its eth0 goes down. The store still lists the pod (as Kubernetes does until
  it notices), and the lab's kubelet restarts the process within its resync period; the
  link stays down until `revive_gateway`, which plays the container coming back.
- `partition`: the gateway's path is cut while its process lives: an nft table in the pod's
  namespace drops everything in and out of eth0 (`heal=True` removes it).
- `stop_gateway`: a graceful stop, as `kubectl delete --grace-period` asks for it: the Pod
  gets `deletionTimestamp` (now + grace) and `deletionGracePeriodSeconds`; the controller
  deletes it when the time is up and creates its replacement.
- `scale`, `add_elastic_ips`, `set_failure_detection`: changes to an EgressGateway.

Must not: touch anything outside the lab's namespaces (every `ip`/`nft` call names a lab
namespace that exists; `ip -n` never falls back to the host's), or decide anything the
controller, kubelet or agents own: it acts on the store and the kernel as a user or a
fault would.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from typing import Any

from egressgw.calc.gateways import ELASTIC_IP_ANNOTATION, GATEWAY_ANNOTATION
from egressgw.lab import procs, state
from egressgw.lab.registry import kubelet_root
from egressgw.lab.running import LabHandle, edited, with_store
from egressgw.lab.status import probe
from egressgw.lab.topology import POD_GATEWAY, AwsEdge, GatewayPod, pod_ns
from egressgw.model import EgressGateway, Pod, parsing

CHAOS_TABLE = "egressgw_chaos"
_TIMESTAMP = "%Y-%m-%dT%H:%M:%S.%fZ"


class ChaosError(RuntimeError):
    """A fault could not be injected or healed; the message says which step failed."""


@dataclass(frozen=True)
class Replica:
    """One gateway pod of an EgressGateway as the store and the lab see it."""

    gateway: str
    pod: GatewayPod
    public_ip: IPv4Address  # what the internet sees: its Elastic IP, else its zone's NAT
    terminating: bool

    @property
    def name(self) -> str:
        return self.pod.name


# --- finding things -------------------------------------------------------------------------


def find_gateway(handle: LabHandle, pod: str) -> GatewayPod:
    """The gateway pod NAMESPACE/NAME (or NAME in default) of the lab."""
    namespace, _, name = pod.rpartition("/")
    found = handle.topology().find(namespace or "default", name)
    if not isinstance(found, GatewayPod):
        raise LookupError(f"lab {handle.prefix} has no gateway pod {pod!r}")
    return found


def replicas(handle: LabHandle, gateway: str, namespace: str = "default") -> list[Replica]:
    """The wired gateway pods of `gateway`, by name (terminating ones included)."""
    pods = with_store(handle, lambda res: res.list_all("Pod"))[0]
    topology = handle.topology()
    found = []
    for p in pods:
        if not isinstance(p, Pod) or p.metadata.annotations.get(GATEWAY_ANNOTATION) != gateway:
            continue
        lab_pod = topology.find(p.metadata.namespace or "default", p.metadata.name)
        if not isinstance(lab_pod, GatewayPod) or lab_pod.namespace != namespace:
            continue
        zone = topology.node(lab_pod.node).zone
        public = lab_pod.elastic_ip or topology.nat_address(zone) or lab_pod.ip
        terminating = p.metadata.deletion_timestamp is not None
        found.append(Replica(gateway, lab_pod, public, terminating))
    return sorted(found, key=lambda r: r.name)


def wait_replicas(
    handle: LabHandle, gateway: str, count: int, timeout: float = 30.0
) -> list[Replica]:
    """Wait until `gateway` has `count` live replicas wired and ready; returns them."""
    deadline = time.monotonic() + timeout
    while True:
        live = [r for r in replicas(handle, gateway) if not r.terminating]
        if len(live) == count and all(probe(handle.prefix, r.pod, timeout=0.2) for r in live):
            return live
        if time.monotonic() > deadline:
            raise ChaosError(
                f"{gateway}: {len(live)} replicas ready, not {count}, after {timeout:g}s"
            )
        time.sleep(0.1)


def gateway_process(handle: LabHandle, pod: GatewayPod) -> state.ProcRecord | None:
    """The kubelet's record of the pod's gateway process, if it is alive."""
    records = state.load_processes(handle.prefix, kubelet_root(handle.prefix, handle.root))
    name = f"gateway-{pod.namespace}-{pod.name}"
    return next((r for r in records if r.name == name and procs.alive(r)), None)


# --- kernel faults --------------------------------------------------------------------------


def _ip(netns: str, *args: str) -> None:
    """`ip -n NETNS ARGS`; the namespace must exist (so nothing can land in the host's)."""
    if not (procs.NETNS_DIR / netns).exists():
        raise ChaosError(f"namespace {netns} does not exist")
    done = procs.exec_in(None, ["ip", "-n", netns, *args])
    if done.returncode:
        raise ChaosError(f"ip -n {netns} {' '.join(args)}: {done.stderr.strip()}")


def kill_gateway(handle: LabHandle, pod: str) -> int | None:
    """SIGKILL the pod's gateway process and take its eth0 down; the pid killed (None if no
    process was running). The kubelet restarts the process; the link stays down."""
    target = find_gateway(handle, pod)
    record = gateway_process(handle, target)
    if record is not None:
        try:
            os.killpg(record.pid, signal.SIGKILL)  # its own session: the group is the pod
        except ProcessLookupError:
            record = None
    _ip(pod_ns(handle.prefix, target), "link", "set", "eth0", "down")
    return None if record is None else record.pid


def revive_gateway(handle: LabHandle, pod: str, wait: float | None = 15.0) -> float:
    """Bring a killed pod's eth0 back with the routes the link took with it (Calico's
    wiring: 169.254.1.1 on-link, default via it). With `wait`, wait that long at most until
    the gateway answers its readiness probe again (the kubelet restarts a dead process
    within its resync period). Returns the seconds waited."""
    target = find_gateway(handle, pod)
    netns = pod_ns(handle.prefix, target)
    _ip(netns, "link", "set", "eth0", "up")
    _ip(netns, "route", "replace", f"{POD_GATEWAY}/32", "dev", "eth0", "scope", "link",
        "proto", "static")  # fmt: skip
    _ip(netns, "route", "replace", "default", "via", str(POD_GATEWAY), "dev", "eth0",
        "proto", "static")  # fmt: skip
    return 0.0 if wait is None else wait_ready(handle, target, wait)


def wait_ready(handle: LabHandle, pod: GatewayPod, timeout: float = 15.0) -> float:
    """Wait until `pod` answers GET /readiness with 200 from inside its namespace."""
    started = time.monotonic()
    while not probe(handle.prefix, pod, timeout=0.2):
        if time.monotonic() - started > timeout:
            raise ChaosError(f"{pod.name} not ready after {timeout:g}s")
        time.sleep(0.05)
    return time.monotonic() - started


def partition_script(heal: bool) -> str:
    """nft: drop everything that enters or leaves eth0 (before conntrack sees it)."""
    reset = f"add table inet {CHAOS_TABLE}\ndelete table inet {CHAOS_TABLE}\n"
    if heal:
        return reset
    return (
        reset
        + f"""table inet {CHAOS_TABLE} {{
  chain ingress {{ type filter hook prerouting priority -300; policy accept; iifname "eth0" drop; }}
  chain egress {{ type filter hook postrouting priority 300; policy accept; oifname "eth0" drop; }}
}}
"""
    )


def partition(handle: LabHandle, pod: str, heal: bool = False) -> None:
    """Cut (or with `heal`, restore) the gateway pod's path; its process keeps running."""
    netns = pod_ns(handle.prefix, find_gateway(handle, pod))
    if not (procs.NETNS_DIR / netns).exists():
        raise ChaosError(f"namespace {netns} does not exist")
    procs.nft(netns, partition_script(heal))


# --- store changes --------------------------------------------------------------------------


def stop_gateway(handle: LabHandle, pod: str, grace: int) -> datetime:
    """Ask for the pod's graceful deletion: `deletionTimestamp` = now + `grace` seconds.
    Returns that deadline."""
    if grace < 0:
        raise ValueError("grace must be >= 0")
    target = find_gateway(handle, pod)
    deadline = datetime.now(UTC) + timedelta(seconds=grace)

    def mark(body: dict[str, Any]) -> None:
        body["metadata"]["deletionTimestamp"] = deadline.strftime(_TIMESTAMP)
        body["metadata"]["deletionGracePeriodSeconds"] = grace

    with_store(handle, lambda res: res.update(("Pod", target.namespace, target.name), edited(mark)))
    return deadline


def _gateway_edit(
    handle: LabHandle, gateway: str, namespace: str, edit: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Edit the EgressGateway's manifest JSON in the store; returns it as it was."""
    before: dict[str, Any] = {}

    def remember(body: dict[str, Any]) -> None:
        before.update(parsing.to_dict(parsing.from_dict(body, source="lab chaos")))
        edit(body)

    key = ("EgressGateway", namespace, gateway)
    with_store(handle, lambda res: res.update(key, edited(remember)))
    return before


def scale(handle: LabHandle, gateway: str, replicas: int, namespace: str = "default") -> int:
    """Set the EgressGateway's replicas; returns the previous count."""
    if replicas < 0:
        raise ValueError("replicas must be >= 0")

    def edit(body: dict[str, Any]) -> None:
        body["spec"]["replicas"] = replicas

    return int(_gateway_edit(handle, gateway, namespace, edit)["spec"].get("replicas", 1))


def free_elastic_ips(handle: LabHandle, count: int) -> list[IPv4Address]:
    """`count` addresses of the lab's public range that no NAT gateway, EgressGateway or
    gateway pod holds (the lab's AWS allocates an Elastic IP on first use)."""
    edge = handle.topology().edge
    if not isinstance(edge, AwsEdge):
        raise ChaosError(f"lab {handle.prefix} has no Elastic IPs (not AWS)")
    objects = with_store(handle, lambda res: res.list_all())[0]
    used = {g.address for g in edge.nat_gateways} | set(edge.elastic_ips)
    for obj in objects:
        if isinstance(obj, Pod) and (eip := obj.metadata.annotations.get(ELASTIC_IP_ANNOTATION)):
            used.add(IPv4Address(eip))
        if isinstance(obj, EgressGateway) and obj.spec.aws is not None:
            used |= {IPv4Address(e) for e in obj.spec.aws.elastic_ips}
    free = (ip for ip in edge.public_cidr.hosts() if ip not in used)
    return [next(free) for _ in range(count)]


def gateway_manifest(
    handle: LabHandle, gateway: str, namespace: str = "default"
) -> dict[str, Any]:
    """The EgressGateway as manifest JSON (to put back with `restore_gateway`)."""
    found = with_store(handle, lambda res: res.get(("EgressGateway", namespace, gateway)))
    if found is None:
        raise LookupError(f"no EgressGateway {namespace}/{gateway}")
    return parsing.to_dict(found)


def add_elastic_ips(
    handle: LabHandle, gateway: str, count: int, namespace: str = "default"
) -> list[IPv4Address]:
    """Give the EgressGateway at least `count` Elastic IPs (AWS labs); its list after."""
    body = gateway_manifest(handle, gateway, namespace)
    have = [IPv4Address(e) for e in body["spec"].get("aws", {}).get("elasticIPs", [])]
    wanted = have + free_elastic_ips(handle, max(0, count - len(have)))
    if wanted != have:

        def edit(body: dict[str, Any]) -> None:
            aws = body["spec"].setdefault("aws", {})
            aws["nativeIP"] = "Enabled"
            aws["elasticIPs"] = [str(e) for e in wanted]

        _gateway_edit(handle, gateway, namespace, edit)
    return wanted


def set_failure_detection(
    handle: LabHandle, gateway: str, detection: dict[str, Any] | None, namespace: str = "default"
) -> None:
    """Set (None: remove) the EgressGateway's `egressGatewayFailureDetection`."""

    def edit(body: dict[str, Any]) -> None:
        if detection is None:
            body["spec"].pop("egressGatewayFailureDetection", None)
        else:
            body["spec"]["egressGatewayFailureDetection"] = detection

    _gateway_edit(handle, gateway, namespace, edit)


def restore_gateway(handle: LabHandle, body: dict[str, Any]) -> None:
    """Put an EgressGateway back as `body` (what an edit returned) says it was."""

    def edit(current: dict[str, Any]) -> None:
        current["spec"] = body["spec"]

    meta = body["metadata"]
    _gateway_edit(handle, meta["name"], meta.get("namespace", "default"), edit)
