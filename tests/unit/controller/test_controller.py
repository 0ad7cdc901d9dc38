"""The controller writes gateway pods (node, IP, Elastic IP) and status, and is stable."""

from __future__ import annotations

import asyncio
from pathlib import Path

from egressgw import manifests
from egressgw.calc import gateways
from egressgw.controller.gateways import Controller
from egressgw.model import Pod
from egressgw.store.memory import MemoryStore

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
ZONES = {"subnet-0a1b2c3d4e5f60001": "us-east-1a", "subnet-0a1b2c3d4e5f60002": "us-east-1b"}


async def _reconciled(store: MemoryStore, controller: Controller) -> dict[tuple[str, str], Pod]:
    objects, _ = await controller.resources.list_all()
    await controller.reconcile({(o.key.kind, o.key.namespace, o.key.name): o for o in objects})
    objects, _ = await controller.resources.list_all()
    return {(o.metadata.namespace or "", o.metadata.name): o for o in objects
            if isinstance(o, Pod) and gateways.GATEWAY_ANNOTATION in o.metadata.annotations}


def test_aws_example_gets_six_pods_with_their_elastic_ips() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        controller = Controller(store, ZONES)
        await controller.resources.apply(list(manifests.load([EXAMPLES / "aws-public-ip"]).all))
        pods = await _reconciled(store, controller)
        assert sorted(pods) == [("default", f"egw-{i}-0") for i in range(1, 7)]
        for i in range(1, 7):
            pod = pods[("default", f"egw-{i}-0")]
            assert pod.metadata.annotations[gateways.ELASTIC_IP_ANNOTATION] == f"198.51.100.{10 + i}"
            assert pod.metadata.labels["egress-gateway"] == f"egw-{i}"
            zone_b = pod.spec is not None and pod.spec.node_name in ("node-3", "node-4")
            assert str(pod.ip).startswith("10.99.2" if zone_b else "10.99.8"), (pod.spec, pod.ip)
        ips = [p.ip for p in pods.values()]
        assert len(set(ips)) == len(ips)
        again = await _reconciled(store, controller)
        assert {k: p.metadata.resource_version for k, p in again.items()} == {
            k: p.metadata.resource_version for k, p in pods.items()}
        gw, _ = await controller.resources.list_all("EgressGateway")
        assert {g.status.state for g in gw if g.status is not None} == {"Ready"}  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_a_second_controller_agrees_and_never_doubles_an_address() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        first, second = Controller(store, ZONES), Controller(store, ZONES)
        await first.resources.apply(list(manifests.load([EXAMPLES / "aws-public-ip"]).all))
        pods = await _reconciled(store, first)
        pods2 = await _reconciled(store, second)
        assert {k: p.ip for k, p in pods.items()} == {k: p.ip for k, p in pods2.items()}

    asyncio.run(scenario())


def test_scaling_down_drains_the_pod_for_its_grace_period() -> None:
    from egressgw.model import parsing

    async def scenario() -> None:
        store = MemoryStore()
        controller = Controller(store, ZONES)
        objs = list(manifests.load([EXAMPLES / "aws-public-ip"]).all)
        gw = next(o for o in objs if o.kind == "EgressGateway" and o.metadata.name == "egw-1")
        body = parsing.to_dict(gw)
        body["spec"]["replicas"] = 2
        body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
        objs = [o for o in objs if o is not gw] + [parsing.from_dict(body)]
        await controller.resources.apply(objs)
        pods = await _reconciled(store, controller)
        assert ("default", "egw-1-1") in pods
        body["spec"]["replicas"] = 1
        await controller.resources.apply([parsing.from_dict(body)])
        pods = await _reconciled(store, controller)
        draining = pods[("default", "egw-1-1")]
        assert draining.metadata.deletion_timestamp is not None
        assert draining.metadata.deletion_grace_period_seconds == 1
        await asyncio.sleep(1.1)
        pods = await _reconciled(store, controller)
        assert ("default", "egw-1-1") not in pods and ("default", "egw-1-0") in pods

    asyncio.run(scenario())
