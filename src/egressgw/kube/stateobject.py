"""The state object: many store keys with etcd semantics inside one ConfigMap.

Pure. Controller state (IPAM claims and the like) needs compare-and-swap per key and atomic
multi-key transactions. Kubernetes offers both for exactly one object, so every state key
lives in one namespaced ConfigMap and each transaction is one update of it, guarded by its
resourceVersion. Layout of `data`:

- `entries`: JSON `{key: [base64 value, mod_revision or null, create_revision or null]}`;
- `last`: JSON list of the keys the last transaction wrote, in order (absent = deleted).

A key's revisions are only known after the write that sets them, so that write leaves them
null: null means "the resourceVersion of this very version of the object". The next
transaction fills them in before it writes. A watch of the ConfigMap thus yields, for each
version, exactly the changed keys (`last`), and replaying versions replays transactions.
This module must not do I/O.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from egressgw.store.base import Delete, Event, EventType, Item, Put, Write

STATE_NAME = "egressgw-state"
Entry = tuple[bytes, int | None, int | None]  # value, mod_revision, create_revision


@dataclass(frozen=True)
class StateObject:
    """The decoded ConfigMap; `revision` 0 means it does not exist yet."""

    revision: int = 0
    entries: Mapping[str, Entry] = field(default_factory=dict)
    last: tuple[str, ...] = ()

    def item(self, key: str) -> Item | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        value, mod, create = entry
        return Item(key, value, mod or self.revision, create or self.revision)

    def items(self, prefix: str) -> list[Item]:
        found = (self.item(k) for k in sorted(self.entries) if k.startswith(prefix))
        return [i for i in found if i is not None]

    def mod_revisions(self) -> dict[str, int]:
        return {k: mod or self.revision for k, (_, mod, _c) in self.entries.items()}

    def changes(self, prefix: str) -> list[Event]:
        """The events of the transaction that made this version, in write order."""
        events = []
        for key in self.last:
            if not key.startswith(prefix):
                continue
            entry = self.entries.get(key)
            if entry is None:
                events.append(Event(EventType.DELETE, key, None, self.revision))
            else:
                events.append(Event(EventType.PUT, key, entry[0], self.revision))
        return events

    def removal(self, prefix: str) -> list[Event]:
        """Events for the whole object being deleted (by hand): every key goes."""
        return [
            Event(EventType.DELETE, k, None, self.revision)
            for k in sorted(self.entries)
            if k.startswith(prefix)
        ]


def decode(obj: Mapping[str, Any] | None) -> StateObject:
    """A ConfigMap (or None for a missing one) as a StateObject."""
    if obj is None:
        return StateObject()
    data = obj.get("data") or {}
    raw: dict[str, list[Any]] = json.loads(data.get("entries") or "{}")
    entries = {k: (base64.b64decode(v[0]), v[1], v[2]) for k, v in raw.items()}
    revision = int(obj.get("metadata", {}).get("resourceVersion") or 0)
    return StateObject(revision, entries, tuple(json.loads(data.get("last") or "[]")))


def applied(state: StateObject, writes: Sequence[Write]) -> StateObject | None:
    """The next version after `writes` (conditions already checked), or None if nothing
    changes (only deletes of absent keys). Revisions of the old version are filled in."""
    entries: dict[str, Entry] = {
        k: (v, mod or state.revision, create or state.revision)
        for k, (v, mod, create) in state.entries.items()
    }
    changed: list[str] = []
    for write in writes:
        if isinstance(write, Put):
            old = entries.get(write.key)
            entries[write.key] = (write.value, None, old[2] if old is not None else None)
            changed.append(write.key)
        elif isinstance(write, Delete) and entries.pop(write.key, None) is not None:
            changed.append(write.key)
    if not changed:
        return None
    return StateObject(state.revision, entries, tuple(changed))


def encode(state: StateObject, name: str, namespace: str) -> dict[str, Any]:
    """The ConfigMap for `state`; carries `state.revision` as the update's precondition."""
    entries = {
        k: [base64.b64encode(v).decode(), mod, create]
        for k, (v, mod, create) in sorted(state.entries.items())
    }
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/part-of": "egressgw"},
    }
    if state.revision:
        meta["resourceVersion"] = str(state.revision)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {
            "entries": json.dumps(entries, separators=(",", ":")),
            "last": json.dumps(list(state.last)),
        },
    }
