"""`EtcdStore`: the Store contract on an etcd v3 server, over gRPC.

It uses the protobuf messages and gRPC stubs that the `aetcd` package ships (`aetcd.rpc`),
not its high-level client: a transaction needs both compare clauses and a failure branch
that reads the keys back (to say which condition failed), and each watch gets its own gRPC
stream whose lifetime is the caller's iterator, so one slow or broken watch cannot affect
another. gRPC errors become `Unavailable`; etcd's compaction answer becomes `Compacted`.
This module must not start etcd (that is etcdproc) nor know about resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

# gRPC's fork handlers crash pyroute2's forked helpers in processes that already run gRPC
# threads (our agents open netlink sockets in namespaces that way). Must precede the import.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

from aetcd import rpc

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

PAGE_SIZE = 1000  # list in pages so no single response nears gRPC's 4 MiB message cap
# Ping an idle connection so a silently dead etcd ends open watches (as Unavailable)
# instead of leaving them hanging; 10 s stays above etcd's 5 s minimum ping interval.
CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
)


def range_end(prefix: bytes) -> bytes:
    """The exclusive end of the key range that holds every key starting with `prefix`."""
    for i in reversed(range(len(prefix))):
        if prefix[i] < 0xFF:
            return prefix[:i] + bytes([prefix[i] + 1])
    return b"\0"  # etcd: with key b"\0" too, this means "all keys"


def _item(kv: Any) -> Item:
    return Item(kv.key.decode(), bytes(kv.value), int(kv.mod_revision), int(kv.create_revision))


def _event(ev: Any) -> Event:
    if ev.type == rpc.Event.DELETE:
        return Event(EventType.DELETE, ev.kv.key.decode(), None, int(ev.kv.mod_revision))
    return Event(EventType.PUT, ev.kv.key.decode(), bytes(ev.kv.value), int(ev.kv.mod_revision))


def _compare(write: Write) -> Any:
    key = write.key.encode()
    if write.expect == 0:
        # A missing key has create_revision 0; mod_revision would also be 0, but this is
        # the comparison etcd's own clients use for "create only".
        return rpc.Compare(
            key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0
        )
    return rpc.Compare(
        key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=write.expect
    )


def _request(write: Write) -> Any:
    if isinstance(write, Put):
        return rpc.RequestOp(request_put=rpc.PutRequest(key=write.key.encode(), value=write.value))
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=write.key.encode()))


def _read_back(write: Write) -> Any:
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=write.key.encode(), keys_only=True))


def _unavailable(err: Exception) -> Unavailable:
    if isinstance(err, rpc.AioRpcError):
        return Unavailable(f"etcd: {err.code().name}: {err.details()}")
    return Unavailable(f"etcd: {err!r}")


class EtcdStore(SingleWrites):
    """A Store backed by one etcd endpoint ("127.0.0.1:2379"). Create it inside the event
    loop that will use it (gRPC channels are bound to their loop), or use `connect()`."""

    def __init__(self, endpoint: str, *, timeout: float = 10.0) -> None:
        if "://" in endpoint:
            scheme, _, endpoint = endpoint.partition("://")
            if scheme != "http":
                raise ValueError(f"only plain http etcd endpoints are supported, not {scheme}")
        self.endpoint = endpoint
        self._timeout = timeout
        self._channel = rpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
        self._kv = rpc.KVStub(self._channel)
        self._watch = rpc.WatchStub(self._channel)
        self._closed = False

    async def get(self, key: str) -> Item | None:
        check_key(key)
        resp = await self._call(self._kv.Range, rpc.RangeRequest(key=key.encode()))
        return _item(resp.kvs[0]) if resp.kvs else None

    async def list(self, prefix: str) -> Snapshot:
        start, end = (prefix.encode() or b"\0"), range_end(prefix.encode())
        items: list[Item] = []
        revision = 0  # 0 = "current" for the first page; later pages read at that revision
        while True:
            req = rpc.RangeRequest(key=start, range_end=end, limit=PAGE_SIZE, revision=revision)
            resp = await self._call(self._kv.Range, req)
            revision = revision or int(resp.header.revision)
            items.extend(_item(kv) for kv in resp.kvs)
            if not resp.more:
                return Snapshot(tuple(items), revision)
            start = resp.kvs[-1].key + b"\0"

    async def watch(self, prefix: str, start_revision: int) -> AsyncGenerator[Event, None]:
        check_revision(start_revision)
        self._check_open()
        key = prefix.encode() or b"\0"
        create = rpc.WatchCreateRequest(
            key=key, range_end=range_end(prefix.encode()), start_revision=start_revision + 1
        )
        call = self._watch.Watch(_requests(rpc.WatchRequest(create_request=create)))
        try:
            with _translated(call):
                async for resp in call:
                    if resp.compact_revision:
                        raise Compacted(start_revision, int(resp.compact_revision))
                    if resp.canceled:
                        raise Unavailable(f"etcd cancelled the watch: {resp.cancel_reason}")
                    # One response holds whole revisions (we never ask for fragments), and
                    # nothing here awaits, so a transaction's events go out back to back.
                    for ev in resp.events:
                        yield _event(ev)
            raise Unavailable("etcd closed the watch stream")
        finally:
            call.cancel()

    async def commit(self, writes: Sequence[Write]) -> int:
        check_writes(writes)
        guarded = [w for w in writes if w.expect is not None]
        txn = rpc.TxnRequest(
            compare=[_compare(w) for w in guarded],
            success=[_request(w) for w in writes],
            failure=[_read_back(w) for w in guarded],
        )
        resp = await self._call(self._kv.Txn, txn)
        if not resp.succeeded:
            raise self._conflict(guarded, resp.responses)
        return int(resp.header.revision)

    async def compact(self, revision: int) -> None:
        check_revision(revision)
        self._check_open()
        try:
            await self._kv.Compact(
                rpc.CompactionRequest(revision=revision, physical=True), timeout=self._timeout
            )
        except rpc.AioRpcError as err:
            if err.code() != rpc.StatusCode.OUT_OF_RANGE:
                raise _unavailable(err) from err
            if "future revision" in (err.details() or ""):
                raise ValueError(f"cannot compact at {revision}: {err.details()}") from err
            # "required revision has been compacted": already done, as the contract says.

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._channel.close()

    async def __aenter__(self) -> EtcdStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- internals ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("store closed")

    async def _call(self, method: Callable[..., Awaitable[Any]], request: Any) -> Any:
        self._check_open()
        try:
            return await method(request, timeout=self._timeout)
        except (rpc.AioRpcError, rpc.BaseError) as err:
            raise _unavailable(err) from err

    def _conflict(self, guarded: Sequence[Write], responses: Any) -> Exception:
        current: dict[str, int] = {}
        for write, op in zip(guarded, responses, strict=True):
            if op.response_range.kvs:
                current[write.key] = int(op.response_range.kvs[0].mod_revision)
        return first_conflict(guarded, current) or Unavailable("etcd: transaction failed")


async def connect(endpoint: str, *, timeout: float = 10.0) -> EtcdStore:
    """An EtcdStore that has answered one request (raises Unavailable otherwise)."""
    store = EtcdStore(endpoint, timeout=timeout)
    try:
        await store.get("/egressgw/")
    except BaseException:
        await store.close()
        raise
    return store


async def _requests(create: Any) -> AsyncIterator[Any]:
    """The request side of a watch stream: one create, then stay open until cancelled."""
    yield create
    await asyncio.Event().wait()


@contextlib.contextmanager
def _translated(call: Any) -> Iterator[None]:
    """gRPC failures of a watch stream as Unavailable; our own cancellation passes through."""
    try:
        yield
    except (rpc.AioRpcError, rpc.BaseError) as err:
        raise _unavailable(err) from err
    except asyncio.CancelledError:
        # Closing the channel cancels its streams; only a cancelled *task* must propagate.
        task = asyncio.current_task()
        if call.cancelled() and task is not None and task.cancelling() == 0:
            raise Unavailable("etcd watch stream cancelled (store closed)") from None
        raise
