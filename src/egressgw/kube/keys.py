"""How store keys and values map to Kubernetes objects, for `KubeStore`.

Pure. A resource key `/egressgw/resources/<Kind>/<namespace or _cluster>/<name>` is the
object of that kind, name and namespace in the resource the `ApiMap` gives; its value is the
object's JSON, sorted, without `resourceVersion` (the store's mod_revision) and
`managedFields` (server bookkeeping), with the apiVersion the model gives the kind (Calico's
CRDs store `projectcalico.org/v3` objects as `crd.projectcalico.org/v1`). A prefix maps to
the resources (and namespace) it can cover, plus the state object for non-resource keys.
This module must not do I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from egressgw.kube.api import MODEL_API_VERSIONS, ApiMap, ApiResource
from egressgw.store.base import Item
from egressgw.store.resources import (
    CLUSTER_SCOPE,
    RESOURCE_PREFIX,
    parse_resource_path,
    resource_path,
)

Obj = dict[str, Any]


@dataclass(frozen=True)
class Source:
    """One thing to list and watch: a resource (optionally one namespace) or the state."""

    res: ApiResource | None  # None = the state object
    namespace: str | None = None


def sources(prefix: str, apis: ApiMap) -> list[Source]:
    """Everything whose keys may start with `prefix` (the caller filters keys exactly)."""
    found: list[Source] = []
    if RESOURCE_PREFIX.startswith(prefix) or prefix.startswith(RESOURCE_PREFIX):
        rest = prefix.removeprefix(RESOURCE_PREFIX) if prefix.startswith(RESOURCE_PREFIX) else ""
        kind, slash, tail = rest.partition("/")
        scope = tail.split("/")[0] if "/" in tail else None
        for name in apis.kinds:
            if (slash and name == kind) or (not slash and name.startswith(kind)):
                res = apis[name]
                namespace = scope if res.namespaced and scope != CLUSTER_SCOPE else None
                found.append(Source(res, namespace))
    if not prefix.startswith(RESOURCE_PREFIX):
        found.append(Source(None))
    return found


def locate(key: str, apis: ApiMap) -> tuple[ApiResource, str | None, str]:
    """The resource, namespace and name a resource key names."""
    kind, namespace, name = parse_resource_path(key)
    res = apis[kind]
    if res.namespaced == (namespace is None):
        raise ValueError(f"{key}: {kind} is {'' if res.namespaced else 'not '}namespaced")
    return res, namespace, name


def key_of(res: ApiResource, obj: Obj) -> str:
    meta = obj.get("metadata", {})
    namespace = meta.get("namespace") if res.namespaced else None
    return resource_path((res.kind, namespace, meta["name"]))


def item_of(key: str, res: ApiResource, obj: Obj) -> Item:
    """The store item of an object as the API server returned it."""
    revision = int(obj.get("metadata", {}).get("resourceVersion") or 0)
    meta = {
        k: v for k, v in obj.get("metadata", {}).items() if k not in ("resourceVersion", "managedFields")
    }
    clean = {**obj, "apiVersion": MODEL_API_VERSIONS.get(res.kind, res.api_version),
             "kind": res.kind, "metadata": meta}
    value = json.dumps(clean, sort_keys=True, separators=(",", ":")).encode()
    return Item(key, value, revision, 0)  # Kubernetes keeps no creation revision


def object_of(res: ApiResource, namespace: str | None, name: str, value: bytes) -> Obj:
    """The object to send for a stored value; the key decides name and namespace."""
    obj = json.loads(value)
    if not isinstance(obj, dict):
        raise ValueError(f"{res.kind} {name}: a stored object must be a JSON object")
    meta = {**obj.get("metadata", {}), "name": name}
    meta.pop("resourceVersion", None)
    if namespace is not None:
        meta["namespace"] = namespace
    return {**obj, "apiVersion": res.api_version, "kind": res.kind, "metadata": meta}
