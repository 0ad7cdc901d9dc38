"""ResourceStore, Informer and StateStore on a MemoryStore, with a plain dataclass resource."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from egressgw.store.base import Compacted, Conflict, Event, EventType, NotFound, Store
from egressgw.store.memory import MemoryStore
from egressgw.store.resources import (
    Informer,
    ResKey,
    ResourceStore,
    StateStore,
    parse_resource_path,
    resource_path,
)


@dataclass(frozen=True)
class Obj:
    kind: str
    name: str
    namespace: str | None = "ns1"
    spec: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    resource_version: str | None = None


def encode(obj: Obj) -> bytes:
    meta: dict[str, Any] = {"name": obj.name, "namespace": obj.namespace}
    if obj.annotations:
        meta["annotations"] = dict(obj.annotations)
    if obj.resource_version is not None:
        meta["resourceVersion"] = obj.resource_version
    return json.dumps({"kind": obj.kind, "metadata": meta, "spec": obj.spec}).encode()


def decode(raw: bytes) -> Obj:
    data = json.loads(raw)
    meta = data["metadata"]
    return Obj(
        data["kind"],
        meta["name"],
        meta.get("namespace"),
        data["spec"],
        meta.get("annotations", {}),
        meta.get("resourceVersion"),
    )


def key_of(obj: Obj) -> ResKey:
    return obj.kind, obj.namespace, obj.name


def with_version(obj: Obj, version: str | None) -> Obj:
    return dataclasses.replace(obj, resource_version=version)


def make(store: Store) -> ResourceStore[Obj]:
    return ResourceStore(
        store,
        encode=encode,
        decode=decode,
        key_of=key_of,
        with_version=with_version,
        version_of=lambda o: o.resource_version,
    )


def run(body: Callable[[MemoryStore, ResourceStore[Obj]], Awaitable[None]]) -> None:
    async def main() -> None:
        store = MemoryStore()
        await asyncio.wait_for(body(store, make(store)), 10)

    asyncio.run(main())


# -- paths ------------------------------------------------------------------------------------


def test_resource_paths() -> None:
    assert resource_path(("Pod", "ns1", "web")) == "/egressgw/resources/Pod/ns1/web"
    assert resource_path(("Node", None, "n1")) == "/egressgw/resources/Node/_cluster/n1"
    for key in [("Pod", "ns1", "web"), ("Node", None, "n1")]:
        assert parse_resource_path(resource_path(key)) == key
    for bad in [("Pod", "ns1", "a/b"), ("", None, "x"), ("Pod", "_cluster", "x"), ("P", "", "x")]:
        with pytest.raises(ValueError):
            resource_path(bad)
    with pytest.raises(ValueError):
        parse_resource_path("/egressgw/resources/Pod/ns1")


# -- apply, list, delete -----------------------------------------------------------------------


def test_apply_then_list_stamps_versions_and_keeps_them_out_of_the_json() -> None:
    async def body(store: MemoryStore, res: ResourceStore[Obj]) -> None:
        rev = await res.apply(
            [Obj("Pod", "b"), Obj("Pod", "a", resource_version=None), Obj("Node", "n1", None)]
        )
        objs, listed_at = await res.list_all()
        assert listed_at == rev
        assert [key_of(o) for o in objs] == [
            ("Node", None, "n1"),
            ("Pod", "ns1", "a"),
            ("Pod", "ns1", "b"),
        ]
        assert {o.resource_version for o in objs} == {str(rev)}
        pods, _ = await res.list_all("Pod")
        assert [o.name for o in pods] == ["a", "b"]
        raw = await store.get(resource_path(("Pod", "ns1", "a")))
        assert raw is not None and "resourceVersion" not in raw.value.decode()

    run(body)


def test_apply_is_all_or_nothing_and_honours_resource_version() -> None:
    async def body(store: MemoryStore, res: ResourceStore[Obj]) -> None:
        await res.apply([Obj("Pod", "a", spec="v1")])
        stale = await res.get(("Pod", "ns1", "a"))
        assert stale is not None
        await res.apply([Obj("Pod", "a", spec="v2")])  # no version: last writer wins
        with pytest.raises(Conflict):
            await res.apply([Obj("Pod", "new"), dataclasses.replace(stale, spec="v3")])
        assert await res.get(("Pod", "ns1", "new")) is None
        current = await res.get(("Pod", "ns1", "a"))
        assert current is not None and current.spec == "v2"
        await res.apply([dataclasses.replace(current, spec="v4")])
        final = await res.get(("Pod", "ns1", "a"))
        assert final is not None and final.spec == "v4"

    run(body)


def test_delete_many_in_one_revision() -> None:
    async def body(store: MemoryStore, res: ResourceStore[Obj]) -> None:
        await res.apply([Obj("Pod", "a"), Obj("Pod", "b"), Obj("Pod", "c")])
        rev = await res.delete([("Pod", "ns1", "a"), ("Pod", "ns1", "b"), ("Pod", "ns1", "zz")])
        objs, listed_at = await res.list_all()
        assert [o.name for o in objs] == ["c"] and listed_at == rev == store.revision

    run(body)


def test_undecodable_object_is_skipped_not_fatal() -> None:
    async def body(store: MemoryStore, res: ResourceStore[Obj]) -> None:
        await res.apply([Obj("Pod", "good")])
        await store.put(resource_path(("Pod", "ns1", "bad")), b"{not json")
        objs, _ = await res.list_all()
        assert [o.name for o in objs] == ["good"]

    run(body)


# -- CAS updates --------------------------------------------------------------------------------


def test_patch_annotations() -> None:
    async def body(store: MemoryStore, res: ResourceStore[Obj]) -> None:
        await res.apply([Obj("Pod", "a", spec="keep", annotations={"x": "1", "y": "2"})])
        patched = await res.patch_annotations(("Pod", "ns1", "a"), {"z": "3", "x": "9"}, ["y"])
        assert patched.annotations == {"x": "9", "z": "3"} and patched.spec == "keep"
        assert patched.resource_version == str(store.revision)
        again = await res.patch_annotations(("Pod", "ns1", "a"), {"z": "3"}, ["absent"])
        assert again.resource_version == patched.resource_version  # no-op: no write
        with pytest.raises(NotFound):
            await res.patch_annotations(("Pod", "ns1", "missing"), {"a": "b"})

    run(body)


def test_concurrent_patches_lose_nothing() -> None:
    async def body(store: MemoryStore, res: ResourceStore[Obj]) -> None:
        await res.apply([Obj("Pod", "a")])
        start = store.revision
        await asyncio.gather(
            *(res.patch_annotations(("Pod", "ns1", "a"), {f"k{i}": str(i)}) for i in range(10))
        )
        final = await res.get(("Pod", "ns1", "a"))
        assert final is not None
        assert final.annotations == {f"k{i}": str(i) for i in range(10)}
        assert store.revision == start + 10  # each patch landed exactly once

    run(body)


def test_update_retries_with_fresh_state() -> None:
    async def body(store: MemoryStore, res: ResourceStore[Obj]) -> None:
        await res.apply([Obj("Pod", "a", spec="0")])

        def bump(o: Obj) -> Obj:
            return dataclasses.replace(o, spec=str(int(o.spec) + 1))

        await asyncio.gather(*(res.update(("Pod", "ns1", "a"), bump) for _ in range(5)))
        final = await res.get(("Pod", "ns1", "a"))
        assert final is not None and final.spec == "5"

    run(body)


# -- watch --------------------------------------------------------------------------------------


def test_watch_yields_typed_events() -> None:
    async def body(store: MemoryStore, res: ResourceStore[Obj]) -> None:
        start = store.revision
        r1 = await res.apply([Obj("Pod", "a", spec="1")])
        await store.put("/egressgw/resources/Pod/stray", b"{}")  # wrong depth: ignored
        await store.put(resource_path(("Pod", "ns1", "bad")), b"garbage")
        await res.delete([("Pod", "ns1", "a")])
        got = []
        async with contextlib.aclosing(res.watch(start, kind="Pod")) as events:
            for _ in range(3):
                got.append(await asyncio.wait_for(anext(events), 2))
        assert [(e.type, e.key[2]) for e in got] == [
            (EventType.PUT, "a"),
            (EventType.DELETE, "bad"),  # undecodable = gone, for every consumer
            (EventType.DELETE, "a"),
        ]
        assert got[0].resource is not None and got[0].resource.spec == "1"
        assert got[0].resource.resource_version == str(r1) == str(got[0].revision)

    run(body)


# -- Informer -----------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.states: list[dict[ResKey, Obj]] = []
        self.revisions: list[int] = []
        self.changed = asyncio.Event()

    async def __call__(self, state: Mapping[ResKey, Obj], revision: int) -> None:
        self.states.append(dict(state))
        self.revisions.append(revision)
        self.changed.set()

    def names(self, i: int = -1) -> set[str]:
        return {key[2] for key in self.states[i]}

    async def until(self, names: set[str], timeout: float = 3.0) -> None:
        async def wait() -> None:
            while not self.states or self.names() != names:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)


@contextlib.asynccontextmanager
async def running(informer: Informer[Obj]) -> AsyncGenerator[None, None]:
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 3)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_informer_reports_initial_state_then_whole_batches() -> None:
    async def body(store: MemoryStore, res: ResourceStore[Obj]) -> None:
        await res.apply([Obj("Pod", "old")])
        rec = Recorder()
        informer = Informer(res, rec, kind="Pod", delay=0.01)
        async with running(informer):
            assert rec.states[0].keys() == {("Pod", "ns1", "old")}
            await res.apply([Obj("Pod", f"p{i}") for i in range(30)] + [Obj("Node", "n")])
            await res.delete([("Pod", "ns1", "old")])
            await rec.until({f"p{i}" for i in range(30)})
            assert informer.revision == store.revision
        # Each report is the state between two transactions, never inside one.
        sizes = {len(state) for state in rec.states}
        assert sizes <= {1, 31, 30}, sizes

    run(body)


def test_informer_debounces_bursts() -> None:
    async def body(store: MemoryStore, res: ResourceStore[Obj]) -> None:
        rec = Recorder()
        async with running(Informer(res, rec, delay=0.3)):
            for i in range(5):
                await res.apply([Obj("Pod", f"p{i}")])
            await rec.until({f"p{i}" for i in range(5)})
        assert len(rec.states) == 2  # the initial (empty) report and one for the burst

    run(body)


class SlowWatchStore:
    """A MemoryStore whose watches start only when `gate` opens, like a slow network."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.gate = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def watch(self, prefix: str, start_revision: int) -> AsyncGenerator[Event, None]:
        await self.gate.wait()
        async with contextlib.aclosing(self.inner.watch(prefix, start_revision)) as events:
            async for event in events:
                yield event


def test_informer_relists_when_its_revision_was_compacted() -> None:
    async def body(store: MemoryStore, _: ResourceStore[Obj]) -> None:
        slow = SlowWatchStore(store)
        res = make(cast(Store, slow))
        rec = Recorder()
        async with running(Informer(res, rec, delay=0.01)):
            await res.apply([Obj("Pod", "a")])
            await res.apply([Obj("Pod", "b")])
            await store.compact(store.revision)
            with pytest.raises(Compacted):  # what the informer is about to meet
                await anext(store.watch("/", rec.revisions[0]))
            slow.gate.set()
            await rec.until({"a", "b"})
            await res.apply([Obj("Pod", "c")])  # and it keeps watching afterwards
            await rec.until({"a", "b", "c"})
        assert rec.names(0) == set()

    run(body)


# -- StateStore ----------------------------------------------------------------------------------


def test_claim_is_exclusive_and_release_needs_the_owner() -> None:
    async def body(store: MemoryStore, _: ResourceStore[Obj]) -> None:
        state = StateStore(store)
        won = await asyncio.gather(*(state.claim("ipam/10.0.0.7", f"gw{i}") for i in range(10)))
        assert won.count(True) == 1
        owner = f"gw{won.index(True)}"
        assert await state.get("ipam/10.0.0.7") == owner
        assert await state.claim("ipam/10.0.0.7", owner)  # restart: re-claim is fine
        assert not await state.release("ipam/10.0.0.7", "someone-else")
        assert await state.release("ipam/10.0.0.7", owner)
        assert not await state.release("ipam/10.0.0.7", owner)
        assert await state.claim("ipam/10.0.0.7", "gw-next")
        await state.claim("ipam/10.0.0.8", "gw-next")
        found, rev = await state.items("ipam/")
        assert found == {"ipam/10.0.0.7": "gw-next", "ipam/10.0.0.8": "gw-next"}
        assert rev == store.revision
        assert (await store.list("/egressgw/state/")).items[0].key == (
            "/egressgw/state/ipam/10.0.0.7"
        )

    run(body)
