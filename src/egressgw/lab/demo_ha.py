"""High availability on a running lab: failover trials and `egressgw lab demo-ha`.

- `balance`: point netshoot at a gateway through a freshly built nexthop group, so every
  replica holds its share of buckets (a member that joins a live resilient group only takes
  buckets idle for two minutes: a replica that came back would otherwise carry nothing).
- `run_trial`: with `traffic.Traffic` running from netshoot (a new connection every 20 ms,
  long TCP and UDP flows through every replica), kill or partition one replica and record
  what the echo service saw, plus when the client node's kernel dropped the replica from its
  group (`NexthopMonitor`, detection). `recover` undoes the fault.
- `ha_demo`: two replicas of egw-1, kill one, and the timeline (`HaDemo`).

Failover (restoration) time: from the fault until a new connection started after the last
failed one was answered, through the survivor. This module prints nothing (the CLI renders).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, Literal

from egressgw.lab import chaos, procs
from egressgw.lab.chaos import Replica
from egressgw.lab.demo import CLIENT, CLIENT_NAME, CLIENT_NAMESPACE, SELECTOR
from egressgw.lab.running import LabHandle, with_store
from egressgw.lab.topology import node_ns, pod_ns
from egressgw.lab.traffic import Attempt, Flow, Traffic, TrafficRecord, TrafficSettings, sample

Fault = Literal["kill", "partition"]
Progress = Callable[[str], None]
TARGET_HOST = "ifconfig.me"
DEMO_GATEWAY = "egw-1"
GOAL_SECONDS = 1.0
DEFAULT_TRAFFIC = TrafficSettings()


def _quiet(_message: str) -> None:
    pass


# --- the kernel's view: when did the group lose a member ------------------------------------

_GROUP = re.compile(r"^id (\d+) group (\S+)")


def nexthops(netns: str) -> list[dict[str, Any]]:
    """`ip -j nexthop show` in `netns`."""
    done = procs.exec_in(None, ["ip", "-j", "-n", netns, "nexthop", "show"])
    return list(json.loads(done.stdout or "[]")) if done.returncode == 0 else []


def member_of(netns: str, gateway: IPv4Address) -> tuple[int, set[int]] | None:
    """The nexthop id of `gateway` in `netns` and the groups holding it."""
    found = nexthops(netns)
    member = next((n["id"] for n in found if n.get("gateway") == str(gateway)), None)
    if member is None:
        return None
    return member, {n["id"] for n in found if member in {m["id"] for m in n.get("group", [])}}


class NexthopMonitor:
    """`ip monitor nexthop` in a namespace, each event stamped when it arrived."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.events: list[tuple[float, str]] = []
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> NexthopMonitor:
        if not (procs.NETNS_DIR / self.netns).exists():
            raise chaos.ChaosError(f"namespace {self.netns} does not exist")
        argv = ["ip", "-n", self.netns, "monitor", "nexthop"]
        self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self.events.append((time.monotonic(), line.strip()))

    def __exit__(self, *_: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)

    def dropped(self, groups: set[int], member: int, since: float) -> float | None:
        """When one of `groups` was first replaced without `member` after `since`."""
        for at, line in self.events:
            found = _GROUP.match(line)
            if at < since or found is None or int(found.group(1)) not in groups:
                continue
            if member not in {int(m.split(",")[0]) for m in found.group(2).split("/")}:
                return at
        return None


# --- steering netshoot ----------------------------------------------------------------------


def steer(handle: LabHandle, gateway: str | None) -> None:
    """Point netshoot at `gateway` by its selector annotation (None: remove it)."""
    if gateway is None:
        with_store(handle, lambda res: res.patch_annotations(CLIENT, {}, [SELECTOR]))
    else:
        value = {SELECTOR: f"egress-gateway == '{gateway}'"}
        with_store(handle, lambda res: res.patch_annotations(CLIENT, value))


def client_ns(handle: LabHandle) -> str:
    pod = handle.topology().find(CLIENT_NAMESPACE, CLIENT_NAME)
    if pod is None:
        raise LookupError(f"pod {CLIENT_NAMESPACE}/{CLIENT_NAME} is not wired in the lab")
    return pod_ns(handle.prefix, pod)


def client_node_ns(handle: LabHandle) -> str:
    pod = handle.topology().find(CLIENT_NAMESPACE, CLIENT_NAME)
    assert pod is not None
    return node_ns(handle.prefix, pod.node)


def target(handle: LabHandle) -> IPv4Address:
    """The echo service the traffic goes to (the lab's ifconfig.me)."""
    return next(h.address for h in handle.topology().internet_hosts if h.name == TARGET_HOST)


def _until_seen(
    ns: str, address: IPv4Address, count: int, accept: Callable[[set[Any]], bool], deadline: float
) -> bool:
    """Sample `count` connections until `accept` takes the set of sources seen."""
    while not accept(set(sample(ns, address, count))):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def balance(handle: LabHandle, gateway: str, timeout: float = 20.0) -> list[Replica]:
    """Point netshoot at `gateway` once every replica is ready; returns the replicas once
    the echo service has seen each of them (a replica that came back is in the fresh table
    its client node gives new connections, so new connections reach it at once)."""
    deadline = time.monotonic() + timeout
    ns, address = client_ns(handle), target(handle)
    steer(handle, gateway)
    while time.monotonic() < deadline:
        reps = [r for r in chaos.replicas(handle, gateway) if not r.terminating]
        for r in reps:
            chaos.wait_ready(handle, r.pod, max(0.1, deadline - time.monotonic()))
        public = {r.public_ip for r in reps}
        if _until_seen(ns, address, 24, public.issubset, min(deadline, time.monotonic() + 3)):
            return reps
    raise chaos.ChaosError(f"netshoot never saw every replica of {gateway} in {timeout:g}s")


# --- a trial --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One fault and what the traffic saw around it (times are time.monotonic())."""

    fault: Fault
    gateway: str
    victim: Replica
    survivors: tuple[Replica, ...]
    fault_at: float  # the fault was being injected from here...
    fault_done: float  # ...to here
    detected_at: float | None  # the client node's group lost the victim
    traffic: TrafficRecord
    timeout: float  # a short connection unanswered this long failed

    @property
    def replicas(self) -> tuple[Replica, ...]:
        return tuple(sorted((self.victim, *self.survivors), key=lambda r: r.name))

    @property
    def detection_s(self) -> float | None:
        return None if self.detected_at is None else self.detected_at - self.fault_at

    @property
    def failed(self) -> list[Attempt]:
        """Short connections the fault could have touched that were not answered."""
        since = self.fault_at - self.timeout
        return [a for a in self.traffic.attempts if not a.ok and a.start >= since]

    @property
    def restoration_s(self) -> float | None:
        """Fault -> answer of the first connection started after the last failed one
        (0 if none failed; None if none succeeded after it)."""
        failed = self.failed
        if not failed:
            return 0.0
        last = max(a.start for a in failed)
        later = [a.end for a in self.traffic.attempts if a.ok and a.start > last]
        return min(later) - self.fault_at if later else None

    @property
    def via_victim_after(self) -> int:
        """Connections started after the fault that the echo saw from the victim."""
        after = [a for a in self.traffic.attempts if a.start > self.fault_done]
        return sum(a.seen == self.victim.public_ip for a in after)

    def flows_through(self, replicas: Sequence[Replica]) -> list[Flow]:
        public = {r.public_ip for r in replicas}
        return [f for f in self.traffic.flows if f.address in public]

    @property
    def disturbed(self) -> list[Flow]:
        """Flows pinned to a survivor that were reset, moved or lost a message."""
        return [f for f in self.flows_through(self.survivors) if f.disturbed]

    @property
    def ok(self) -> bool:
        restored = self.restoration_s
        survivors = self.flows_through(self.survivors)
        return (restored is not None and restored <= GOAL_SECONDS and not self.disturbed
                and bool(survivors) and self.via_victim_after == 0)  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        at = self.fault_at
        return {
            "fault": self.fault,
            "gateway": self.gateway,
            "victim": self.victim.name,
            "replicas": [_replica_dict(r) for r in self.replicas],
            "detection_ms": _ms(self.detection_s),
            "failover_ms": _ms(self.restoration_s),
            "connections": len(self.traffic.attempts),
            "failed": len(self.failed),
            "via_victim_after_fault": self.via_victim_after,
            "survivor_flows": len(self.flows_through(self.survivors)),
            "survivor_flows_disturbed": len(self.disturbed),
            "flows": [
                {**f.as_dict(), "error_at_ms": None if f.error is None else _ms(f.error[0] - at)}
                for f in self.traffic.flows
            ],
            "ok": self.ok,
        }


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def _replica_dict(r: Replica) -> dict[str, Any]:
    return {"name": r.name, "node": r.pod.node, "ip": str(r.pod.ip), "public_ip": str(r.public_ip)}


def _inject(handle: LabHandle, fault: Fault, pod: str) -> None:
    if fault == "kill":
        chaos.kill_gateway(handle, pod)
    else:
        chaos.partition(handle, pod)


def run_trial(
    handle: LabHandle,
    gateway: str,
    fault: Fault = "kill",
    victim: str | None = None,
    *,
    before: float = 0.5,
    after: float = 2.0,
    settings: TrafficSettings = DEFAULT_TRAFFIC,
) -> Trial:
    """Balance netshoot over `gateway`, run traffic for `before` s, inject `fault` into
    `victim` (a replica's pod name; default the first), keep watching for `after` s. The
    fault stays: `recover` undoes it."""
    reps = balance(handle, gateway)
    chosen = next((r for r in reps if r.name == victim), None) if victim else reps[0]
    if chosen is None or len(reps) < 2:
        raise chaos.ChaosError(f"{gateway} needs 2+ ready replicas, one named {victim}")
    survivors = tuple(r for r in reps if r is not chosen)
    node = client_node_ns(handle)
    member = member_of(node, chosen.pod.ip)
    with (
        NexthopMonitor(node) as monitor,
        Traffic(client_ns(handle), target(handle), settings) as traffic,
    ):
        traffic.start(expect=[r.public_ip for r in reps])
        time.sleep(before)
        fault_at = time.monotonic()
        _inject(handle, fault, f"{chosen.pod.namespace}/{chosen.name}")
        fault_done = time.monotonic()
        time.sleep(after)
        record = traffic.stop()
    detected = None if member is None else monitor.dropped(member[1], member[0], fault_at)
    return Trial(
        fault, gateway, chosen, survivors, fault_at, fault_done, detected, record, settings.timeout
    )


def recover(handle: LabHandle, trial: Trial, wait: float | None = 15.0) -> None:
    """Undo the trial's fault (a killed pod comes back; a partition heals)."""
    pod = f"{trial.victim.pod.namespace}/{trial.victim.name}"
    if trial.fault == "kill":
        chaos.revive_gateway(handle, pod, wait)
    else:
        chaos.partition(handle, pod, heal=True)
        if wait is not None:
            chaos.wait_ready(handle, trial.victim.pod, wait)


# --- the demo -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    """One slice of the timeline: short connections answered via each replica, failed."""

    start: float  # seconds from the fault
    via: tuple[int, ...]  # per replica, in `Trial.replicas` order
    other: int  # answered from any other source
    failed: int


def timeline(trial: Trial, step: float = 0.1) -> list[Bucket]:
    """The short connections by start time, in slices of `step` seconds."""
    order = {r.public_ip: i for i, r in enumerate(trial.replicas)}
    slices: dict[int, list[int]] = {}
    for a in trial.traffic.attempts:
        row = slices.setdefault(int((a.start - trial.fault_at) // step), [0] * (len(order) + 2))
        row[order[a.seen] if a.seen in order else (len(order) if a.ok else len(order) + 1)] += 1
    return [
        Bucket(round(k * step, 3), tuple(r[:-2]), r[-2], r[-1]) for k, r in sorted(slices.items())
    ]


@dataclass(frozen=True)
class HaDemo:
    prefix: str
    trial: Trial
    step: float = 0.1

    @property
    def ok(self) -> bool:
        return self.trial.ok

    def as_dict(self) -> dict[str, Any]:
        names = [r.name for r in self.trial.replicas]
        buckets = [
            {
                "t_ms": round(b.start * 1000),
                "via": dict(zip(names, b.via, strict=True)),
                "other": b.other,
                "failed": b.failed,
            }
            for b in timeline(self.trial, self.step)
        ]
        return {"lab": self.prefix, **self.trial.as_dict(), "timeline": buckets}


def ha_demo(handle: LabHandle, progress: Progress = _quiet, gateway: str = DEMO_GATEWAY) -> HaDemo:
    """Two replicas of `gateway` (each with an Elastic IP), netshoot's traffic through both,
    kill one; the gateway, its replicas and netshoot are put back as they were."""
    original = chaos.gateway_manifest(handle, gateway)
    trial = None
    try:
        progress(f"{gateway}: two replicas, each with its own Elastic IP")
        chaos.add_elastic_ips(handle, gateway, 2)
        chaos.scale(handle, gateway, 2)
        victim = chaos.wait_replicas(handle, gateway, 2)[-1].name
        progress(f"netshoot -> {gateway}: a new connection every 20 ms, long TCP and UDP flows")
        progress(f"killing {victim} after 1 s")
        trial = run_trial(handle, gateway, "kill", victim, before=1.0, after=3.0)
    finally:
        if trial is not None:
            recover(handle, trial, wait=None)
        steer(handle, None)
        chaos.restore_gateway(handle, original)
    return HaDemo(handle.prefix, trial)
