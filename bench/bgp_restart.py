"""Benchmark: BIRD dies on the gateway's node -> the agent restarts it; do the route servers
keep the gateway's route meanwhile? (needs root)

Brings up the Azure lab (two nodes running BIRD under their agents, two GoBGP route servers
that are graceful-restart helpers, the VNet fabric programmed from what they learn), turns
egress on for namespace default (tenant0), and on the node hosting gateway tenant0-egw-0:
- N times: SIGKILL its BIRD and let the agent restart it (`bird -R`);
- once: `birdc graceful restart` (BIRD exits telling its peers; the agent restarts it);
- once: `birdc restart all` (every session reset with a Cease notification; BIRD lives on).
Per event, from the moment it is triggered:
- `bird back`: a new BIRD answers on the node's control socket (killed ones only);
- `established`: every BGP session of the node's BIRD is Established again, and both route
  servers have a new session with the node;
- every 50 ms, per route server: does it hold the gateway's /31 from the node itself (a path
  the node sent, kept stale while it restarts), and from anyone (the node's peer reflects it
  too), and does the fabric route the /31? The `lacked` counts are samples without it.
Goal: 0 samples in which a route server lacks the /31 after a kill.
Kills are 11 s apart: the agent restarts at once only a BIRD that ran for 10 s or more.

Prints its figures; the last line is one JSON object.
Run: .venv/bin/python bench/bgp_restart.py [N]     (as root; N kills, default 5; ~2 min)
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from egressgw.lab import azure, scenarios, up
from egressgw.lab.running import LabHandle, with_store
from egressgw.lab.topology import Topology
from egressgw.lab.walkthrough import Walkthrough

POD = ("tenant0-egw", "tenant0-egw-0")
SAMPLE = 0.05
SPACING = 11.0


@dataclass
class Sampler:
    """Every 50 ms, what each route server and the fabric hold for `block`: one thread per
    source, so a slow read of one does not thin out the samples of the others."""

    t: Topology
    root: Path
    block: IPv4Network
    node_ip: IPv4Address
    rows: dict[str, list[bool]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Sampler:
        probes: dict[str, Callable[[], dict[str, bool]]] = {"fabric": self._fabric}
        probes |= {rs.name: functools.partial(self._route_server, rs.name) for rs in self.t.route_servers()}
        for probe in probes.values():
            self._threads.append(threading.Thread(target=self._run, args=(probe,), daemon=True))
            self._threads[-1].start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _fabric(self) -> dict[str, bool]:
        return {"fabric": self.block in azure.fabric(self.t)}

    def _route_server(self, name: str) -> dict[str, bool]:
        paths = [r for r in azure.learned(self.t, name, self.root) if r.network == self.block]
        own = any(r.source_peer == self.node_ip for r in paths)
        return {f"{name} own": own, f"{name} any": bool(paths)}

    def _run(self, probe: Callable[[], dict[str, bool]]) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            for key, held in probe().items():
                self.rows.setdefault(key, []).append(held)
            self._stop.wait(max(0.0, SAMPLE - (time.monotonic() - start)))

    def samples(self) -> dict[str, int]:
        return {k: len(v) for k, v in sorted(self.rows.items()) if not k.endswith(" any")}

    def lacked(self) -> dict[str, int]:
        return {k: sum(not held for held in v) for k, v in sorted(self.rows.items())}


def until(check: Callable[[], bool], start: float, timeout: float = 30.0) -> float:
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError("not within the timeout")
        time.sleep(0.02)
    return time.monotonic() - start


def birdc(bird: Path, *argv: str) -> str:
    done = subprocess.run(
        ["birdc", "-s", str(bird / "bird.ctl"), *argv], capture_output=True, text=True
    )
    return done.stdout


def sessions_up(t: Topology, root: Path, node: str, opens: dict[str, int]) -> bool:
    """Every BGP session of the node's BIRD Established, and a new one on each route server."""
    bird = azure.bird_dir(t.prefix, node, root)
    rows = [line.split(None, 6) for line in birdc(bird, "show", "protocols").splitlines()[2:]]
    bgp = [r for r in rows if len(r) >= 6 and r[1] == "BGP"]
    if not bgp or not all(len(r) == 7 and r[6].startswith("Established") for r in bgp):
        return False
    return all(n > opens[rs] for rs, n in route_server_opens(t, root, node).items())


def route_server_opens(t: Topology, root: Path, node: str) -> dict[str, int]:
    """Per route server: OPENs it received from the node, if its session is Established."""
    ip = t.node(node).ip
    found = {}
    for rs in t.route_servers():
        [n] = [n for n in azure.neighbors(t, rs.name, root) if n.address == ip]
        found[rs.name] = n.opens_received if n.established else -1
    return found


def pid(bird: Path) -> int:
    return int((bird / "bird.pid").read_text())


def event(t: Topology, root: Path, node: str, block: IPv4Network, what: str) -> dict[str, object]:
    """Trigger `what` on the node's BIRD and follow it until its sessions are back."""
    bird = azure.bird_dir(t.prefix, node, root)
    old, opens = pid(bird), route_server_opens(t, root, node)
    figures: dict[str, object] = {"event": what}
    with Sampler(t, root, block, t.node(node).ip) as sampler:
        time.sleep(0.2)
        start = time.monotonic()
        if what == "kill -9":
            os.kill(old, signal.SIGKILL)
        else:
            birdc(bird, *what.removeprefix("birdc ").split())
        if what != "birdc restart all":
            figures["bird_back_ms"] = round(1000 * until(lambda: _answers(bird, old), start))
        established = until(lambda: sessions_up(t, root, node, opens), start)
        figures["established_ms"] = round(1000 * established)
        time.sleep(1.0)  # past the End-of-RIB, when stale paths left over are dropped
    figures["samples"] = sampler.samples()
    figures["lacked"] = sampler.lacked()
    return figures


def _answers(bird: Path, old: int) -> bool:
    try:
        return pid(bird) != old and "Daemon is up" in birdc(bird, "show", "status")
    except (FileNotFoundError, ValueError):
        return False


def show(figures: dict[str, object]) -> None:
    lacked = figures["lacked"]
    assert isinstance(lacked, dict)
    times = ", ".join(f"{k} {v} ms" for k, v in figures.items() if k.endswith("_ms"))
    gaps = ", ".join(f"{k} {v}" for k, v in lacked.items())
    samples = figures["samples"]
    assert isinstance(samples, dict)
    taken = ", ".join(f"{k.removesuffix(' own')} {v}" for k, v in samples.items())
    print(f"{figures['event']}: {times}; samples taken: {taken}; lacking the /31: {gaps}", flush=True)


def main(kills: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="egw-bgpr-"))
    handle: LabHandle = up.up(scenarios.AZURE, f"egr{os.getpid() % 10000:04d}", root=root)
    try:
        with_store(handle, Walkthrough.load(handle).enable_egress)
        t = handle.topology()
        gw = t.find(*POD)
        assert gw is not None and gw.node is not None
        block = IPv4Network(f"{gw.ip}/31", strict=False)
        azure_ready = time.monotonic()
        until(lambda: all(block in {r.network for r in azure.learned(t, rs.name, root)}
                          for rs in t.route_servers()), azure_ready)
        time.sleep(SPACING)  # the first kill finds a BIRD that has run long enough
        results = []
        for what in ["kill -9"] * kills + ["birdc graceful restart", "birdc restart all"]:
            results.append(figures := event(t, root, gw.node, block, what))
            show(figures)
            time.sleep(SPACING)
        print(json.dumps(summary(results)))
    finally:
        handle.down()
        shutil.rmtree(root, ignore_errors=True)


def summary(results: list[dict[str, object]]) -> dict[str, object]:
    kills = [r for r in results if r["event"] == "kill -9"]
    out: dict[str, object] = {"kills": len(kills)}
    for key in ("bird_back_ms", "established_ms"):
        values = sorted(int(str(r[key])) for r in kills)
        out |= {f"kill_{key.removesuffix('_ms')}_p50_ms": values[len(values) // 2],
                f"kill_{key.removesuffix('_ms')}_max_ms": values[-1]}
    worst: dict[str, int] = {}
    for r in kills:
        lacked = r["lacked"]
        assert isinstance(lacked, dict)
        for k, v in lacked.items():
            worst[k] = max(worst.get(k, 0), v)
    out["kill_samples_lacking_max"] = worst
    out["kill_met"] = all(v == 0 for v in worst.values())
    for r in results[len(kills):]:
        out[str(r["event"])] = {k: v for k, v in r.items() if k != "event"}
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
