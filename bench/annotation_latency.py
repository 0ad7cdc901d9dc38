"""Benchmark: annotation change -> the new source address seen by the echo service (needs root).

Brings up the AWS lab, then flips netshoot's `egress.projectcalico.org/selector` between
egw-1 and egw-2 N times. Each time the clock starts just before the annotation is written to
the store and stops when a NEW connection from netshoot to the ifconfig.me stand-in is
answered with the other gateway's Elastic IP (the echo service is the oracle; connections are
opened every 5 ms from a thread inside netshoot's namespace). Goal (issue 3): p99 <= 250 ms.

Prints its figures; the last line is one JSON object. Run: .venv/bin/python bench/annotation_latency.py [N]
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from egressgw.drivers.netns import in_netns
from egressgw.lab import scenarios, up
from egressgw.store.codec import resource_store
from egressgw.store.etcd import connect

ECHO = "203.0.113.100"
EIPS = {"egw-1": "198.51.100.11", "egw-2": "198.51.100.12"}
SELECTOR = "egress.projectcalico.org/selector"


def ask() -> str | None:
    """One new connection to the echo service: the source address it saw."""
    try:
        with socket.create_connection((ECHO, 80), timeout=0.5) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        return data.split(b"\r\n\r\n", 1)[1].decode().strip()
    except OSError:
        return None


def wait_for(expected: str, timeout: float = 5.0) -> float:
    """Seconds until a new connection sees `expected` (run inside netshoot's namespace)."""
    start = time.perf_counter()
    while ask() != expected:
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"never saw {expected}")
        time.sleep(0.005)
    return time.perf_counter() - start


async def flip(store_endpoint: str, pod_ns: str, rounds: int) -> list[float]:
    store = await connect(store_endpoint)
    res = resource_store(store)
    samples = []
    try:
        for i in range(rounds + 1):
            gateway = "egw-1" if i % 2 == 0 else "egw-2"
            start = time.perf_counter()
            await res.patch_annotations(("Pod", "default", "netshoot"), {SELECTOR: f"egress-gateway == '{gateway}'"})
            await asyncio.to_thread(in_netns, pod_ns, lambda g=gateway: wait_for(EIPS[g]))
            if i:  # the first round also waits for the lab to settle
                samples.append(time.perf_counter() - start)
    finally:
        await store.close()
    return samples


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    with tempfile.TemporaryDirectory() as root:
        handle = up.up(scenarios.AWS, root=Path(root))
        try:
            samples = asyncio.run(flip(handle.info.etcd, f"{handle.prefix}-pod-default-netshoot", rounds))
        finally:
            handle.down()
    p50 = statistics.median(samples)
    # Nearest rank, as bench/failover.py: never above the largest sample (with 40 samples, the max).
    p99 = sorted(samples)[math.ceil(0.99 * len(samples)) - 1]
    print(f"annotation -> new source seen: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
          f"max {max(samples) * 1000:.0f} ms over {len(samples)} changes (goal p99 <= 250 ms: {p99 / 0.25:.2f}x)")
    print(json.dumps({"changes": len(samples), "p50_ms": round(p50 * 1000, 1), "p99_ms": round(p99 * 1000, 1),
                      "max_ms": round(max(samples) * 1000, 1), "goal_ratio": round(p99 / 0.25, 3)}))


if __name__ == "__main__":
    main()
