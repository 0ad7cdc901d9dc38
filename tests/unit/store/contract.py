"""The behaviour every Store backend must show, written once.

`StoreContract` holds the tests; a test module binds it to backends by subclassing it and
providing a `backend` fixture (tests/unit/store/test_memory_store.py for MemoryStore,
tests/privileged/test_etcd_store.py for MemoryStore and a real etcd side by side). Tests
run their async body with `backend.run(...)` in a fresh event loop and only use keys under
`backend.prefix`, so backends that share one server between tests stay independent.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from egressgw.store.base import (
    MAX_TXN_OPS,
    Compacted,
    Conflict,
    Delete,
    Event,
    Put,
    Store,
    Unavailable,
)

Body = Callable[[Store], Awaitable[None]]
DEADLINE = 20.0  # no single test body may take longer; a hang is a failure, not a stall


class Backend:
    """How to reach one backend: `client()` opens another connection to the same store."""

    name = "abstract"

    def __init__(self) -> None:
        self.prefix = f"/t/{uuid.uuid4().hex[:8]}/"

    def key(self, name: str) -> str:
        return self.prefix + name

    def client(self) -> contextlib.AbstractAsyncContextManager[Store]:
        raise NotImplementedError

    def run(self, body: Body) -> None:
        async def main() -> None:
            async with self.client() as kv:
                await asyncio.wait_for(body(kv), DEADLINE)

        asyncio.run(main())


async def take(events: AsyncIterator[Event], n: int, timeout: float = 5.0) -> list[Event]:
    """The next n events, or fail after `timeout` seconds."""

    async def collect() -> list[Event]:
        return [await anext(events) for _ in range(n)]

    return await asyncio.wait_for(collect(), timeout)


def brief(events: list[Event]) -> list[tuple[str, str, bytes | None]]:
    return [(e.type.value, e.key.rsplit("/", 1)[-1], e.value) for e in events]


class StoreContract:
    """Subclass as `Test...` and provide a `backend` fixture."""

    # -- list, get, put ---------------------------------------------------------------------

    def test_put_then_list_sorted_at_one_revision(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            r1 = await kv.put(backend.key("b"), b"2")
            r2 = await kv.put(backend.key("a"), b"1")
            await kv.put(backend.key("a"), b"1b")
            snap = await kv.list(backend.prefix)
            assert r2 == r1 + 1
            assert [(i.key, i.value) for i in snap.items] == [
                (backend.key("a"), b"1b"),
                (backend.key("b"), b"2"),
            ]
            a = snap.items[0]
            assert (a.create_revision, a.mod_revision) == (r2, r2 + 1)
            assert snap.revision == r2 + 1

        backend.run(body)

    def test_list_is_by_prefix(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            for name in ("x/1", "x/2", "xy", "y/1"):
                await kv.put(backend.key(name), b"v")
            snap = await kv.list(backend.key("x/"))
            assert [i.key for i in snap.items] == [backend.key("x/1"), backend.key("x/2")]
            assert await kv.list(backend.key("nothing/")) == type(snap)((), snap.revision)

        backend.run(body)

    def test_get(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            assert await kv.get(backend.key("k")) is None
            rev = await kv.put(backend.key("k"), b"\x00\xffbinary")
            item = await kv.get(backend.key("k"))
            assert item is not None
            assert (item.value, item.mod_revision, item.create_revision) == (
                b"\x00\xffbinary",
                rev,
                rev,
            )
            assert await kv.get(backend.key("k/child")) is None

        backend.run(body)

    # -- compare and swap -------------------------------------------------------------------

    def test_put_expect_zero_creates_only_once(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            rev = await kv.put(backend.key("k"), b"first", expect=0)
            with pytest.raises(Conflict) as err:
                await kv.put(backend.key("k"), b"second", expect=0)
            assert (err.value.key, err.value.expected, err.value.actual) == (
                backend.key("k"),
                0,
                rev,
            )
            item = await kv.get(backend.key("k"))
            assert item is not None and item.value == b"first"

        backend.run(body)

    def test_put_expect_revision(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            r1 = await kv.put(backend.key("k"), b"1")
            r2 = await kv.put(backend.key("k"), b"2", expect=r1)
            with pytest.raises(Conflict) as err:
                await kv.put(backend.key("k"), b"3", expect=r1)
            assert err.value.actual == r2
            with pytest.raises(Conflict) as missing:
                await kv.put(backend.key("absent"), b"x", expect=r1)
            assert missing.value.actual == 0
            item = await kv.get(backend.key("k"))
            assert item is not None and (item.value, item.create_revision) == (b"2", r1)
            assert await kv.get(backend.key("absent")) is None

        backend.run(body)

    def test_racing_writers_exactly_one_wins(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            base = await kv.put(backend.key("k"), b"base")
            async with contextlib.AsyncExitStack() as stack:
                clients = [await stack.enter_async_context(backend.client()) for _ in range(4)]
                results = await asyncio.gather(
                    *(
                        c.put(backend.key("k"), f"w{i}".encode(), expect=base)
                        for i, c in enumerate(clients)
                    ),
                    return_exceptions=True,
                )
            wins = [r for r in results if isinstance(r, int)]
            assert len(wins) == 1, results
            assert all(isinstance(r, Conflict) for r in results if not isinstance(r, int))
            item = await kv.get(backend.key("k"))
            assert item is not None and item.value == f"w{results.index(wins[0])}".encode()

        backend.run(body)

    def test_racing_creators_exactly_one_wins(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            async with contextlib.AsyncExitStack() as stack:
                clients = [await stack.enter_async_context(backend.client()) for _ in range(8)]
                results = await asyncio.gather(
                    *(
                        c.put(backend.key("ip"), f"owner{i}".encode(), expect=0)
                        for i, c in enumerate(clients)
                    ),
                    return_exceptions=True,
                )
            assert sum(isinstance(r, int) for r in results) == 1, results
            assert sum(isinstance(r, Conflict) for r in results) == 7

        backend.run(body)

    # -- delete -------------------------------------------------------------------------------

    def test_delete(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            r1 = await kv.put(backend.key("k"), b"v")
            with pytest.raises(Conflict):
                await kv.delete(backend.key("k"), expect=r1 + 100)
            assert await kv.get(backend.key("k")) is not None
            r2 = await kv.delete(backend.key("k"), expect=r1)
            assert r2 == r1 + 1
            assert await kv.get(backend.key("k")) is None
            # Deleting what is not there changes nothing, not even the revision.
            assert await kv.delete(backend.key("k")) == r2
            assert await kv.delete(backend.key("k"), expect=0) == r2
            with pytest.raises(Conflict):
                await kv.delete(backend.key("k"), expect=r1)

        backend.run(body)

    # -- atomic multi-key writes ---------------------------------------------------------------

    def test_commit_is_one_revision(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            await kv.put(backend.key("old"), b"x")
            rev = await kv.commit(
                [
                    Put(backend.key("a"), b"1", 0),
                    Put(backend.key("b"), b"2"),
                    Delete(backend.key("old")),
                ]
            )
            snap = await kv.list(backend.prefix)
            assert [(i.key, i.value, i.mod_revision) for i in snap.items] == [
                (backend.key("a"), b"1", rev),
                (backend.key("b"), b"2", rev),
            ]
            assert snap.revision == rev

        backend.run(body)

    def test_commit_is_all_or_nothing(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            taken = await kv.put(backend.key("taken"), b"someone")
            before = await kv.list(backend.prefix)
            with pytest.raises(Conflict) as err:
                await kv.commit(
                    [
                        Put(backend.key("a"), b"1", 0),
                        Put(backend.key("taken"), b"me", 0),
                        Put(backend.key("c"), b"3", 0),
                    ]
                )
            assert (err.value.key, err.value.actual) == (backend.key("taken"), taken)
            assert await kv.list(backend.prefix) == before

        backend.run(body)

    def test_commit_shape_rules(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            with pytest.raises(ValueError, match="twice"):
                await kv.commit([Put(backend.key("a"), b"1"), Delete(backend.key("a"))])
            too_many = [Put(backend.key(str(i)), b"") for i in range(MAX_TXN_OPS + 1)]
            with pytest.raises(ValueError, match="at most"):
                await kv.commit(too_many)
            rev = await kv.commit(too_many[:MAX_TXN_OPS])
            assert len((await kv.list(backend.prefix)).items) == MAX_TXN_OPS
            assert await kv.commit([]) == rev
            assert await kv.commit([Delete(backend.key("absent"))]) == rev

        backend.run(body)

    # -- watch --------------------------------------------------------------------------------

    def test_watch_from_snapshot_sees_later_changes_in_order(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            await kv.put(backend.key("before"), b"0")
            rev = (await kv.list(backend.prefix)).revision
            async with contextlib.aclosing(kv.watch(backend.prefix, rev)) as events:
                r1 = await kv.put(backend.key("a"), b"1")
                await kv.put(backend.key("b"), b"2")
                await kv.put("/elsewhere/" + backend.prefix, b"not ours")
                r3 = await kv.delete(backend.key("a"))
                got = await take(events, 3)
            assert brief(got) == [("PUT", "a", b"1"), ("PUT", "b", b"2"), ("DELETE", "a", None)]
            assert [e.mod_revision for e in got] == [r1, r1 + 1, r3]

        backend.run(body)

    def test_watch_from_old_revision_replays_history(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            start = (await kv.list(backend.prefix)).revision
            await kv.put(backend.key("a"), b"1")
            await kv.put(backend.key("a"), b"2")
            await kv.commit([Put(backend.key("b"), b"3"), Delete(backend.key("a"))])
            async with contextlib.aclosing(kv.watch(backend.prefix, start)) as events:
                got = await take(events, 4)
                await kv.put(backend.key("c"), b"live")
                got += await take(events, 1)
            assert brief(got) == [
                ("PUT", "a", b"1"),
                ("PUT", "a", b"2"),
                ("PUT", "b", b"3"),
                ("DELETE", "a", None),
                ("PUT", "c", b"live"),
            ]
            revisions = [e.mod_revision for e in got]
            assert revisions == sorted(revisions) and revisions[2] == revisions[3]

        backend.run(body)

    def test_watch_from_future_revision_waits(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            now = (await kv.list(backend.prefix)).revision
            async with contextlib.aclosing(kv.watch(backend.prefix, now + 1)) as events:
                await kv.put(backend.key("skipped"), b"at now+1")
                await kv.put(backend.key("seen"), b"at now+2")
                assert brief(await take(events, 1)) == [("PUT", "seen", b"at now+2")]

        backend.run(body)

    def test_watch_delivers_a_transaction_without_suspending(self, backend: Backend) -> None:
        """A consumer that never awaits between events can't see half a transaction."""

        async def body(kv: Store) -> None:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0)

            start = (await kv.list(backend.prefix)).revision
            await kv.commit([Put(backend.key(f"old{i}"), b"") for i in range(10)])
            seen: list[tuple[int, int]] = []
            tick_task = asyncio.create_task(ticker())
            async with contextlib.aclosing(kv.watch(backend.prefix, start)) as events:

                async def write_later() -> None:
                    await asyncio.sleep(0.05)
                    for n in range(3):
                        await kv.commit([Put(backend.key(f"n{n}-{i}"), b"") for i in range(10)])

                writer = asyncio.create_task(write_later())
                async for event in events:
                    seen.append((event.mod_revision, ticks))
                    if len(seen) == 40:
                        break
                await writer
            tick_task.cancel()
            by_revision: dict[int, set[int]] = {}
            for revision, tick in seen:
                by_revision.setdefault(revision, set()).add(tick)
            assert len(by_revision) == 4
            assert all(len(ticks_seen) == 1 for ticks_seen in by_revision.values()), by_revision

        backend.run(body)

    # -- compaction ---------------------------------------------------------------------------

    def test_watch_below_compaction_raises_compacted(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            r1 = await kv.put(backend.key("a"), b"1")
            r2 = await kv.put(backend.key("b"), b"2")
            await kv.put(backend.key("c"), b"3")
            await kv.compact(r2)
            with pytest.raises(Compacted) as err:
                await take(kv.watch(backend.prefix, r1 - 1), 1)
            assert err.value.compact_revision == r2
            # Everything after r2 - 1 still exists, so this watch works.
            async with contextlib.aclosing(kv.watch(backend.prefix, r1)) as events:
                assert brief(await take(events, 2)) == [("PUT", "b", b"2"), ("PUT", "c", b"3")]
            # The data itself survives compaction.
            assert len((await kv.list(backend.prefix)).items) == 3

        backend.run(body)

    def test_compact_rules(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            r1 = await kv.put(backend.key("a"), b"1")
            await kv.compact(r1)
            await kv.compact(r1)  # again: no-op
            await kv.compact(r1 - 1)  # older: no-op
            with pytest.raises(ValueError):
                await kv.compact(r1 + 1000)

        backend.run(body)

    def test_open_watch_survives_compaction(self, backend: Backend) -> None:
        """A watcher that keeps up is not hurt by a compaction (like etcd's synced watchers)."""

        async def body(kv: Store) -> None:
            start = (await kv.list(backend.prefix)).revision
            async with contextlib.aclosing(kv.watch(backend.prefix, start)) as events:
                await kv.put(backend.key("a"), b"1")
                assert brief(await take(events, 1)) == [("PUT", "a", b"1")]
                await kv.compact((await kv.list(backend.prefix)).revision)
                await kv.put(backend.key("b"), b"2")
                assert brief(await take(events, 1)) == [("PUT", "b", b"2")]

        backend.run(body)

    # -- closing ------------------------------------------------------------------------------

    def test_close_ends_calls_and_watches(self, backend: Backend) -> None:
        async def body(kv: Store) -> None:
            start = (await kv.list(backend.prefix)).revision
            watching = asyncio.create_task(take(kv.watch(backend.prefix, start), 1))
            await asyncio.sleep(0.1)
            await kv.close()
            with pytest.raises(Unavailable):
                await watching
            with pytest.raises(Unavailable):
                await kv.get(backend.key("a"))
            await kv.close()  # idempotent

        backend.run(body)
