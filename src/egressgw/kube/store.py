"""`KubeStore`: the `Store` protocol on the Kubernetes API, so every process runs unchanged.

Keys map to the cluster as follows:

- `/egressgw/resources/<Kind>/<namespace or _cluster>/<name>` is that Kubernetes object (the
  kind's API resource comes from an `ApiMap`); its value is the object's JSON without
  `resourceVersion`, and its mod_revision is the object's resourceVersion (create_revision
  is unknown to Kubernetes and reported as 0);
- every other key is an entry of one ConfigMap in our namespace (`stateobject`), which gives
  those keys etcd's semantics exactly, atomic multi-key transactions included.

Revisions are resourceVersions read as integers: one etcd-backed cluster numbers every write
with one counter, so they compare across resources. `list` over several resources reads the
lagging ones again at the newest version (`resourceVersionMatch=Exact`), so a snapshot is
consistent at one revision. `watch` runs one Kubernetes watch per resource (with bookmarks,
and reconnects from the last seen version when the server ends a stream); 410 Gone raises
`Compacted`. Events of one resource arrive in order; across resources there is no
transaction to keep, so they are passed on as they come, and a watch over several resources
that loses a stream raises `Compacted` (list again) rather than risk a gap on resume.
A commit touching several Kubernetes objects cannot be atomic: its conditions are checked
first, then the writes go in order. `compact` is a no-op (the API server compacts itself).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from egressgw.kube import keys, stateobject
from egressgw.kube.api import CONFIG_MAP, ApiMap, ApiResource
from egressgw.kube.client import (
    ApiError,
    ConflictError,
    GoneError,
    KubeClient,
    NotFoundError,
    Unreachable,
)
from egressgw.store.base import (
    Compacted,
    Conflict,
    Delete,
    Event,
    EventType,
    Item,
    SingleWrites,
    Snapshot,
    StoreError,
    Unavailable,
    Write,
    check_key,
    check_revision,
    check_writes,
    first_conflict,
)
from egressgw.store.resources import RESOURCE_PREFIX

log = logging.getLogger(__name__)
_TOO_OLD = re.compile(r"\((\d+)\)")
_STATE_ATTEMPTS = 32  # a state transaction retries on 409 while its own conditions hold


class KubeStore(SingleWrites):
    """A Store over a Kubernetes cluster; `namespace` holds the state ConfigMap."""

    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        apis: ApiMap | None = None,
        state_name: str = stateobject.STATE_NAME,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.apis = apis or ApiMap()
        self.state_name = state_name
        self._revision = 0  # the newest resourceVersion seen
        self._closed = asyncio.Event()

    # -- reads --------------------------------------------------------------------------------

    async def get(self, key: str) -> Item | None:
        check_key(key)
        if not key.startswith(RESOURCE_PREFIX):
            return (await self._state()).item(key)
        res, namespace, name = keys.locate(key, self.apis)
        try:
            obj = await self._call(self.client.get(res, namespace, name))
        except NotFoundError:
            return None
        return self._item(key, res, obj)

    async def list(self, prefix: str) -> Snapshot:
        sources = keys.sources(prefix, self.apis)
        found = [await self._read(s, prefix) for s in sources]
        newest = max((rev for _, rev in found), default=self._revision)
        for index, (source, (_, rev)) in enumerate(zip(sources, found, strict=True)):
            if rev != newest:  # read again at the newest version: one consistent snapshot
                found[index] = await self._read(source, prefix, at=newest)
        items = sorted((i for part, _ in found for i in part), key=lambda i: i.key)
        return Snapshot(tuple(items), newest)

    async def _read(self, source: keys.Source, prefix: str, at: int | None = None) -> tuple[builtins.list[Item], int]:
        if source.res is None:
            objs, rev = await self._call(self.client.list(
                CONFIG_MAP, self.namespace, field_selector=f"metadata.name={self.state_name}",
                resource_version=None if at is None else str(at), exact=at is not None,
            ))
            return stateobject.decode(objs[0] if objs else None).items(prefix), int(rev)
        res = source.res
        try:
            objs, rev = await self._call(self.client.list(
                res, source.namespace, resource_version=None if at is None else str(at),
                exact=at is not None,
            ))
        except NotFoundError:
            raise StoreError(f"{res.api_version} {res.plural} is not served: is its CRD installed?") from None
        items = (self._item(keys.key_of(res, o), res, o) for o in objs)
        return [i for i in items if i.key.startswith(prefix)], int(rev)

    # -- writes -------------------------------------------------------------------------------

    async def commit(self, writes: Sequence[Write]) -> int:
        check_writes(writes)
        self._check_open()
        state = [w for w in writes if not w.key.startswith(RESOURCE_PREFIX)]
        objects = [w for w in writes if w.key.startswith(RESOURCE_PREFIX)]
        if len(objects) > 1 or (objects and state):
            await self._check_conditions(objects)  # best effort: Kubernetes has no transactions
        if state:
            await self._commit_state(state)
        for write in objects:
            await self._write_object(write)
        return self._revision

    async def compact(self, revision: int) -> None:
        """A no-op: the API server compacts its history on its own schedule."""
        check_revision(revision)
        if revision > self._revision:
            raise ValueError(f"cannot compact at {revision}: newest seen is {self._revision}")

    async def close(self) -> None:
        self._closed.set()

    # -- watch --------------------------------------------------------------------------------

    async def watch(self, prefix: str, start_revision: int) -> AsyncGenerator[Event, None]:
        check_revision(start_revision)
        self._check_open()
        sources = keys.sources(prefix, self.apis)
        queue: asyncio.Queue[builtins.list[Event] | Exception] = asyncio.Queue()
        several = len(sources) > 1
        tasks = [
            asyncio.create_task(self._follow(s, prefix, start_revision, queue, several))
            for s in sources
        ]
        closer = asyncio.create_task(self._closed.wait())
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait([getter, closer], return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    raise Unavailable("store closed")
                batch = getter.result()
                if isinstance(batch, Exception):
                    raise batch
                for event in batch:  # no await: one transaction goes out back to back
                    yield event
        finally:
            for task in (*tasks, closer):
                task.cancel()
            await asyncio.gather(*tasks, closer, return_exceptions=True)

    async def _follow(
        self,
        source: keys.Source,
        prefix: str,
        start: int,
        queue: asyncio.Queue[builtins.list[Event] | Exception],
        several: bool,
    ) -> None:
        """Feed one resource's changes into `queue`, reconnecting after server timeouts."""
        cursor = start
        try:
            while True:
                async with contextlib.aclosing(self._stream(source, prefix, cursor)) as stream:
                    async for revision, events in stream:
                        cursor = max(cursor, revision)
                        if events:
                            queue.put_nowait(events)
                await asyncio.sleep(0.05)  # the server ended the stream (timeout): resume
        except GoneError as err:
            found = _TOO_OLD.search(err.message)
            queue.put_nowait(Compacted(start, int(found.group(1)) if found else cursor))
        except (ApiError, Unreachable) as err:
            queue.put_nowait(Compacted(start, cursor) if several else Unavailable(str(err)))

    async def _stream(
        self, source: keys.Source, prefix: str, cursor: int
    ) -> AsyncGenerator[tuple[int, builtins.list[Event]], None]:
        res = source.res or CONFIG_MAP
        selector = f"metadata.name={self.state_name}" if source.res is None else None
        namespace = self.namespace if source.res is None else source.namespace
        watch = self.client.watch(res, namespace, resource_version=str(cursor), field_selector=selector)
        async with contextlib.aclosing(watch) as events:
            async for ev in events:
                revision = int(ev.resource_version or cursor)
                self._seen(revision)
                found = self._events(source, ev.type, ev.object, revision)
                yield revision, [e for e in found if e.key.startswith(prefix)]

    def _events(self, source: keys.Source, kind: str, obj: dict[str, Any], revision: int) -> builtins.list[Event]:
        if kind == "BOOKMARK":
            return []
        if source.res is None:
            state = stateobject.decode(obj)
            return state.removal("") if kind == "DELETED" else state.changes("")
        key = keys.key_of(source.res, obj)
        if kind == "DELETED":
            return [Event(EventType.DELETE, key, None, revision)]
        return [Event(EventType.PUT, key, self._item(key, source.res, obj).value, revision)]

    # -- state object -------------------------------------------------------------------------

    async def _state_object(self) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self._call(
                self.client.get(CONFIG_MAP, self.namespace, self.state_name)
            )
            return found
        except NotFoundError:
            return None

    async def _state(self) -> stateobject.StateObject:
        state = stateobject.decode(await self._state_object())
        self._seen(state.revision)
        return state

    async def _commit_state(self, writes: Sequence[Write]) -> None:
        for _ in range(_STATE_ATTEMPTS):
            state = await self._state()
            conflict = first_conflict(writes, state.mod_revisions())
            if conflict is not None:
                raise conflict
            after = stateobject.applied(state, writes)
            if after is None:
                return
            body = stateobject.encode(after, self.state_name, self.namespace)
            try:
                if state.revision:
                    saved = await self._call(self.client.replace(CONFIG_MAP, body))
                else:
                    saved = await self._call(self.client.create(CONFIG_MAP, body))
            except ConflictError:
                continue  # another writer got in between: check our conditions again
            self._seen(int(saved["metadata"]["resourceVersion"]))
            return
        raise Unavailable(f"state object {self.state_name} too contended")

    # -- Kubernetes objects -------------------------------------------------------------------

    async def _check_conditions(self, writes: Sequence[Write]) -> None:
        current: dict[str, int] = {}
        for write in writes:
            if write.expect is not None:
                item = await self.get(write.key)
                if item is not None:
                    current[write.key] = item.mod_revision
        conflict = first_conflict(writes, current)
        if conflict is not None:
            raise conflict

    async def _write_object(self, write: Write) -> None:
        res, namespace, name = keys.locate(write.key, self.apis)
        if isinstance(write, Delete):
            await self._delete_object(write, res, namespace, name)
            return
        obj = keys.object_of(res, namespace, name, write.value)
        if write.expect == 0:
            saved = await self._guarded(write, self.client.create(res, obj))
        elif write.expect is not None:
            obj["metadata"]["resourceVersion"] = str(write.expect)
            saved = await self._guarded(write, self.client.replace(res, obj))
        else:
            saved = await self._upsert(res, obj)
        if res.status and "status" in obj and saved.get("status") != obj["status"]:
            status = {**saved, "status": obj["status"]}
            saved = await self._guarded(write, self.client.replace(res, status, subresource="status"))
        self._seen(int(saved["metadata"]["resourceVersion"]))

    async def _upsert(self, res: ApiResource, obj: dict[str, Any]) -> dict[str, Any]:
        while True:
            try:
                saved: dict[str, Any] = await self._call(self.client.replace(res, obj))
                return saved
            except NotFoundError:
                pass
            try:
                saved = await self._call(self.client.create(res, obj))
                return saved
            except ConflictError:
                continue  # created meanwhile: replace it

    async def _delete_object(
        self, write: Delete, res: ApiResource, namespace: str | None, name: str
    ) -> None:
        if write.expect == 0:
            item = await self.get(write.key)
            if item is not None:
                raise Conflict(write.key, 0, item.mod_revision)
            return
        version = str(write.expect) if write.expect else None
        try:
            gone = await self._call(self.client.delete(res, namespace, name, resource_version=version))
        except NotFoundError:
            if write.expect:
                raise Conflict(write.key, write.expect, 0) from None
            return
        except ConflictError:
            raise await self._conflict(write) from None
        # The API server returns the deleted object at the deletion's resourceVersion.
        self._seen(int(gone.get("metadata", {}).get("resourceVersion") or 0))

    async def _guarded(self, write: Write, call: Any) -> dict[str, Any]:
        try:
            saved: dict[str, Any] = await self._call(call)
        except (ConflictError, NotFoundError):
            raise await self._conflict(write) from None
        return saved

    async def _conflict(self, write: Write) -> Conflict:
        item = await self.get(write.key)
        return Conflict(write.key, write.expect or 0, 0 if item is None else item.mod_revision)

    def _item(self, key: str, res: ApiResource, obj: dict[str, Any]) -> Item:
        item = keys.item_of(key, res, obj)
        self._seen(item.mod_revision)
        return item

    # -- plumbing -----------------------------------------------------------------------------

    def _seen(self, revision: int) -> None:
        self._revision = max(self._revision, revision)

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise Unavailable("store closed")

    async def _call(self, call: Any) -> Any:
        """Await one API call; map transport failures to Unavailable, 404 of a whole
        resource type to a StoreError that names it."""
        if self._closed.is_set():
            call.close()
            raise Unavailable("store closed")
        try:
            return await call
        except Unreachable as err:
            raise Unavailable(str(err)) from err
        except GoneError:
            raise
        except (NotFoundError, ConflictError):
            raise
        except ApiError as err:
            raise StoreError(str(err)) from err
