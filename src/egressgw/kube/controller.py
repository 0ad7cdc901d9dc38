"""The Kubernetes controller: one Deployment per EgressGateway, and its status.

It follows EgressGateways and IPPools through the store (`KubeStore` via `Informer`) and
the Deployments it owns through the API (label `app.kubernetes.io/managed-by=egressgw`).
Nothing is reconciled before all three have been listed; then every change (a gateway's
replicas or template, a pool appearing or going, a Deployment's ready count) triggers a
pass over all gateways, which is level-triggered and idempotent:

- a gateway whose pool references do not resolve keeps its Deployment as it is and is
  marked Degraded (as the reference operator does);
- otherwise its Deployment is created, replaced when the rendering's hash changed,
  deleted and created again when the selector changed (it is immutable), and a
  hand-written Deployment of the same name is taken over;
- status (`state`, conditions Available/Ready/Degraded) is patched only when it changed;
- Deployments of gateways that no longer exist are deleted.

One gateway's failure does not stop the pass; failed passes are retried. Run it under
`leader.LeaderElector` when more than one replica runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from egressgw.kube import render
from egressgw.kube.api import DEPLOYMENT, EGRESS_GATEWAY
from egressgw.kube.client import (
    ApiError,
    ConflictError,
    GoneError,
    KubeClient,
    NotFoundError,
    Unreachable,
)
from egressgw.model import EgressGateway, IPPool, Resource
from egressgw.store.base import Store, StoreError
from egressgw.store.codec import resource_store
from egressgw.store.resources import Informer, ResKey

log = logging.getLogger(__name__)
Obj = dict[str, Any]
DeploymentKey = tuple[str, str]  # namespace, name
OWNED = f"{render.MANAGED_BY[0]}={render.MANAGED_BY[1]},{render.GATEWAY_LABEL}"


def utc_now() -> datetime:
    return datetime.now(UTC)


class Controller:
    """Reconciles EgressGateways into Deployments; `run()` until cancelled."""

    def __init__(
        self,
        client: KubeClient,
        store: Store,
        config: render.GatewayConfig,
        *,
        clock: Callable[[], datetime] = utc_now,
        retry_delay: float = 2.0,
        resync: float = 300.0,
    ) -> None:
        self.client = client
        self.config = config
        self._resources = resource_store(store)
        self._clock = clock
        self._retry_delay = retry_delay
        self._resync = resync
        self._gateways: Mapping[ResKey, Resource] = {}
        self._pools: Mapping[ResKey, Resource] = {}
        self._deployments: dict[DeploymentKey, Obj] = {}
        self._listed = {name: asyncio.Event() for name in ("gateways", "pools", "deployments")}
        self._dirty = asyncio.Event()
        self.passes = 0  # completed reconcile passes (for tests and metrics)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._informer("EgressGateway", "gateways").run())
            tasks.create_task(self._informer("IPPool", "pools").run())
            tasks.create_task(self._follow_deployments())
            tasks.create_task(self._reconcile_loop())

    def _informer(self, kind: str, name: str) -> Informer[Resource]:
        async def changed(state: Mapping[ResKey, Resource], revision: int) -> None:
            setattr(self, f"_{name}", state)
            self._listed[name].set()
            self._dirty.set()

        return Informer(self._resources, changed, kind=kind, retry_delay=self._retry_delay)

    async def _reconcile_loop(self) -> None:
        for listed in self._listed.values():
            await listed.wait()  # nothing before the initial sync
        while True:
            # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._resync):
                    await self._dirty.wait()
            self._dirty.clear()
            if not await self.reconcile():
                await asyncio.sleep(self._retry_delay)
                self._dirty.set()

    async def reconcile(self) -> bool:
        """One pass over every gateway; True if nothing failed."""
        pools = [p for p in self._pools.values() if isinstance(p, IPPool)]
        gateways = sorted(
            (g for g in self._gateways.values() if isinstance(g, EgressGateway)),
            key=lambda g: (g.metadata.namespace or "", g.metadata.name),
        )
        ok = True
        for gw in gateways:
            try:
                await self._reconcile_gateway(gw, pools)
            except (ApiError, Unreachable, StoreError) as err:
                log.warning("EgressGateway %s/%s: %s", gw.metadata.namespace, gw.metadata.name, err)
                ok = False
        wanted = {(g.metadata.namespace or "default", g.metadata.name) for g in gateways}
        ok = await self._remove_orphans(wanted) and ok
        self.passes += 1
        return ok

    async def _reconcile_gateway(self, gw: EgressGateway, pools: list[IPPool]) -> None:
        key = (gw.metadata.namespace or "default", gw.metadata.name)
        problems = render.problems(gw, pools)
        existing = self._deployments.get(key)
        if not problems:
            existing = await self._apply(key, render.deployment(gw, pools, self.config), existing)
        ready = int(((existing or {}).get("status") or {}).get("readyReplicas") or 0)
        new = render.conditions(problems, existing is not None, ready, gw.spec.replicas)
        now = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        status = render.status(gw, new, now)
        before = gw.status.model_dump(mode="json", by_alias=True, exclude_none=True) if gw.status else {}
        if status != before:
            await self.client.merge_patch(
                EGRESS_GATEWAY, key[0], key[1], {"status": status}, subresource="status"
            )

    async def _apply(self, key: DeploymentKey, desired: Obj, existing: Obj | None) -> Obj:
        if existing is None:
            try:
                existing = await self.client.create(DEPLOYMENT, desired)
                return self._remember(key, existing)
            except ConflictError:  # one we do not own yet (e.g. hand-written): take it over
                existing = await self.client.get(DEPLOYMENT, *key)
        if existing["spec"].get("selector") != desired["spec"]["selector"]:
            log.info("Deployment %s/%s: selector changed, recreating", *key)
            await self.client.delete(DEPLOYMENT, *key)
            return self._remember(key, await self.client.create(DEPLOYMENT, desired))
        have = (existing["metadata"].get("annotations") or {}).get(render.HASH_ANNOTATION)
        if have == desired["metadata"]["annotations"][render.HASH_ANNOTATION]:
            return existing
        body = {**desired, "metadata": {**desired["metadata"],
                                        "resourceVersion": existing["metadata"]["resourceVersion"]}}
        return self._remember(key, await self.client.replace(DEPLOYMENT, body))

    def _remember(self, key: DeploymentKey, obj: Obj) -> Obj:
        self._deployments[key] = obj
        return obj

    async def _remove_orphans(self, wanted: set[DeploymentKey]) -> bool:
        ok = True
        for key, obj in sorted(self._deployments.items()):
            owner = (key[0], (obj["metadata"].get("labels") or {}).get(render.GATEWAY_LABEL, ""))
            if owner in wanted:
                continue
            version = obj["metadata"].get("resourceVersion")
            try:
                await self.client.delete(DEPLOYMENT, *key, resource_version=version)
                self._deployments.pop(key, None)
            except NotFoundError:
                self._deployments.pop(key, None)
            except (ApiError, Unreachable) as err:
                log.warning("Deployment %s/%s: cannot delete: %s", *key, err)
                ok = False
        return ok

    # -- the Deployments we own -----------------------------------------------------------

    async def _follow_deployments(self) -> None:
        while True:
            try:
                await self._list_and_watch_deployments()
            except GoneError:
                log.info("Deployment watch expired; listing again")
            except (ApiError, Unreachable) as err:
                log.warning("Deployment watch failed (%s); retrying", err)
                await asyncio.sleep(self._retry_delay)

    async def _list_and_watch_deployments(self) -> None:
        items, version = await self.client.list(DEPLOYMENT, label_selector=OWNED)
        self._deployments = {_key(o): o for o in items}
        self._listed["deployments"].set()
        self._dirty.set()
        while True:  # each watch ends after the server's timeout; resume where it stopped
            watch = self.client.watch(DEPLOYMENT, resource_version=version, label_selector=OWNED)
            async with contextlib.aclosing(watch) as events:
                async for event in events:
                    version = event.resource_version or version
                    if event.type == "DELETED":
                        self._deployments.pop(_key(event.object), None)
                    elif event.type != "BOOKMARK":
                        self._deployments[_key(event.object)] = event.object
                    if event.type != "BOOKMARK":
                        self._dirty.set()


def _key(obj: Obj) -> DeploymentKey:
    meta = obj["metadata"]
    return meta.get("namespace", "default"), meta["name"]
