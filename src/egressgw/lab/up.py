"""Bringing a whole lab up: `up` and the processes it starts.

`up` builds a scenario's namespaces, starts etcd (127.0.0.1 only, data under the lab's
state directory), the internet's echo service, the lab kubelet, the controller and one agent
per node, writes the scenario's objects to the store in one transaction, and waits until
every gateway pod answers its readiness probe. An Azure scenario (one with a hub) also gets
its route servers, firewall and fabric routing (`azure.start_hub`) before the objects are
written, agents that run BIRD (`--bgp-dir`), the state before the walkthrough's patches
(`scenarios.initial_resources`), and `up` waits for every route server's sessions too. The
processes outlive the caller (each runs in its own session); `running.down` stops them and
removes every namespace and file of the lab. `up` records the lab first (`registry`), so
`lab down` finds even a half-built one.

Must not: leave anything behind when `up` fails or is interrupted (`procs.guarded`); bind
anything outside 127.0.0.1 in the host namespace; take down, inspect or find a running lab
(`running`, `status`, `registry` do).
"""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from egressgw import manifests
from egressgw.calc.gateways import GATEWAY_ANNOTATION
from egressgw.lab import azure, netns, procs, scenarios, state
from egressgw.lab.registry import (
    LabInfo,
    failed_logs,
    gateway_dir,
    keep_logs,
    new_prefix,
    save_info,
)
from egressgw.lab.running import LabHandle, down
from egressgw.lab.scenarios import Scenario, Transport
from egressgw.lab.status import probe
from egressgw.lab.topology import Topology, internet_ns, node_ns
from egressgw.model import EgressGateway, Pod, Resource
from egressgw.store import MAX_TXN_OPS, etcd
from egressgw.store.codec import resource_store
from egressgw.store.etcdproc import ETCD_BINARY, HOST, free_port

T = TypeVar("T")
READY_TIMEOUT = 30.0
ETCD_READY = "ready to serve client requests"
Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


@dataclass(frozen=True)
class Commands:
    """The argv prefix of each process the lab runs (the lab appends the arguments)."""

    controller: tuple[str, ...] = tuple(procs.python_argv("egressgw", "controller"))
    agent: tuple[str, ...] = tuple(procs.python_argv("egressgw", "agent"))
    gateway: tuple[str, ...] = tuple(procs.python_argv("egressgw", "gateway"))
    kubelet: tuple[str, ...] = tuple(procs.python_argv("egressgw.lab.kubelet"))


# --- up -------------------------------------------------------------------------------------


def up(
    scenario: Scenario,
    prefix: str | None = None,
    *,
    transport: Transport | None = None,
    root: Path | None = None,
    commands: Commands = Commands(),
    progress: Progress = _quiet,
    timeout: float = READY_TIMEOUT,
) -> LabHandle:
    """Bring `scenario` up as lab `prefix` (default: a fresh `egl…` name) and wait until
    every gateway pod is ready. On any failure or signal, everything is taken down again."""
    scenario = scenario.with_transport(transport) if transport else scenario
    prefix, root = prefix or new_prefix(), state.root_dir(root)
    if state.lab_dir(prefix, root).exists() or netns.lab_namespaces(prefix):
        raise FileExistsError(f"lab {prefix} exists: take it down first")
    resources = manifests.load([scenario.examples]).all
    topology = scenarios.build_topology(scenario, resources, prefix)
    initial = scenarios.initial_resources(scenario, resources)
    objects, rewrites = scenarios.lab_resources(initial, topology)
    info = LabInfo(
        prefix,
        scenario.name,
        scenario.transport,
        f"{HOST}:{free_port()}",
        commands.gateway,
        scenarios.stand_in_notes(topology.internet_hosts),
        tuple(map(str, rewrites)),
    )
    sup = procs.Supervisor(prefix, root)
    finished = False

    def cleanup() -> None:
        if not finished:
            keep_logs(prefix, root)
            down(prefix, root, sup)

    with procs.guarded(cleanup):
        save_info(info, root)  # first, so `lab down` finds even a half-built lab
        progress(f"lab {prefix}: building {len(topology.namespaces())} namespaces")
        isolated(netns.build, topology)
        state.save_topology(topology, root)
        _start_etcd(sup, info, root)
        progress(f"etcd ready on {info.etcd}")
        procs.start_echo(sup, internet_ns(prefix), [h.address for h in topology.internet_hosts])
        if scenario.bgp:
            azure.start_hub(sup, topology, root)
            progress("route servers, firewall and fabric routing started")
        asyncio.run(_apply(info.etcd, objects, progress))
        _start_daemons(sup, info, scenario, topology, commands, root)
        progress("controller, kubelet and agents started")
        wanted = sum(r.spec.replicas for r in initial if isinstance(r, EgressGateway))
        asyncio.run(_wait_ready(LabHandle(info, root, sup), wanted, progress, timeout))
        if scenario.bgp:
            azure.wait_established(topology, root, timeout)
            progress("BGP sessions of every route server established")
        finished = True
    return LabHandle(info, root, sup)


_ISOLATED = """
import pickle, sys
out, sys.stdout = sys.stdout.buffer, sys.stderr
fn, args = pickle.load(sys.stdin.buffer)
try:
    result = (True, fn(*args))
except Exception as err:
    result = (False, err)
out.write(pickle.dumps(result))
"""


def isolated(fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` in a fresh interpreter. pyroute2 forks to create namespaces and to open
    sockets in them, and a fork of a process that runs gRPC threads (any that has talked
    to etcd) crashes; a new process has none. `fn` and `args` must pickle."""
    done = subprocess.run(
        [sys.executable, "-c", _ISOLATED], input=pickle.dumps((fn, args)), capture_output=True
    )
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError(
            f"{fn.__name__} died ({done.returncode}): {done.stderr.decode()[-1500:]}"
        )
    ok, value = pickle.loads(done.stdout)
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _etcd_argv(info: LabInfo, data_dir: Path) -> list[str]:
    client, peer = f"http://{info.etcd}", f"http://{HOST}:{free_port()}"
    return [
        str(ETCD_BINARY),
        f"--name={info.prefix}",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={info.prefix}={peer}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token={info.prefix}",
    ]


def _start_etcd(sup: procs.Supervisor, info: LabInfo, root: Path) -> None:
    """etcd as a lab process (not `EtcdServer`, which dies with the thread that started
    it): the store must outlive `lab up`."""
    argv = _etcd_argv(info, state.lab_dir(info.prefix, root) / "etcd")
    sup.start("etcd", argv, None, ready=ETCD_READY, timeout=20)


async def _apply(endpoint: str, objects: Sequence[Resource], progress: Progress) -> None:
    """All objects in one transaction; more than etcd's limit of operations per
    transaction (128) go in several, in order, and the progress says so."""
    chunks = [objects[i : i + MAX_TXN_OPS] for i in range(0, len(objects), MAX_TXN_OPS)]
    if len(chunks) > 1:
        progress(f"{len(objects)} objects exceed one etcd transaction: {len(chunks)} applies")
    store = await etcd.connect(endpoint)
    try:
        for chunk in chunks:
            await resource_store(store).apply(chunk)
    finally:
        await store.close()
    progress(f"applied {len(objects)} objects")


def _start_daemons(
    sup: procs.Supervisor,
    info: LabInfo,
    scenario: Scenario,
    topology: Topology,
    commands: Commands,
    root: Path,
) -> None:
    # gRPC's fork handlers crash a forked child (pyroute2 forks to open sockets in a
    # namespace) of a process that talks to etcd; the processes' own children inherit this.
    env = {state.ROOT_ENV: str(root), "GRPC_ENABLE_FORK_SUPPORT": "false"}
    sup.start("kubelet", [*commands.kubelet, "--lab", info.prefix], None, env=env)
    zones = [f"--subnet-zone={s}={z}" for s, z in sorted(scenario.subnet_zones.items())]
    sup.start("controller", [*commands.controller, "--etcd", info.etcd, *zones], None, env=env)
    # A tunnel to a gateway pod rides on the pod's eth0 as well as on the node's.
    mtu = min(topology.underlay_mtu, topology.pod_mtu)
    for node in topology.nodes:
        gateways = gateway_dir(info.prefix, node.name, root)
        gateways.mkdir(parents=True, exist_ok=True)
        argv = [
            *commands.agent,
            *("--etcd", info.etcd, "--node", node.name),
            *("--netns", node_ns(info.prefix, node.name), "--transport", info.transport),
            *("--gateway-dir", str(gateways), "--underlay-mtu", str(mtu)),
        ]
        if scenario.bgp:  # BIRD in the node's namespace, its files beside the node's
            argv += ["--bgp-dir", str(azure.bird_dir(info.prefix, node.name, root))]
        sup.start(f"agent-{node.name}", argv, None, env=env)


# --- readiness ------------------------------------------------------------------------------


# --- readiness ------------------------------------------------------------------------------


def _dead(sup: procs.Supervisor) -> str | None:
    """The log tail of the first lab process that has died, if any."""
    for record in sup.records:
        if not procs.alive(record):
            tail = record.log.read_text(errors="replace")[-1500:]
            return f"{record.name} exited (logs in {failed_logs(sup.prefix, sup.root)}):\n{tail}"
    return None


async def _readiness(handle: LabHandle, pods: Sequence[Pod]) -> tuple[str, bool]:
    """A one-line account of how far the lab is, and whether it is all ready."""
    topology = await asyncio.to_thread(handle.topology)
    ready = await asyncio.gather(
        *(asyncio.to_thread(probe, handle.prefix, g) for g in topology.gateways)
    )
    created = [p for p in pods if GATEWAY_ANNOTATION in p.metadata.annotations]
    plain = len(pods) - len(created)
    line = (
        f"gateway pods: {len(created)} created, {len(topology.gateways)} wired, "
        f"{sum(ready)} ready; pods wired: {len(topology.pods)}/{plain}"
    )
    done = all(ready) and len(ready) == len(created) and len(topology.pods) == plain
    return line, done


async def _wait_ready(handle: LabHandle, gateways: int, progress: Progress, timeout: float) -> None:
    """Until every one of the `gateways` gateway pods is ready and every pod is wired."""
    assert handle.supervisor is not None
    deadline = asyncio.get_running_loop().time() + timeout
    store, last = await etcd.connect(handle.info.etcd), ""
    try:
        while True:
            if (death := _dead(handle.supervisor)) is not None:
                raise RuntimeError(death)
            found, _ = await resource_store(store).list_all("Pod")
            line, done = await _readiness(handle, [p for p in found if isinstance(p, Pod)])
            if line != last:
                progress(last := line)
            created = sum(GATEWAY_ANNOTATION in p.metadata.annotations for p in found)
            if done and created == gateways:
                return
            if asyncio.get_running_loop().time() > deadline:
                logs = failed_logs(handle.prefix, handle.root)
                raise TimeoutError(f"lab not ready after {timeout:.0f}s ({line}); logs in {logs}")
            await asyncio.sleep(0.1)
    finally:
        await store.close()
