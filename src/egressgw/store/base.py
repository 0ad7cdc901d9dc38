"""The key-value store contract: value types, errors and the `Store` Protocol.

Everything egressgw keeps (resources, IPAM allocations, status) lives in one ordered
key-value store with etcd v3 semantics: a single global revision counter that every write
bumps, list-at-a-revision, watch-from-a-revision, and compare-and-swap on a key's
mod_revision. Two implementations follow this contract identically: `MemoryStore` (tests,
`explain`) and `EtcdStore` (the lab, standalone installs).

Conventions: keys are `str` (UTF-8 on the wire; ordering is by code point, which is the
byte order etcd uses); values are `bytes`. This module holds only types and pure checks;
it must not do I/O.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Protocol

# etcd's default --max-txn-ops; both backends refuse larger transactions so that code
# tested against MemoryStore cannot fail only in production.
MAX_TXN_OPS = 128


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Item:
    """One key as listed: its value and the revisions that created and last changed it."""

    key: str
    value: bytes
    mod_revision: int
    create_revision: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """All items under a prefix, sorted by key, as of `revision` (the store's revision)."""

    items: tuple[Item, ...]
    revision: int


@dataclass(frozen=True, slots=True)
class Event:
    """One change. `mod_revision` is the revision of the write; value is None on DELETE."""

    type: EventType
    key: str
    value: bytes | None
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Put:
    """A write in a transaction. expect: None = unconditional, 0 = key must not exist,
    N > 0 = the key's mod_revision must be N."""

    key: str
    value: bytes
    expect: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """A delete in a transaction; `expect` as for Put. Deleting a missing key is a no-op."""

    key: str
    expect: int | None = None


Write = Put | Delete


class StoreError(Exception):
    """Base of everything a Store raises on purpose."""


class Conflict(StoreError):
    """A compare-and-swap condition failed; nothing was written."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"{key}: expected mod_revision {expected}, found {actual}")
        self.key = key
        self.expected = expected
        self.actual = actual  # 0 = the key does not exist


class Compacted(StoreError):
    """The watch start revision is older than the store's history (like HTTP 410 Gone):
    list again and watch from the new snapshot's revision."""

    def __init__(self, start_revision: int, compact_revision: int) -> None:
        super().__init__(
            f"cannot watch from revision {start_revision}: compacted at {compact_revision}"
        )
        self.start_revision = start_revision
        self.compact_revision = compact_revision


class Unavailable(StoreError):
    """The store cannot be reached, timed out, or was closed."""


class NotFound(StoreError, KeyError):
    """The key (or resource) does not exist."""


class Store(Protocol):
    """An etcd-v3-like store. All writes are linearizable; every successful write that
    changes something bumps the single global revision by one."""

    async def get(self, key: str) -> Item | None:
        """The item at `key`, or None."""

    async def list(self, prefix: str) -> Snapshot:
        """Every item whose key starts with `prefix` ("" = all), consistent at one revision."""

    def watch(self, prefix: str, start_revision: int) -> AsyncGenerator[Event, None]:
        """Every change under `prefix` with mod_revision > start_revision, in revision order,
        for as long as the caller iterates. Raises Compacted if that history is gone and
        Unavailable if the store goes away. All events of one revision are delivered back to
        back, without the iterator suspending between them, so a consumer that does not
        await between events never observes half a transaction. Close it with
        `contextlib.aclosing` to release the server-side watch promptly."""

    async def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        """Write one key (CAS as in `Put`); returns the new revision or raises Conflict."""

    async def delete(self, key: str, *, expect: int | None = None) -> int:
        """Delete one key (CAS as in `Delete`); returns the store revision after it."""

    async def commit(self, writes: Sequence[Write]) -> int:
        """Apply all writes atomically, or none if any condition fails (raises Conflict for
        the first failing write, in order). At most MAX_TXN_OPS writes, each key once.
        Returns the store revision afterwards (unchanged if nothing changed)."""

    async def compact(self, revision: int) -> None:
        """Forget history before `revision` (<= current); watches from older revisions
        then raise Compacted. Compacting at or below an earlier compaction is a no-op."""

    async def close(self) -> None:
        """Release connections; later calls and open watches raise Unavailable."""


class SingleWrites:
    """`put` and `delete` as one-write commits, for a Store that implements `commit`."""

    async def commit(self, writes: Sequence[Write]) -> int:
        raise NotImplementedError

    async def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        return await self.commit([Put(key, value, expect)])

    async def delete(self, key: str, *, expect: int | None = None) -> int:
        return await self.commit([Delete(key, expect)])


def check_key(key: str) -> None:
    if not key:
        raise ValueError("empty key")


def check_revision(revision: int) -> None:
    if revision < 0:
        raise ValueError(f"negative revision {revision}")


def check_writes(writes: Sequence[Write]) -> None:
    """The shape rules etcd enforces on a transaction, checked the same way for every backend."""
    if len(writes) > MAX_TXN_OPS:
        raise ValueError(f"{len(writes)} writes in one transaction, at most {MAX_TXN_OPS}")
    seen: set[str] = set()
    for write in writes:
        check_key(write.key)
        if write.expect is not None:
            check_revision(write.expect)
        if write.key in seen:
            raise ValueError(f"key {write.key!r} written twice in one transaction")
        seen.add(write.key)


def first_conflict(writes: Sequence[Write], current: dict[str, int]) -> Conflict | None:
    """The Conflict for the first write whose condition fails, given each key's current
    mod_revision (absent = 0), or None if all hold."""
    for write in writes:
        actual = current.get(write.key, 0)
        if write.expect is None:
            continue
        if (write.expect == 0 and actual != 0) or (write.expect > 0 and actual != write.expect):
            return Conflict(write.key, write.expect, actual)
    return None
