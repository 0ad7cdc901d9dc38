"""KubeStore on Kubernetes objects: what the emulator holds after each call, CAS through
resourceVersion, the status subresource, watches with bookmarks and 410 Gone, snapshots
that are consistent across resources, and typed reads through the resource layer."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio

from egressgw.kube import api
from egressgw.kube.client import KubeClient
from egressgw.kube.crds import crds
from egressgw.kube.store import KubeStore
from egressgw.manifests import read_resources
from egressgw.model import EgressGateway, EgressGatewayStatus, IPPool, Resource, ResourceKey
from egressgw.store.base import Compacted, Conflict, Event, EventType, Put, StoreError
from egressgw.store.codec import resource_store
from egressgw.store.resources import RESOURCE_PREFIX, Informer, ResKey, resource_path
from tests.unit.kube.emulator import ApiServer

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = {
    r.key: r for r in read_resources([ROOT / "examples" / "azure-hub-spoke"])
}
POOL = cast(IPPool, EXAMPLE[ResourceKey("IPPool", None, "tenant0-pool")])
GATEWAY = cast(EgressGateway, next(r for r in EXAMPLE.values() if r.kind == "EgressGateway"))
GW_KEY: ResKey = ("EgressGateway", GATEWAY.metadata.namespace, GATEWAY.metadata.name)
OPERATOR = "operator.tigera.io"
CALICO = "projectcalico.org"


@pytest_asyncio.fixture
async def store(client: KubeClient) -> AsyncIterator[KubeStore]:
    for crd in crds():
        await client.create(api.CRD, crd)
    kube = KubeStore(client, namespace="egressgw")
    yield kube
    await kube.close()


async def take(events: AsyncIterator[Event], n: int, timeout: float = 5.0) -> list[Event]:
    async def collect() -> list[Event]:
        return [await anext(events) for _ in range(n)]

    return await asyncio.wait_for(collect(), timeout)


def _watch_requests(apiserver: ApiServer, plural: str) -> list[dict[str, str]]:
    return [
        dict(r.params)
        for r in apiserver
        if r.params.get("watch") == "true" and r.resource is not None and r.resource.plural == plural
    ]


@pytest.mark.asyncio
async def test_resources_are_kubernetes_objects(store: KubeStore, apiserver: ApiServer) -> None:
    resources = resource_store(store)
    await resources.apply([POOL])
    held = apiserver.stored(CALICO, "ippools")[POOL.metadata.name]
    assert held["spec"]["cidr"] == "10.99.0.0/29"
    assert "namespace" not in held["metadata"]
    read = await resources.get(("IPPool", None, POOL.metadata.name))
    assert isinstance(read, IPPool) and read.spec == POOL.spec
    assert read.metadata.resource_version == held["metadata"]["resourceVersion"]
    assert read.metadata.uid == held["metadata"]["uid"]


@pytest.mark.asyncio
async def test_compare_and_swap_goes_through_resource_version(store: KubeStore, apiserver: ApiServer) -> None:
    key = resource_path(("IPPool", None, POOL.metadata.name))
    resources = resource_store(store)
    await resources.apply([POOL])
    first = await store.get(key)
    assert first is not None
    changed = await store.put(key, first.value.replace(b'"blockSize":31', b'"blockSize":30'),
                              expect=first.mod_revision)
    with pytest.raises(Conflict) as err:
        await store.put(key, first.value, expect=first.mod_revision)
    assert (err.value.expected, err.value.actual) == (first.mod_revision, changed)
    with pytest.raises(Conflict) as exists:
        await store.put(key, first.value, expect=0)
    assert exists.value.actual == changed
    assert apiserver.stored(CALICO, "ippools")[POOL.metadata.name]["spec"]["blockSize"] == 30
    with pytest.raises(Conflict):
        await store.delete(key, expect=first.mod_revision)
    await store.delete(key, expect=changed)
    assert apiserver.stored(CALICO, "ippools") == {}


@pytest.mark.asyncio
async def test_status_is_written_through_the_status_subresource(
    store: KubeStore, apiserver: ApiServer
) -> None:
    resources = resource_store(store)
    await resources.apply([GATEWAY])
    before = apiserver.stored(OPERATOR, "egressgateways", "tenant0-egw")["tenant0-egw"]

    def ready(gw: Resource) -> Resource:
        status = {"state": "Ready", "conditions": [{"type": "Available", "status": "True"}]}
        return gw.model_copy(update={"status": EgressGatewayStatus.model_validate(status)})

    updated = await resources.update(GW_KEY, ready)
    after = apiserver.stored(OPERATOR, "egressgateways", "tenant0-egw")["tenant0-egw"]
    assert after["status"]["state"] == "Ready"
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert updated.metadata.resource_version == after["metadata"]["resourceVersion"]
    status_writes = [r for r in apiserver if r.subresource == "status" and r.method.value == "PUT"]
    assert len(status_writes) == 1


@pytest.mark.asyncio
async def test_watch_of_one_kind_sees_changes_in_order(store: KubeStore, apiserver: ApiServer) -> None:
    start = (await store.list(RESOURCE_PREFIX + "EgressGateway/")).revision
    resources = resource_store(store)
    async with contextlib.aclosing(store.watch(RESOURCE_PREFIX + "EgressGateway/", start)) as events:
        await resources.apply([POOL, GATEWAY])
        await resources.delete([GW_KEY])
        got = await take(events, 2)
    assert [(e.type, e.key) for e in got] == [
        (EventType.PUT, resource_path(GW_KEY)),
        (EventType.DELETE, resource_path(GW_KEY)),
    ]
    assert got[0].mod_revision < got[1].mod_revision


@pytest.mark.asyncio
async def test_bookmarks_let_a_quiet_watch_resume_after_compaction(
    store: KubeStore, apiserver: ApiServer, client: KubeClient
) -> None:
    """The server ends each watch after timeoutSeconds; the store reconnects from the newest
    version it saw. Bookmarks move that version on while nothing of this kind changes, so
    the reconnect does not ask for history the server has compacted away."""
    short = KubeStore(KubeClient(client.api, watch_timeout=1), namespace="egressgw")
    prefix = RESOURCE_PREFIX + "EgressGateway/"
    start = (await short.list(prefix)).revision
    async with contextlib.aclosing(short.watch(prefix, start)) as events:
        waiting = asyncio.ensure_future(take(events, 1, timeout=8))
        for n in range(3):  # other writes move the cluster's revision on
            await short.put(f"/other/{n}", b"x")
        await asyncio.sleep(0.5)  # bookmarks carry the new revision to the quiet watch
        apiserver.compact()
        await asyncio.sleep(1.2)  # the server ends the stream; the store reconnects
        await resource_store(short).apply([GATEWAY])
        (event,) = await waiting
    assert event.key == resource_path(GW_KEY)
    resumed = [int(p["resourceVersion"]) for p in _watch_requests(apiserver, "egressgateways")]
    assert len(resumed) >= 2 and resumed[1] > start
    assert all(p["allowWatchBookmarks"] == "true" for p in _watch_requests(apiserver, "egressgateways"))


@pytest.mark.parametrize("as_http", [False, True], ids=["error-event", "http-410"])
@pytest.mark.asyncio
async def test_410_gone_raises_compacted(store: KubeStore, apiserver: ApiServer, as_http: bool) -> None:
    apiserver.gone_as_http = as_http
    start = (await store.list(RESOURCE_PREFIX + "IPPool/")).revision
    await resource_store(store).apply([POOL])
    apiserver.compact()
    with pytest.raises(Compacted) as err:
        await take(store.watch(RESOURCE_PREFIX + "IPPool/", start), 1)
    assert err.value.compact_revision == apiserver.revision


@pytest.mark.asyncio
async def test_a_snapshot_of_several_kinds_is_read_at_one_revision(
    store: KubeStore, apiserver: ApiServer
) -> None:
    resources = resource_store(store)
    await resources.apply([POOL])
    await resources.apply([GATEWAY])
    written: list[int] = []

    def another_writer() -> None:  # between our LISTs of different kinds, once
        if not written:
            cm = {"metadata": {"name": "meanwhile", "namespace": "default"}}
            written.append(int(apiserver.seed("", "configmaps", cm)["metadata"]["resourceVersion"]))

    apiserver["list v1/pods"] >> another_writer
    snap = await store.list(RESOURCE_PREFIX)
    assert snap.revision == written[0] == apiserver.revision
    assert {i.key for i in snap.items} == {
        resource_path(("IPPool", None, POOL.metadata.name)), resource_path(GW_KEY)
    }
    exact = [r.params for r in apiserver if r.params.get("resourceVersionMatch") == "Exact"]
    assert exact and all(p["resourceVersion"] == str(snap.revision) for p in exact)
    async with contextlib.aclosing(store.watch(RESOURCE_PREFIX, snap.revision)) as events:
        await resources.delete([("IPPool", None, POOL.metadata.name)])
        (event,) = await take(events, 1)  # nothing from before the snapshot is replayed
    assert (event.type, event.mod_revision) == (EventType.DELETE, snap.revision + 1)


@pytest.mark.asyncio
async def test_informer_gets_typed_resources(store: KubeStore, apiserver: ApiServer) -> None:
    seen: list[dict[ResKey, Resource]] = []

    async def on_change(state: Any, revision: int) -> None:
        seen.append(dict(state))

    informer = Informer(resource_store(store), on_change, kind="EgressGateway", delay=0.01)
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 5)
        body = resource_store(store)  # a typed write from "another client"
        await body.apply([GATEWAY])
        for _ in range(100):
            if seen and GW_KEY in seen[-1]:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    gw = seen[-1][GW_KEY]
    assert isinstance(gw, EgressGateway) and gw.spec.replicas == 2


@pytest.mark.asyncio
async def test_state_transactions_are_one_configmap_update(store: KubeStore, apiserver: ApiServer) -> None:
    rev = await store.commit([Put("/egressgw/state/ipam/10.99.0.0", b"pod/a"),
                              Put("/egressgw/state/ipam/10.99.0.1", b"pod/b")])
    (held,) = apiserver.stored("", "configmaps", "egressgw").values()
    assert held["metadata"]["name"] == "egressgw-state"
    assert held["metadata"]["resourceVersion"] == str(rev)
    with pytest.raises(Conflict):
        await store.put("/egressgw/state/ipam/10.99.0.0", b"pod/c", expect=0)


@pytest.mark.asyncio
async def test_beside_calico_reads_calicos_own_crds(client: KubeClient, apiserver: ApiServer) -> None:
    for crd in crds(api.ApiMap.beside_calico(), kinds=["IPPool"]):
        await client.create(api.CRD, crd)
    stored = {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
              "metadata": {"name": "tenant0-pool"},
              "spec": {"cidr": "10.99.0.0/29", "blockSize": 31, "nodeSelector": "!all()"}}
    apiserver.seed("crd.projectcalico.org", "ippools", stored)
    kube = KubeStore(client, namespace="egressgw", apis=api.ApiMap.beside_calico())
    pools, _ = await resource_store(kube).list_all("IPPool")
    assert [(p.api_version, p.metadata.name) for p in pools] == [("projectcalico.org/v3", "tenant0-pool")]


@pytest.mark.asyncio
async def test_the_api_server_refuses_what_the_crd_refuses(store: KubeStore, apiserver: ApiServer) -> None:
    bad = POOL.model_dump(mode="json", by_alias=True, exclude_none=True)
    bad["spec"]["blockSize"] = 19
    key = resource_path(("IPPool", None, "tenant0-pool"))
    with pytest.raises(StoreError, match=r"422 Invalid.*blockSize must be between 20 and 32"):
        await store.put(key, json.dumps(bad).encode())
    assert apiserver.stored(CALICO, "ippools") == {}
    plain = GATEWAY.model_dump(mode="json", by_alias=True, exclude_none=True)
    del plain["spec"]["logSeverity"], plain["spec"]["replicas"]
    await store.put(resource_path(GW_KEY), json.dumps(plain).encode())
    held = apiserver.stored(OPERATOR, "egressgateways", "tenant0-egw")["tenant0-egw"]
    assert (held["spec"]["logSeverity"], held["spec"]["replicas"]) == ("Info", 1)  # CRD defaults
