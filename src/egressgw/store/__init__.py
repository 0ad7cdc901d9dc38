"""The store layer: one key-value contract (list, watch from a revision, compare-and-swap,
atomic multi-key writes) with an in-memory and an etcd implementation, plus typed resource
access on top. Backends are imported from their modules (`egressgw.store.memory`,
`egressgw.store.etcd`) so that importing this package never loads gRPC."""

from egressgw.store.base import (
    MAX_TXN_OPS,
    Compacted,
    Conflict,
    Delete,
    Event,
    EventType,
    Item,
    NotFound,
    Put,
    Snapshot,
    Store,
    StoreError,
    Unavailable,
    Write,
)

__all__ = [
    "MAX_TXN_OPS",
    "Compacted",
    "Conflict",
    "Delete",
    "Event",
    "EventType",
    "Item",
    "NotFound",
    "Put",
    "Snapshot",
    "Store",
    "StoreError",
    "Unavailable",
    "Write",
]
