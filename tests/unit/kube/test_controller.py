"""The controller against the API emulator: the Deployments, CRD objects and status it
writes, as the emulator holds them after each change."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from egressgw.kube import api, render
from egressgw.kube.client import KubeClient
from egressgw.kube.controller import Controller
from egressgw.kube.crds import crds
from egressgw.kube.store import KubeStore
from tests.unit.kube.emulator import ApiServer

ROOT = Path(__file__).resolve().parents[3]
DOCS = [d for d in yaml.safe_load_all((ROOT / "examples/azure-hub-spoke/egw-tenants.yaml").read_text()) if d]
GATEWAY = next(d for d in DOCS if d["kind"] == "EgressGateway" and d["metadata"]["name"] == "tenant0-egw")
POOL = next(d for d in DOCS if d["kind"] == "IPPool" and d["metadata"]["name"] == "tenant0-pool")
NS = "tenant0-egw"
OPERATOR, CALICO = "operator.tigera.io", "projectcalico.org"
CONFIG = render.GatewayConfig(image="egressgw:test")


def at_noon() -> datetime:
    return datetime(2026, 1, 1, 12, tzinfo=UTC)


@pytest_asyncio.fixture
async def running(client: KubeClient, apiserver: ApiServer) -> AsyncIterator[Controller]:
    for crd in crds():
        await client.create(api.CRD, crd)
    store = KubeStore(client, namespace="egressgw")
    controller = Controller(client, store, CONFIG, clock=at_noon, retry_delay=0.05)
    task = asyncio.create_task(controller.run())
    yield controller
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await store.close()


async def until(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll until `check()` is truthy (the emulator's state, as another client sees it)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            result = check()
        except (KeyError, StopIteration, TypeError):
            result = None
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out; last result {result!r}")
        await asyncio.sleep(0.02)


def deployment(apiserver: ApiServer, name: str = "tenant0-egw") -> dict[str, Any]:
    return apiserver.stored("apps", "deployments", NS)[name]


def gateway(apiserver: ApiServer) -> dict[str, Any]:
    return apiserver.stored(OPERATOR, "egressgateways", NS)["tenant0-egw"]


def condition(apiserver: ApiServer, kind: str) -> dict[str, Any]:
    return next(c for c in gateway(apiserver)["status"]["conditions"] if c["type"] == kind)


@pytest.mark.asyncio
async def test_gateway_gets_a_deployment_and_status(running: Controller, apiserver: ApiServer) -> None:
    apiserver.seed(CALICO, "ippools", POOL)
    egw = apiserver.seed(OPERATOR, "egressgateways", GATEWAY)
    dep = await until(lambda: deployment(apiserver))
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"]["matchLabels"] == {"tenant": "tenant0-egw"}
    assert dep["metadata"]["ownerReferences"][0]["uid"] == egw["metadata"]["uid"]
    template = dep["spec"]["template"]
    assert json.loads(template["metadata"]["annotations"]["cni.projectcalico.org/ipv4pools"]) == ["tenant0-pool"]
    assert template["metadata"]["labels"]["k8s-app"] == "tenant0-egw"
    assert template["spec"]["containers"][0]["ports"][0]["name"] == "health"
    await until(lambda: gateway(apiserver)["status"]["state"] == "Ready")
    assert condition(apiserver, "Available")["status"] == "True"
    assert condition(apiserver, "Available")["reason"] == "AllObjectsAvailable"
    assert condition(apiserver, "Degraded")["status"] == "False"
    assert condition(apiserver, "Ready")["status"] == "False"  # no pod is ready yet
    assert condition(apiserver, "Ready")["lastTransitionTime"] == "2026-01-01T12:00:00Z"


@pytest.mark.asyncio
async def test_ready_replicas_turn_ready_true(
    running: Controller, apiserver: ApiServer, client: KubeClient
) -> None:
    apiserver.seed(CALICO, "ippools", POOL)
    apiserver.seed(OPERATOR, "egressgateways", GATEWAY)
    dep = await until(lambda: deployment(apiserver))
    await client.merge_patch(api.DEPLOYMENT, NS, "tenant0-egw", {"status": {"readyReplicas": 2}},
                             subresource="status")
    await until(lambda: condition(apiserver, "Ready")["status"] == "True")
    assert condition(apiserver, "Ready")["message"] == "2/2 replicas ready"
    assert deployment(apiserver)["spec"] == dep["spec"]


@pytest.mark.asyncio
async def test_replica_changes_reach_the_deployment(
    running: Controller, apiserver: ApiServer, client: KubeClient
) -> None:
    apiserver.seed(CALICO, "ippools", POOL)
    apiserver.seed(OPERATOR, "egressgateways", GATEWAY)
    await until(lambda: deployment(apiserver))
    await client.merge_patch(api.EGRESS_GATEWAY, NS, "tenant0-egw", {"spec": {"replicas": 3}})
    await until(lambda: deployment(apiserver)["spec"]["replicas"] == 3)
    await until(lambda: condition(apiserver, "Ready")["message"] == "0/3 replicas ready")


@pytest.mark.asyncio
async def test_missing_pool_degrades_until_the_pool_appears(
    running: Controller, apiserver: ApiServer
) -> None:
    apiserver.seed(OPERATOR, "egressgateways", GATEWAY)
    await until(lambda: gateway(apiserver)["status"]["state"] == "Degraded")
    degraded = condition(apiserver, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "Error_reconciling_Egress_Gateway")
    assert "IPPool 'tenant0-pool' not found" in degraded["message"]
    assert apiserver.stored("apps", "deployments") == {}
    apiserver.seed(CALICO, "ippools", POOL)
    await until(lambda: deployment(apiserver))
    await until(lambda: condition(apiserver, "Degraded")["status"] == "False")


@pytest.mark.asyncio
async def test_pool_given_by_cidr_follows_the_pool(
    running: Controller, apiserver: ApiServer, client: KubeClient
) -> None:
    by_cidr = copy.deepcopy(GATEWAY)
    by_cidr["spec"]["ipPools"] = [{"cidr": "10.99.0.0/29"}]
    apiserver.seed(CALICO, "ippools", POOL)
    apiserver.seed(OPERATOR, "egressgateways", by_cidr)
    await until(lambda: deployment(apiserver))
    await client.delete(api.IP_POOL, None, "tenant0-pool")
    await until(lambda: condition(apiserver, "Degraded")["status"] == "True")
    assert "10.99.0.0/29 not present" in condition(apiserver, "Degraded")["message"]


@pytest.mark.asyncio
async def test_deleting_the_gateway_deletes_its_deployment(
    running: Controller, apiserver: ApiServer, client: KubeClient
) -> None:
    apiserver.seed(CALICO, "ippools", POOL)
    apiserver.seed(OPERATOR, "egressgateways", GATEWAY)
    await until(lambda: deployment(apiserver))
    await client.delete(api.EGRESS_GATEWAY, NS, "tenant0-egw")
    await until(lambda: apiserver.stored("apps", "deployments") == {})


@pytest.mark.asyncio
async def test_a_hand_written_deployment_is_taken_over(running: Controller, apiserver: ApiServer) -> None:
    legacy = {
        "metadata": {"name": "tenant0-egw", "namespace": NS, "labels": {"egress-code": "red"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"egress-code": "red"}},
                 "template": {"metadata": {"labels": {"egress-code": "red"}},
                              "spec": {"containers": [{"name": "gw", "image": "old"}]}}},
    }
    apiserver.seed("apps", "deployments", legacy)
    apiserver.seed(CALICO, "ippools", POOL)
    apiserver.seed(OPERATOR, "egressgateways", GATEWAY)
    dep = await until(lambda: deployment(apiserver)["spec"]["replicas"] == 2 and deployment(apiserver))
    assert dep["spec"]["selector"] == {"matchLabels": {"tenant": "tenant0-egw"}}
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "egressgw:test"


@pytest.mark.asyncio
async def test_a_quiet_cluster_gets_no_writes(running: Controller, apiserver: ApiServer) -> None:
    apiserver.seed(CALICO, "ippools", POOL)
    apiserver.seed(OPERATOR, "egressgateways", GATEWAY)
    await until(lambda: gateway(apiserver).get("status"))
    revision = apiserver.revision
    passes = running.passes
    running._dirty.set()  # an extra pass over an unchanged cluster
    await until(lambda: running.passes > passes)
    await asyncio.sleep(0.1)
    assert apiserver.revision == revision
