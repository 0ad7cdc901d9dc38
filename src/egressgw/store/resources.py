"""Typed access to Kubernetes-style resources and controller state kept in a Store.

Layout: a resource lives as JSON at `/egressgw/resources/<kind>/<namespace or _cluster>/<name>`
(a Kubernetes namespace can never be called `_cluster`); controller state (IPAM claims and
the like) lives under `/egressgw/state/`. This module holds `ResourceStore` (list, atomic
apply, delete, CAS updates, watch), `Informer` (list-then-watch cache with a debounced
callback) and `StateStore` (claim/release of state keys). It knows nothing of the resource
model: encoding, decoding and keys come in as plain callables, and `encode` must produce a
JSON object with Kubernetes layout (`metadata.annotations`). It must not parse manifests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import types
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from egressgw.store.base import (
    Compacted,
    Conflict,
    Delete,
    EventType,
    Item,
    NotFound,
    Put,
    Store,
    Unavailable,
)

log = logging.getLogger(__name__)

RESOURCE_PREFIX = "/egressgw/resources/"
STATE_PREFIX = "/egressgw/state/"
CLUSTER_SCOPE = "_cluster"
MAX_ATTEMPTS = 16  # CAS retries before giving up on a hot key

R = TypeVar("R")
ResKey = tuple[str, str | None, str]  # (kind, namespace or None, name)


def resource_path(key: ResKey) -> str:
    """Where a resource lives; namespace None means cluster-scoped."""
    kind, namespace, name = key
    scope = CLUSTER_SCOPE if namespace is None else namespace
    for part in (kind, scope, name):
        if not part or "/" in part:
            raise ValueError(f"invalid resource key part {part!r} in {key!r}")
    if namespace == CLUSTER_SCOPE:
        raise ValueError(f"namespace {CLUSTER_SCOPE!r} is reserved")
    return f"{RESOURCE_PREFIX}{kind}/{scope}/{name}"


def parse_resource_path(path: str) -> ResKey:
    parts = path.removeprefix(RESOURCE_PREFIX).split("/")
    if not path.startswith(RESOURCE_PREFIX) or len(parts) != 3 or not all(parts):
        raise ValueError(f"not a resource path: {path!r}")
    kind, namespace, name = parts
    return kind, (None if namespace == CLUSTER_SCOPE else namespace), name


def kind_prefix(kind: str | None) -> str:
    return RESOURCE_PREFIX if kind is None else f"{RESOURCE_PREFIX}{kind}/"


@dataclass(frozen=True, slots=True)
class ResourceEvent(Generic[R]):
    """A resource was created/replaced (PUT) or deleted (DELETE, resource None)."""

    type: EventType
    key: ResKey
    resource: R | None
    revision: int


class ResourceStore(Generic[R]):
    """Resources of type R in a Store.

    `with_version(r, v)` (optional) returns r with metadata.resource_version set to v; it is
    cleared (None) before encoding and set to the key's mod_revision after decoding.
    `version_of(r)` (optional) reads it back; `apply` then uses a set version as a CAS
    condition, as Kubernetes does for an update carrying a resourceVersion.
    """

    def __init__(
        self,
        store: Store,
        *,
        encode: Callable[[R], bytes],
        decode: Callable[[bytes], R],
        key_of: Callable[[R], ResKey],
        with_version: Callable[[R, str | None], R] | None = None,
        version_of: Callable[[R], str | None] | None = None,
    ) -> None:
        self.store = store
        self.key_of = key_of
        self._encode = encode
        self._decode = decode
        self._with_version = with_version
        self._version_of = version_of

    async def get(self, key: ResKey) -> R | None:
        item = await self.store.get(resource_path(key))
        return self._read(item) if item is not None else None

    async def list_all(self, kind: str | None = None) -> tuple[list[R], int]:
        """Every decodable resource (of `kind`, if given), sorted by key, and the revision."""
        snap = await self.store.list(kind_prefix(kind))
        decoded = (self._read_or_none(item) for item in snap.items)
        return [r for r in decoded if r is not None], snap.revision

    async def apply(self, resources: Sequence[R]) -> int:
        """Create or replace all of them in one transaction (all or nothing)."""
        writes = [
            Put(resource_path(self.key_of(r)), self._write(r), self._expect(r)) for r in resources
        ]
        return await self.store.commit(writes)

    async def delete(self, keys: Sequence[ResKey]) -> int:
        """Delete all of them in one transaction; missing ones are ignored."""
        return await self.store.commit([Delete(resource_path(key)) for key in keys])

    async def update(self, key: ResKey, change: Callable[[R], R]) -> R:
        """Read, change, compare-and-swap; retried on conflict. `change` may run repeatedly."""
        return await self._modify(key, lambda item: self._write(change(self._read(item))))

    async def patch_annotations(
        self, key: ResKey, set: Mapping[str, str], remove: Sequence[str] = ()
    ) -> R:
        """Set and remove annotations without touching the rest; retried on conflict."""

        def annotate(item: Item) -> bytes | None:
            patched = _patched_annotations(item.value, set, remove)
            return None if patched is None else self._write(self._decode(patched))

        return await self._modify(key, annotate)

    async def watch(
        self, from_revision: int, kind: str | None = None
    ) -> AsyncGenerator[ResourceEvent[R], None]:
        """Changes after `from_revision`; an undecodable object is reported as deleted."""
        async with contextlib.aclosing(self.store.watch(kind_prefix(kind), from_revision)) as evs:
            async for ev in evs:
                try:
                    key = parse_resource_path(ev.key)
                except ValueError:
                    log.warning("ignoring stray key %s", ev.key)
                    continue
                value = None
                if ev.value is not None:
                    value = self._read_or_none(Item(ev.key, ev.value, ev.mod_revision, 0))
                kind_ = EventType.PUT if value is not None else EventType.DELETE
                yield ResourceEvent(kind_, key, value, ev.mod_revision)

    # -- internals ------------------------------------------------------------------------

    async def _modify(self, key: ResKey, transform: Callable[[Item], bytes | None]) -> R:
        """CAS loop: `transform` gives the new value, or None (or the same bytes) for none."""
        path = resource_path(key)
        last: Conflict | None = None
        for _ in range(MAX_ATTEMPTS):
            item = await self.store.get(path)
            if item is None:
                raise NotFound(key)
            value = transform(item)
            if value is None or value == item.value:
                return self._read(item)  # nothing to change: no write, no revision bump
            try:
                revision = await self.store.put(path, value, expect=item.mod_revision)
            except Conflict as err:
                last = err
                continue
            return self._read(Item(path, value, revision, item.create_revision))
        assert last is not None
        raise last

    def _read(self, item: Item) -> R:
        res = self._decode(item.value)
        if self._with_version is not None:
            res = self._with_version(res, str(item.mod_revision))
        return res

    def _read_or_none(self, item: Item) -> R | None:
        try:
            return self._read(item)
        except Exception:  # one bad object must not blind the reader to all the others
            log.warning("cannot decode %s at revision %d", item.key, item.mod_revision)
            return None

    def _write(self, res: R) -> bytes:
        if self._with_version is not None:
            res = self._with_version(res, None)  # the revision lives in the store, not the JSON
        return self._encode(res)

    def _expect(self, res: R) -> int | None:
        version = self._version_of(res) if self._version_of is not None else None
        return int(version) if version else None


def _patched_annotations(raw: bytes, set: Mapping[str, str], remove: Sequence[str]) -> bytes | None:
    """The JSON object with its annotations patched, or None if they would not change."""
    obj: dict[str, Any] = json.loads(raw)
    meta: dict[str, Any] = obj.setdefault("metadata", {})
    before: dict[str, str] = dict(meta.get("annotations") or {})
    after = {k: v for k, v in before.items() if k not in remove} | dict(set)
    if after == before:
        return None
    meta["annotations"] = after
    return json.dumps(obj).encode()


OnChange = Callable[[Mapping[ResKey, R], int], Awaitable[None]]


class Informer(Generic[R]):
    """List, then watch; keeps the current objects and reports the whole state.

    `on_change(state, revision)` is awaited once after the initial list (nothing is reported
    before that), then at most `delay` seconds after each change, with everything that
    arrived meanwhile applied; each report is a consistent snapshot at a transaction
    boundary. On Compacted it lists again; on Unavailable it waits `retry_delay` and resumes.
    Exceptions from on_change end `run()`.
    """

    def __init__(
        self,
        resources: ResourceStore[R],
        on_change: OnChange[R],
        *,
        kind: str | None = None,
        delay: float = 0.05,
        retry_delay: float = 1.0,
    ) -> None:
        self._resources = resources
        self._on_change = on_change
        self._kind = kind
        self._delay = delay
        self._retry_delay = retry_delay
        self._state: dict[ResKey, R] = {}
        self.revision = 0
        self.synced = asyncio.Event()

    @property
    def state(self) -> Mapping[ResKey, R]:
        return types.MappingProxyType(self._state)

    async def run(self) -> None:
        """Run until cancelled."""
        must_list = True
        while True:
            try:
                if must_list:
                    await self._relist()
                    must_list = False
                await self._follow()
            except Compacted:
                log.info("watch from %d compacted; listing again", self.revision)
                must_list = True
            except Unavailable as err:
                log.warning("store unavailable (%s); retrying in %.1fs", err, self._retry_delay)
                await asyncio.sleep(self._retry_delay)

    async def _relist(self) -> None:
        resources, revision = await self._resources.list_all(self._kind)
        self._state = {self._resources.key_of(r): r for r in resources}
        self.revision = revision
        await self._emit()
        self.synced.set()

    async def _follow(self) -> None:
        queue: asyncio.Queue[ResourceEvent[R] | Exception] = asyncio.Queue()
        reader = asyncio.create_task(self._pump(queue))
        try:
            while True:
                self._absorb(await queue.get())
                await asyncio.sleep(self._delay)  # let the rest of a burst arrive
                error = self._drain(queue)
                await self._emit()
                if error is not None:
                    raise error
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _pump(self, queue: asyncio.Queue[ResourceEvent[R] | Exception]) -> None:
        # put_nowait never suspends, so whole transactions land in the queue together.
        try:
            async with contextlib.aclosing(self._resources.watch(self.revision, self._kind)) as evs:
                async for ev in evs:
                    queue.put_nowait(ev)
        except Exception as err:
            queue.put_nowait(err)

    def _drain(self, queue: asyncio.Queue[ResourceEvent[R] | Exception]) -> Exception | None:
        while not queue.empty():
            entry = queue.get_nowait()
            if isinstance(entry, Exception):
                return entry
            self._absorb(entry)
        return None

    def _absorb(self, entry: ResourceEvent[R] | Exception) -> None:
        if isinstance(entry, Exception):
            raise entry
        if entry.resource is None:
            self._state.pop(entry.key, None)
        else:
            self._state[entry.key] = entry.resource
        self.revision = entry.revision

    async def _emit(self) -> None:
        await self._on_change(types.MappingProxyType(dict(self._state)), self.revision)


class StateStore:
    """Small string values under STATE_PREFIX with claim/release semantics, e.g. IPAM:
    `claim("ipam/10.0.0.7", "gw-a")` succeeds for exactly one owner at a time."""

    def __init__(self, store: Store, prefix: str = STATE_PREFIX) -> None:
        self.store = store
        self.prefix = prefix

    async def get(self, key: str) -> str | None:
        item = await self.store.get(self.prefix + key)
        return item.value.decode() if item is not None else None

    async def items(self, subprefix: str = "") -> tuple[dict[str, str], int]:
        """Every key under `subprefix` (relative to the state prefix) and the revision."""
        snap = await self.store.list(self.prefix + subprefix)
        found = {it.key.removeprefix(self.prefix): it.value.decode() for it in snap.items}
        return found, snap.revision

    async def claim(self, key: str, value: str) -> bool:
        """Create `key` = `value` if absent. True if the key now holds `value` (created now or
        already ours, so a restarted owner can re-claim), False if someone else holds it."""
        path, data = self.prefix + key, value.encode()
        try:
            await self.store.put(path, data, expect=0)
            return True
        except Conflict:
            item = await self.store.get(path)
            return item is not None and item.value == data

    async def release(self, key: str, expect_value: str) -> bool:
        """Delete `key` only if it still holds `expect_value`; True if this call deleted it."""
        path, data = self.prefix + key, expect_value.encode()
        last: Conflict | None = None
        for _ in range(MAX_ATTEMPTS):
            item = await self.store.get(path)
            if item is None or item.value != data:
                return False
            try:
                await self.store.delete(path, expect=item.mod_revision)
                return True
            except Conflict as err:
                last = err
        assert last is not None
        raise last
