"""`MemoryStore`: the in-process Store with etcd's semantics, for unit tests and `explain`.

It keeps the items, the global revision, the event history (until compacted) and wakes
watchers on every change. Each operation first yields once to the event loop, so tests see
the same interleavings of concurrent writers that a networked store produces. It must not do
any I/O; it is bound to the event loop that first uses it.
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
from collections.abc import AsyncGenerator, Sequence

from egressgw.store.base import (
    Compacted,
    Event,
    EventType,
    Item,
    Put,
    SingleWrites,
    Snapshot,
    Unavailable,
    Write,
    check_key,
    check_revision,
    check_writes,
    first_conflict,
)


class MemoryStore(SingleWrites):
    """A Store held in a dict; revisions start at 1 like a fresh etcd."""

    def __init__(self) -> None:
        self._items: dict[str, Item] = {}
        self._revision = 1
        self._compacted = 0  # watches need start_revision + 1 >= this
        self._history: builtins.list[Event] = []  # sorted by mod_revision, oldest first
        self._waiters: set[asyncio.Event] = set()
        self._closed = False

    @property
    def revision(self) -> int:
        return self._revision

    async def get(self, key: str) -> Item | None:
        await self._checkpoint()
        check_key(key)
        return self._items.get(key)

    async def list(self, prefix: str) -> Snapshot:
        await self._checkpoint()
        items = sorted(
            (item for key, item in self._items.items() if key.startswith(prefix)),
            key=lambda item: item.key,
        )
        return Snapshot(tuple(items), self._revision)

    async def watch(self, prefix: str, start_revision: int) -> AsyncGenerator[Event, None]:
        check_revision(start_revision)
        await self._checkpoint()
        wake = asyncio.Event()
        self._waiters.add(wake)
        cursor = start_revision + 1  # next revision this watcher has not seen
        try:
            while True:
                wake.clear()
                self._check_open()
                if cursor < self._compacted:
                    raise Compacted(start_revision, self._compacted)
                pending = self._events_from(cursor, prefix)
                cursor = max(cursor, self._revision + 1)
                # No await in this loop: a transaction's events go out back to back.
                for event in pending:
                    yield event
                if self._revision < cursor:
                    await wake.wait()
        finally:
            self._waiters.discard(wake)

    async def commit(self, writes: Sequence[Write]) -> int:
        await self._checkpoint()
        check_writes(writes)
        current = {w.key: self._items[w.key].mod_revision for w in writes if w.key in self._items}
        conflict = first_conflict(writes, current)
        if conflict is not None:
            raise conflict
        revision = self._revision + 1
        events = [e for e in (self._apply(w, revision) for w in writes) if e is not None]
        if events:
            self._revision = revision
            self._history.extend(events)
            self._wake_all()
        return self._revision

    async def compact(self, revision: int) -> None:
        await self._checkpoint()
        if revision > self._revision:
            raise ValueError(f"cannot compact at {revision}: store is at {self._revision}")
        if revision <= self._compacted:
            return
        self._compacted = revision
        del self._history[: self._index_of(revision)]

    async def close(self) -> None:
        self._closed = True
        self._wake_all()

    # -- internals ------------------------------------------------------------------------

    async def _checkpoint(self) -> None:
        # Yield once so concurrent callers interleave as they would against a server.
        await asyncio.sleep(0)
        self._check_open()

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("store closed")

    def _apply(self, write: Write, revision: int) -> Event | None:
        if isinstance(write, Put):
            old = self._items.get(write.key)
            created = old.create_revision if old is not None else revision
            self._items[write.key] = Item(write.key, write.value, revision, created)
            return Event(EventType.PUT, write.key, write.value, revision)
        if self._items.pop(write.key, None) is None:
            return None
        return Event(EventType.DELETE, write.key, None, revision)

    def _index_of(self, revision: int) -> int:
        """Index of the first history event with mod_revision >= revision."""
        return bisect.bisect_left(self._history, revision, key=lambda e: e.mod_revision)

    def _events_from(self, revision: int, prefix: str) -> builtins.list[Event]:
        tail = self._history[self._index_of(revision) :]
        return [event for event in tail if event.key.startswith(prefix)]

    def _wake_all(self) -> None:
        for wake in self._waiters:
            wake.set()
