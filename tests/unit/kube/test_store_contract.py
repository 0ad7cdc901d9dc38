"""The shared Store behaviour suite, run against KubeStore through kr8s and the API emulator.

Keys outside /egressgw/resources/ live in the state ConfigMap, so this checks that one
object gives etcd's semantics: revisions, compare-and-swap, atomic transactions, watches
that replay history. Compaction belongs to the API server, not to clients: those three
contract tests are replaced by ones that compact the emulator itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import kmock
import pytest

from egressgw.kube.client import KubeClient
from egressgw.kube.store import KubeStore
from egressgw.store.base import Compacted, Store
from tests.unit.kube.emulator import ApiServer
from tests.unit.store.contract import Backend, StoreContract, brief, take


class KubeBackend(Backend):
    """The first client starts the emulator; nested clients talk to the same one."""

    name = "kube"

    def __init__(self) -> None:
        super().__init__()
        self.server: ApiServer | None = None

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[Store]:
        if self.server is not None:  # nested: kr8s shares one session per loop, keep it open
            kube = await KubeClient.connect(url=str(self.server.url).rstrip("/"))
            yield KubeStore(kube, namespace="egressgw")
            return
        async with ApiServer() as server, kmock.Server(server):
            self.server = server
            kube = await KubeClient.connect(url=str(server.url).rstrip("/"))
            try:
                yield KubeStore(kube, namespace="egressgw")
            finally:
                await kube.close()
                self.server = None


@pytest.fixture
def backend() -> Backend:
    return KubeBackend()


class TestKubeStoreContract(StoreContract):
    def test_watch_below_compaction_raises_compacted(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            assert isinstance(backend, KubeBackend) and backend.server is not None
            r1 = await kv.put(backend.key("a"), b"1")
            r2 = await kv.put(backend.key("b"), b"2")
            await kv.put(backend.key("c"), b"3")
            backend.server.compact(r2)
            with pytest.raises(Compacted) as err:
                await take(kv.watch(backend.prefix, r1 - 1), 1)
            assert err.value.compact_revision == r2
            async with contextlib.aclosing(kv.watch(backend.prefix, r2)) as events:
                assert brief(await take(events, 1)) == [("PUT", "c", b"3")]
            assert len((await kv.list(backend.prefix)).items) == 3

        backend.run(body)

    def test_compact_rules(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            r1 = await kv.put(backend.key("a"), b"1")
            await kv.compact(r1)  # a no-op: the API server compacts on its own
            with pytest.raises(ValueError):
                await kv.compact(r1 + 1000)
            assert (await kv.get(backend.key("a"))) is not None

        backend.run(body)

    def test_open_watch_survives_compaction(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            assert isinstance(backend, KubeBackend) and backend.server is not None
            start = (await kv.list(backend.prefix)).revision
            async with contextlib.aclosing(kv.watch(backend.prefix, start)) as events:
                await kv.put(backend.key("a"), b"1")
                assert brief(await take(events, 1)) == [("PUT", "a", b"1")]
                backend.server.compact()
                await kv.put(backend.key("b"), b"2")
                assert brief(await take(events, 1)) == [("PUT", "b", b"2")]

        backend.run(body)
