"""`ApiServer`: a stateful HTTP emulator of the Kubernetes API, built on kmock.

kmock's own `KubernetesEmulator` stores objects but keeps no resourceVersions, so it cannot
show what the egressgw backend depends on. This subclass of kmock's `KubernetesScaffold`
(which gives the HTTP server, URL parsing, discovery, `Status` errors and kmock's DSL for
injecting faults) keeps etcd-like state: one global revision that every change bumps, the
history of changes (until `compact()`), and per object `resourceVersion`, `uid`,
`generation`, `creationTimestamp`. It implements:

- GET one, LIST (labelSelector `k=v`/`k`, fieldSelector `metadata.name=`/`metadata.namespace=`,
  `resourceVersion` with `resourceVersionMatch=Exact` read from history, 410 when compacted);
- WATCH from a resourceVersion (history replayed, `ERROR` 410 `Expired` when compacted, or an
  HTTP 410 with `gone_as_http`), `allowWatchBookmarks` (a BOOKMARK every `bookmark_interval`
  seconds), `timeoutSeconds`;
- POST (409 AlreadyExists), PUT and JSON merge PATCH with a resourceVersion precondition
  (409 Conflict), DELETE with `preconditions.resourceVersion`, no-op writes that change
  nothing and bump nothing;
- the status subresource: writes to the object ignore `status`, writes to `/status` change
  only `status`; `generation` counts changes outside metadata and status;
- cluster-scoped objects lose a `metadata.namespace`, as on a real server;
- POSTing a CustomResourceDefinition registers its resource (scope, status subresource),
  and from then on every write of that resource is defaulted and validated against the
  CRD's schema and CEL rules (tests/unit/kube/apicheck.py); a refusal is 422 Invalid.

It is not an API server: no admission, no defaulting, no garbage collection, no
strategic merge patch. List items of built-in kinds carry no kind/apiVersion, as real ones.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import attrs
import kmock
from kmock._internal import parsing

from tests.unit.kube.apicheck import check, defaulted

_NAMESPACES = re.compile(r"/api/v1/namespaces(?:/([^/]+))?(?:/(status|finalize))?/?")
_parse_path = parsing.parse_path


def _parse_path_with_namespaces(path: str) -> parsing.ParsedPath:
    """kmock 0.8 reads `/api/v1/namespaces[/NAME]` as a namespace prefix with no resource
    (and fails on the bare collection); read it as the `namespaces` resource itself."""
    found = _NAMESPACES.fullmatch(path)
    if found is None:
        return _parse_path(path)
    return parsing.ParsedPath("", "v1", "namespaces", None, found.group(1), found.group(2))


parsing.parse_path = _parse_path_with_namespaces

Obj = dict[str, Any]
Key = tuple[str, str, str | None, str]  # group, plural, namespace, name
CREATED = "2026-01-01T00:00:00Z"


@dataclass(frozen=True)
class Type:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    status: bool = False
    builtin: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


BUILTINS = (
    Type("", "v1", "namespaces", "Namespace", False, True),
    Type("", "v1", "pods", "Pod", True, True),
    Type("", "v1", "nodes", "Node", False, True),
    Type("", "v1", "configmaps", "ConfigMap", True),
    Type("", "v1", "secrets", "Secret", True),
    Type("", "v1", "services", "Service", True, True),
    Type("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
         "ValidatingWebhookConfiguration", False),
    Type("", "v1", "events", "Event", True),
    Type("apps", "v1", "deployments", "Deployment", True, True),
    Type("coordination.k8s.io", "v1", "leases", "Lease", True),
    Type("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False, True),
)


def _error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message, details={"x": 1})


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _selects(obj: Obj, labels: str | None, fields: str | None) -> bool:
    meta = obj.get("metadata", {})
    have = meta.get("labels") or {}
    for term in filter(None, (labels or "").split(",")):
        key, eq, value = term.partition("=")
        if key.endswith("!"):
            if have.get(key[:-1]) == value:
                return False
        elif (eq and have.get(key) != value) or (not eq and key not in have):
            return False
    for term in filter(None, (fields or "").split(",")):
        key, _, value = term.partition("=")
        if meta.get(key.removeprefix("metadata.")) != value:
            return False
    return True


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesScaffold):
    """The emulator; register it as a kmock handler and point a client at its URL."""

    bookmark_interval: float = 0.2
    gone_as_http: bool = False  # answer a too-old watch with HTTP 410 instead of an ERROR event

    _types: dict[tuple[str, str], Type] = attrs.field(factory=dict, init=False)
    _crds: dict[tuple[str, str], Obj] = attrs.field(factory=dict, init=False)
    _objects: dict[Key, Obj] = attrs.field(factory=dict, init=False)
    _history: list[tuple[int, str, Key, Obj]] = attrs.field(factory=list, init=False)
    revision: int = attrs.field(default=100, init=False)
    compacted: int = attrs.field(default=0, init=False)
    _changed: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for t in BUILTINS:
            self.register(t)
        # kr8s asks for "/version/" with a slash.
        self[re.compile(r"/version/?")] << {"major": "1", "minor": "33", "gitVersion": "v1.33.1"}
        self.fallback[self._is_resource_request] << self._serve

    # -- test-side helpers ----------------------------------------------------------------

    def register(self, t: Type) -> None:
        self._types[(t.group, t.plural)] = t
        subresources = {"status"} if t.status else set()
        info = kmock.ResourceInfo(namespaced=t.namespaced, kind=t.kind, subresources=subresources)
        self.resources[kmock.resource(t.group, t.version, t.plural)] = info

    def compact(self, revision: int | None = None) -> None:
        """Forget history up to `revision` (default: now); older watches then get 410."""
        self.compacted = self.revision if revision is None else revision

    def stored(self, group: str, plural: str, namespace: str | None = None) -> dict[str, Obj]:
        """Current objects of one resource (one namespace, if given) by name, for assertions."""
        return {
            key[3]: copy.deepcopy(obj)
            for key, obj in self._objects.items()
            if key[:2] == (group, plural) and namespace in (None, key[2])
        }

    def resource_of(self, api_version: str, kind: str) -> Type | None:
        """The resource serving `kind` in `api_version`, if the emulator holds that kind (a
        custom kind once its CRD has been created); None for kinds it does not emulate."""
        found = (t for t in self._types.values() if (t.api_version, t.kind) == (api_version, kind))
        return next(found, None)

    def seed(self, group: str, plural: str, obj: Obj) -> Obj:
        """Create an object directly, as another client would."""
        t = self._types[(group, plural)]
        namespace = obj.get("metadata", {}).get("namespace") if t.namespaced else None
        return self._create(t, namespace, obj)

    # -- dispatch ---------------------------------------------------------------------------

    def _is_resource_request(self, request: kmock.Request) -> bool:
        return request.resource is not None and request.resource.plural is not None

    async def _serve(self, request: kmock.Request) -> Any:
        assert request.resource is not None
        t = self._types.get((request.resource.group or "", request.resource.plural or ""))
        if t is None:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        namespace = request.namespace if t.namespaced else None
        method = request.method.value
        if method == "GET" and request.params.get("watch") in ("true", "1"):
            return self._watch(t, namespace, request.params)
        if method == "GET" and request.name is None:
            return self._list(t, namespace, request.params)
        if method == "POST" and request.name is None:
            return self._create(t, namespace, request.data or {})
        if request.name is None:
            raise _error(405, "MethodNotAllowed", f"{method} on a collection")
        key = (t.group, t.plural, namespace, request.name)
        if method == "GET":
            return self._view(t, self._current(key))
        if method == "PUT":
            return self._update(t, key, request.data or {}, request.subresource, replace=True)
        if method == "PATCH":
            return self._update(t, key, request.data or {}, request.subresource, replace=False)
        if method == "DELETE":
            return self._delete(t, key, request.data or {})
        raise _error(405, "MethodNotAllowed", method)

    # -- reads --------------------------------------------------------------------------------

    def _current(self, key: Key) -> Obj:
        obj = self._objects.get(key)
        if obj is None:
            raise _error(404, "NotFound", f'{key[1]} "{key[3]}" not found')
        return obj

    def _view(self, t: Type, obj: Obj) -> Obj:
        return {"apiVersion": t.api_version, "kind": t.kind, **copy.deepcopy(obj)}

    def _list(self, t: Type, namespace: str | None, params: Mapping[str, str]) -> Obj:
        revision, objects = self.revision, self._objects
        wanted = params.get("resourceVersion")
        if params.get("resourceVersionMatch") == "Exact" and wanted:
            revision = int(wanted)
            objects = self._state_at(revision)
        items = [
            obj if not t.builtin else {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
            for key, obj in sorted(objects.items(), key=lambda kv: str(kv[0]))
            if key[:2] == (t.group, t.plural) and namespace in (None, key[2])
            if _selects(obj, params.get("labelSelector"), params.get("fieldSelector"))
            for obj in [self._view(t, obj)]
        ]
        return {
            "apiVersion": t.api_version,
            "kind": f"{t.kind}List",
            "metadata": {"resourceVersion": str(revision)},
            "items": items,
        }

    def _state_at(self, revision: int) -> dict[Key, Obj]:
        """The objects as they were at `revision`, rebuilt backwards from the history."""
        if revision < self.compacted or revision > self.revision:
            raise _error(410, "Expired", f"too old resource version: {revision} ({self.compacted})")
        state = dict(self._objects)
        for rev, _kind, key, _obj in reversed(self._history):
            if rev <= revision:
                break
            previous = self._before(key, rev)
            if previous is None:
                state.pop(key, None)
            else:
                state[key] = previous
        return state

    def _before(self, key: Key, revision: int) -> Obj | None:
        for rev, kind, k, obj in reversed(self._history):
            if k == key and rev < revision:
                return None if kind == "DELETED" else obj
        return None

    async def _watch(
        self, t: Type, namespace: str | None, params: Mapping[str, str]
    ) -> AsyncIterator[Any]:
        start = params.get("resourceVersion", "")
        labels, fields = params.get("labelSelector"), params.get("fieldSelector")
        if start not in ("", "0") and int(start) < self.compacted and self.gone_as_http:
            raise _error(410, "Expired", f"too old resource version: {start} ({self.compacted})")
        yield b""  # send the headers now, as a real server does
        deadline = asyncio.get_running_loop().time() + float(params.get("timeoutSeconds") or 1e9)
        bookmarks = params.get("allowWatchBookmarks") == "true"

        def mine(key: Key, obj: Obj) -> bool:
            in_scope = key[:2] == (t.group, t.plural) and namespace in (None, key[2])
            return in_scope and _selects(obj, labels, fields)

        if start in ("", "0"):
            cursor = self.revision
            for key, obj in sorted(self._objects.items(), key=lambda kv: str(kv[0])):
                if mine(key, obj):
                    yield {"type": "ADDED", "object": self._view(t, obj)}
        else:
            cursor = int(start)
            if cursor < self.compacted:
                yield {"type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                    "reason": "Expired",
                    "message": f"too old resource version: {cursor} ({self.compacted})",
                }}
                return
        while (now := asyncio.get_running_loop().time()) < deadline:
            for rev, kind, key, obj in self._history:
                if rev > cursor and mine(key, obj):
                    yield {"type": kind, "object": self._view(t, obj)}
            cursor = self.revision
            self._changed.clear()
            wait = min(deadline - now, self.bookmark_interval if bookmarks else 1e9)
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait()
            except TimeoutError:
                if bookmarks:
                    meta = {"resourceVersion": str(self.revision)}
                    yield {"type": "BOOKMARK", "object": {
                        "apiVersion": t.api_version, "kind": t.kind, "metadata": meta,
                    }}

    # -- writes -------------------------------------------------------------------------------

    def _record(self, kind: str, key: Key, obj: Obj | None, t: Type) -> Obj:
        self.revision += 1
        stored = copy.deepcopy(obj if obj is not None else self._objects[key])
        stored["metadata"]["resourceVersion"] = str(self.revision)
        if kind == "DELETED":
            self._objects.pop(key)
        else:
            self._objects[key] = stored
        self._history.append((self.revision, kind, key, stored))
        self._changed.set()
        if t.kind == "CustomResourceDefinition" and kind == "ADDED":
            self._register_crd(stored)
        return self._view(t, stored)

    def _create(self, t: Type, namespace: str | None, body: Obj) -> Obj:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if t.namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)  # a real server drops it too
        key = (t.group, t.plural, meta.get("namespace"), meta["name"])
        if key in self._objects:
            raise _error(409, "AlreadyExists", f'{t.plural} "{meta["name"]}" already exists')
        if t.status:
            obj.pop("status", None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=CREATED, generation=1)
        meta.pop("resourceVersion", None)
        return self._record("ADDED", key, self._admitted(t, obj), t)

    def _update(self, t: Type, key: Key, body: Obj, subresource: str | None, replace: bool) -> Obj:
        old = self._current(key)
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise _error(409, "Conflict", f'Operation cannot be fulfilled on {t.plural} "{key[3]}":'
                         " the object has been modified; please apply your changes to the"
                         " latest version and try again")
        new = copy.deepcopy(body) if replace else merge_patch(old, body)
        new = self._admitted(t, self._merged(t, old, new, subresource))
        if _comparable(new) == _comparable(old):
            return self._view(t, old)
        if _spec_part(new, t) != _spec_part(old, t):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        return self._record("MODIFIED", key, new, t)

    def _merged(self, t: Type, old: Obj, new: Obj, subresource: str | None) -> Obj:
        if subresource == "status":
            result = copy.deepcopy(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
            return result
        if subresource is not None:
            raise _error(404, "NotFound", f"no subresource {subresource}")
        meta = new.setdefault("metadata", {})
        for field in ("uid", "creationTimestamp", "generation", "name", "namespace"):
            if field in old["metadata"]:
                meta[field] = old["metadata"][field]
        if t.status:
            new.pop("status", None)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
        return new

    def _delete(self, t: Type, key: Key, body: Obj) -> Obj:
        old = self._current(key)
        wanted = (body.get("preconditions") or {}).get("resourceVersion")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise _error(409, "Conflict", f'Operation cannot be fulfilled on {t.plural} "{key[3]}":'
                         " Precondition failed: ResourceVersion")
        return self._record("DELETED", key, None, t)

    def _admitted(self, t: Type, obj: Obj) -> Obj:
        """`obj` with its CRD's defaults, or 422 Invalid if the CRD refuses it."""
        crd = self._crds.get((t.group, t.plural))
        if crd is None:
            return obj
        errors = check(crd, obj)
        if errors:
            detail = "; ".join(f"{path}: {message}" for path, message in errors)
            raise _error(422, "Invalid", f'{t.kind} "{obj["metadata"]["name"]}" is invalid: {detail}')
        filled: Obj = defaulted(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], obj)
        return filled

    def _register_crd(self, crd: Obj) -> None:
        spec = crd["spec"]
        self._crds[(spec["group"], spec["names"]["plural"])] = crd
        for version in spec["versions"]:
            if version.get("served", True):
                self.register(Type(
                    spec["group"], version["name"], spec["names"]["plural"],
                    spec["names"]["kind"], spec["scope"] == "Namespaced",
                    "status" in (version.get("subresources") or {}), builtin=False,
                ))


def _comparable(obj: Obj) -> str:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}
    return json.dumps({**obj, "metadata": meta}, sort_keys=True)


def _spec_part(obj: Obj, t: Type) -> str:
    return json.dumps({k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}, sort_keys=True)
