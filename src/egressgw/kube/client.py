"""A thin typed client of the Kubernetes REST API, on kr8s's connection handling.

kr8s (`kr8s.asyncio.api()`) finds the cluster and its credentials (kubeconfig with exec
plugins such as `aws eks get-token` or `kubelogin`, in-cluster service accounts, token
refresh on 401) and owns the httpx session. Everything the store and the controller need to
be exact about is done here with `Api.call_api`, one request per call: list with the
collection's resourceVersion, watch from a resourceVersion with bookmarks, replace with a
resourceVersion precondition, merge patches, status subresources, delete with preconditions.
HTTP failures become `ApiError` subclasses (`NotFoundError`, `ConflictError` for 409,
`GoneError` for 410); a server that cannot be reached raises `Unreachable`. This module
holds no cache and no retry policy; callers decide.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import kr8s
import kr8s.asyncio

from egressgw.kube.api import ApiResource

Obj = dict[str, Any]
WATCH_TIMEOUT = 290  # seconds a server keeps one watch open; we reconnect after it
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFoundError(ApiError):
    """404: the object (or the whole resource type) does not exist."""


class ConflictError(ApiError):
    """409: the object already exists, or its resourceVersion is not the one we gave."""


class GoneError(ApiError):
    """410: the resourceVersion we asked for is older than the server's history."""


class Unreachable(Exception):
    """No answer from the API server (connection refused, reset, timed out)."""


_ERRORS: Mapping[int, type[ApiError]] = {404: NotFoundError, 409: ConflictError, 410: GoneError}


def api_error(status: int, body: Any) -> ApiError:
    """The error for an HTTP status and its `Status` body (which may be anything)."""
    reason = message = ""
    if isinstance(body, Mapping):
        reason, message = str(body.get("reason", "")), str(body.get("message", ""))
    return _ERRORS.get(status, ApiError)(status, reason or str(status), message)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One line of a watch stream: ADDED, MODIFIED, DELETED or BOOKMARK."""

    type: str
    object: Obj

    @property
    def resource_version(self) -> str:
        return str(self.object.get("metadata", {}).get("resourceVersion", ""))


def _split(path: str) -> tuple[str, str]:
    # kr8s joins base and url with "/"; giving it the whole path as base would add a slash.
    base, _, last = path.rpartition("/")
    return base, last


def _query(**params: str | int | None) -> dict[str, str]:
    return {k: str(v) for k, v in params.items() if v is not None and v != ""}


class KubeClient:
    """Typed calls on one kr8s `Api`; every method is one HTTP request (watch: one stream)."""

    def __init__(self, api: kr8s.asyncio.Api, *, watch_timeout: int = WATCH_TIMEOUT) -> None:
        self.api = api
        self.watch_timeout = watch_timeout

    @classmethod
    async def connect(
        cls, *, url: str | None = None, kubeconfig: str | None = None, context: str | None = None
    ) -> KubeClient:
        """A client for the cluster of `kubeconfig` (default: $KUBECONFIG, then in-cluster)."""
        try:
            api = await kr8s.asyncio.api(url=url, kubeconfig=kubeconfig, context=context)
        except httpx.TransportError as err:
            raise Unreachable(str(err)) from err
        return cls(api)

    async def get(self, res: ApiResource, namespace: str | None, name: str) -> Obj:
        return await self._json("GET", res.path(namespace, name))

    async def list(
        self,
        res: ApiResource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        exact: bool = False,
    ) -> tuple[list[Obj], str]:
        """The objects and the collection's resourceVersion; `exact` reads at that version."""
        params = _query(
            labelSelector=label_selector,
            fieldSelector=field_selector,
            resourceVersion=resource_version,
            resourceVersionMatch="Exact" if exact and resource_version else None,
        )
        body = await self._json("GET", res.path(namespace), params=params)
        version = str(body.get("metadata", {}).get("resourceVersion", ""))
        return list(body.get("items") or []), version

    async def watch(
        self,
        res: ApiResource,
        namespace: str | None = None,
        *,
        resource_version: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Changes after `resource_version`, bookmarks included, until the server ends the
        stream (about `watch_timeout` seconds). Raises GoneError if that version is too old."""
        params = _query(
            watch="true",
            resourceVersion=resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=self.watch_timeout,
            labelSelector=label_selector,
            fieldSelector=field_selector,
        )
        # The read timeout outlives the server-side timeout, so a quiet watch is not cut.
        timeout = httpx.Timeout(10.0, read=self.watch_timeout + 30.0)
        base, url = _split(res.path(namespace))
        async with self._call("GET", base, url, stream=True, params=params, timeout=timeout) as resp:
            async for line in resp.aiter_lines():
                if line.strip():
                    yield _event(json.loads(line))

    async def create(self, res: ApiResource, obj: Mapping[str, Any]) -> Obj:
        namespace = obj.get("metadata", {}).get("namespace")
        return await self._json("POST", res.path(namespace), json=dict(obj))

    async def replace(
        self, res: ApiResource, obj: Mapping[str, Any], *, subresource: str | None = None
    ) -> Obj:
        """PUT the whole object; a `metadata.resourceVersion` in it is a precondition."""
        meta = obj.get("metadata", {})
        path = res.path(meta.get("namespace"), meta["name"], subresource)
        return await self._json("PUT", path, json=dict(obj))

    async def merge_patch(
        self,
        res: ApiResource,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> Obj:
        """A JSON merge patch (RFC 7386); `metadata.resourceVersion` in it is a precondition."""
        headers = {"Content-Type": MERGE_PATCH}
        path = res.path(namespace, name, subresource)
        return await self._json("PATCH", path, content=json.dumps(patch), headers=headers)

    async def delete(
        self, res: ApiResource, namespace: str | None, name: str, *, resource_version: str | None = None
    ) -> Obj:
        """Delete one object; with `resource_version`, only if it is still that version.
        Returns the server's answer: the object as deleted (or a Status)."""
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if resource_version is not None:
            body["preconditions"] = {"resourceVersion": resource_version}
        return await self._json("DELETE", res.path(namespace, name), json=body)

    async def close(self) -> None:
        session = self.api._session
        if session is not None:
            await session.aclose()

    # -- internals ------------------------------------------------------------------------

    async def _json(self, method: str, path: str, **kwargs: Any) -> Obj:
        base, url = _split(path)
        async with self._call(method, base, url, **kwargs) as resp:
            body: Obj = resp.json()
            return body

    def _call(self, method: str, base: str, url: str, **kwargs: Any) -> _Call:
        return _Call(self.api, method, base, url, kwargs)


class _Call:
    """`api.call_api(...)` with kr8s's and httpx's errors turned into ours."""

    def __init__(
        self, api: kr8s.asyncio.Api, method: str, base: str, url: str, kwargs: dict[str, Any]
    ) -> None:
        self._cm = api.call_api(method, version="", base=base, url=url, **kwargs)

    async def __aenter__(self) -> httpx.Response:
        try:
            response: httpx.Response = await self._cm.__aenter__()
        except kr8s.ServerError as err:
            raise _translated(err) from None
        except (httpx.TransportError, kr8s.APITimeoutError) as err:
            raise Unreachable(str(err) or type(err).__name__) from err
        return response

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._cm.__aexit__(*exc)
        except (httpx.TransportError, kr8s.APITimeoutError) as err:
            raise Unreachable(str(err) or type(err).__name__) from err


def _translated(err: kr8s.ServerError) -> ApiError:
    response = err.response
    if response is None:
        return ApiError(0, "Unknown", str(err))
    try:
        body = response.json()
    except (ValueError, httpx.ResponseNotRead):
        body = None
    return api_error(response.status_code, body)


def _event(line: Mapping[str, Any]) -> WatchEvent:
    kind = str(line.get("type", ""))
    obj = line.get("object") or {}
    if kind == "ERROR":
        raise api_error(int(obj.get("code", 0) or 0), obj)
    return WatchEvent(kind, dict(obj))
