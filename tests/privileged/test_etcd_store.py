"""The shared Store behaviour suite against a real etcd (started by etcdproc) and, side by
side, MemoryStore; plus the resource layer and latency on etcd, and etcdproc's own promises.

Needs no root: etcd runs as a child process on 127.0.0.1. Skipped when /usr/bin/etcd is
missing. The server is shared by the whole module; every test uses its own key prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest

from egressgw.store.base import Store
from egressgw.store.etcd import EtcdStore, connect
from egressgw.store.etcdproc import ETCD_BINARY, EtcdServer, EtcdStartError
from egressgw.store.resources import Informer, ResKey, ResourceStore
from tests.unit.store.contract import Backend, StoreContract
from tests.unit.store.test_memory_store import MemoryBackend

needs_etcd = pytest.mark.skipif(
    not ETCD_BINARY.exists(), reason=f"etcd binary {ETCD_BINARY} is not installed"
)


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    if not ETCD_BINARY.exists():
        pytest.skip(f"etcd binary {ETCD_BINARY} is not installed")
    with EtcdServer() as server:
        yield server


class EtcdBackend(Backend):
    name = "etcd"

    def __init__(self, server: EtcdServer) -> None:
        super().__init__()
        self.server = server

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[Store]:
        store = await connect(self.server.endpoint)
        try:
            yield store
        finally:
            await store.close()


@pytest.fixture(params=["memory", "etcd"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return MemoryBackend()
    return EtcdBackend(request.getfixturevalue("etcd"))


class TestStoreBackends(StoreContract):
    pass


# -- etcdproc ---------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def _listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(local address in /proc hex, port) of every TCP socket `pid` listens on."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                address, hex_port = fields[1].split(":")
                if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                    found.add((address, int(hex_port, 16)))
    return found


@needs_etcd
def test_etcdproc_binds_loopback_only_and_cleans_up() -> None:
    with EtcdServer() as server:
        pid, workdir = server.pid, server.workdir
        assert pid is not None and _alive(pid)
        assert (workdir / "data").is_dir() and server.log_path.exists()
        # 0100007F is 127.0.0.1 in /proc/net/tcp's little-endian hex.
        assert _listening_sockets(pid) == {
            ("0100007F", server.client_port),
            ("0100007F", server.peer_port),
        }
    assert not _alive(pid)
    assert not workdir.exists()


@needs_etcd
def test_etcdproc_failed_start_leaves_nothing(tmp_path: Path) -> None:
    server = EtcdServer(base_dir=tmp_path, extra_args=("--no-such-flag",), startup_timeout=10)
    with pytest.raises(EtcdStartError, match="exited with"):
        server.start()
    assert server.pid is None
    assert list(tmp_path.iterdir()) == []


@needs_etcd
def test_etcdproc_child_dies_with_a_killed_parent(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from egressgw.store.etcdproc import EtcdServer\n"
        "s = EtcdServer(base_dir=Path(sys.argv[1]))\n"
        "s.start()\n"
        "print(s.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        etcd_pid = int(parent.stdout.readline())
        assert _alive(etcd_pid)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5
    while _alive(etcd_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(etcd_pid)


@needs_etcd
def test_etcdproc_async_context() -> None:
    async def main() -> int | None:
        async with EtcdServer() as server:
            async with EtcdStore(server.endpoint) as kv:
                await kv.put("/k", b"v")
                item = await kv.get("/k")
                assert item is not None and item.value == b"v"
            return server.pid

    pid = asyncio.run(main())
    assert pid is not None and not _alive(pid)


# -- the resource layer on etcd ----------------------------------------------------------------


def _encode(obj: Mapping[str, object]) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


def _decode(raw: bytes) -> dict[str, object]:
    obj = json.loads(raw)
    assert isinstance(obj, dict)
    return obj


def _key_of(obj: Mapping[str, object]) -> ResKey:
    meta = obj["metadata"]
    assert isinstance(meta, dict)
    return str(obj["kind"]), meta.get("namespace"), str(meta["name"])


def _pod(name: str, ip: str) -> dict[str, object]:
    return {"kind": "Pod", "metadata": {"namespace": "ns1", "name": name}, "ip": ip}


def test_informer_sees_whole_batches_on_etcd(etcd: EtcdServer) -> None:
    async def main() -> None:
        async with EtcdStore(etcd.endpoint) as kv:
            await kv.commit([])  # reachable
            resources = ResourceStore(kv, encode=_encode, decode=_decode, key_of=_key_of)
            seen: list[set[str]] = []

            async def on_change(state: Mapping[ResKey, dict[str, object]], rev: int) -> None:
                seen.append({key[2] for key in state})

            informer = Informer(resources, on_change, kind="Pod", delay=0.02)
            task = asyncio.create_task(informer.run())
            await asyncio.wait_for(informer.synced.wait(), 5)
            await resources.apply([_pod(f"p{i}", f"10.0.0.{i}") for i in range(20)])
            await resources.delete([("Pod", "ns1", "p0"), ("Pod", "ns1", "p1")])
            for _ in range(100):
                if seen[-1] == {f"p{i}" for i in range(2, 20)}:
                    break
                await asyncio.sleep(0.05)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            # Every report is a state between transactions: empty, all 20, or 18.
            assert seen[-1] == {f"p{i}" for i in range(2, 20)}
            assert all(len(s) in (0, 20, 18) for s in seen), seen

    asyncio.run(main())


# -- latency ------------------------------------------------------------------------------


def _percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return f"p50 {cuts[49] * 1e3:.2f} ms, p99 {cuts[98] * 1e3:.2f} ms"


def test_latency_put_and_watch_delivery(etcd: EtcdServer) -> None:
    """~500 sequential puts: how long a put takes, and from put to the watcher's event."""

    async def main() -> tuple[list[float], list[float]]:
        async with EtcdStore(etcd.endpoint) as writer, EtcdStore(etcd.endpoint) as reader:
            start = await writer.commit([])
            arrived: dict[str, float] = {}
            got = asyncio.Event()

            async def watch() -> None:
                async with contextlib.aclosing(reader.watch("/lat/", start)) as events:
                    async for event in events:
                        arrived[event.key] = time.perf_counter()
                        got.set()

            watcher = asyncio.create_task(watch())
            puts, deliveries = [], []
            for i in range(500):
                got.clear()
                t0 = time.perf_counter()
                await writer.put(f"/lat/{i}", b"x" * 200)
                puts.append(time.perf_counter() - t0)
                await asyncio.wait_for(got.wait(), 5)
                deliveries.append(arrived[f"/lat/{i}"] - t0)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            return puts, deliveries

    puts, deliveries = asyncio.run(main())
    print(f"\netcd put latency: {_percentiles(puts)}")
    print(f"etcd put->watch event latency: {_percentiles(deliveries)}")
    assert statistics.median(deliveries) < 0.5
