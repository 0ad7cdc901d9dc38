"""The one wiring of the resource model into the store: JSON in Kubernetes layout.

`resource_store(store)` is how every process (controller, agent, lab, CLI) reads and writes
resources; the store's mod revision is each object's `metadata.resourceVersion`.
"""

from __future__ import annotations

import json

from egressgw.model import parsing
from egressgw.model.meta import Resource
from egressgw.store.base import Store
from egressgw.store.resources import ResKey, ResourceStore


def encode(res: Resource) -> bytes:
    """A resource as stored: sorted JSON, no resourceVersion (the store holds that)."""
    return json.dumps(parsing.to_dict(res), sort_keys=True, separators=(",", ":")).encode()


def decode(raw: bytes) -> Resource:
    """A stored resource back (raises ManifestError on a corrupt value)."""
    return parsing.from_dict(json.loads(raw), source="<store>")


def key_of(res: Resource) -> ResKey:
    """The store key of a resource."""
    k = res.key
    return (k.kind, k.namespace, k.name)


def _with_version(res: Resource, version: str | None) -> Resource:
    meta = res.metadata.model_copy(update={"resource_version": version})
    return res.model_copy(update={"metadata": meta})


def resource_store(store: Store) -> ResourceStore[Resource]:
    """Typed resource access over `store`."""
    return ResourceStore(
        store,
        encode=encode,
        decode=decode,
        key_of=key_of,
        with_version=_with_version,
        version_of=lambda r: r.metadata.resource_version,
    )
