"""`egressgw kube get` and `explain` on live state, read through a kubeconfig that points at
the API emulator (the command runs in its own thread and event loop, as from a shell)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from egressgw.cli.kube import app
from egressgw.kube import api
from egressgw.kube.client import KubeClient
from egressgw.kube.crds import crds
from tests.unit.kube.emulator import ApiServer

ROOT = Path(__file__).resolve().parents[3]


def _kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "nobody", "user": {}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "nobody"}}],
    }))
    return path


async def _run(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def _cluster(client: KubeClient, apiserver: ApiServer) -> None:
    for crd in crds():
        await client.create(api.CRD, crd)
    for doc in yaml.safe_load_all((ROOT / "examples/azure-hub-spoke/egw-tenants.yaml").read_text()):
        res = {"Namespace": api.NAMESPACE, "IPPool": api.IP_POOL, "EgressGateway": api.EGRESS_GATEWAY}
        await client.create(res[doc["kind"]], doc)
    await client.merge_patch(api.EGRESS_GATEWAY, "tenant0-egw", "tenant0-egw", {"status": {
        "state": "Degraded", "conditions": [
            {"type": "Ready", "status": "False", "message": "0/2 replicas ready"},
            {"type": "Degraded", "status": "True", "message": "spec.ipPools[0].name: gone"},
        ]}}, subresource="status")
    await client.create(api.NAMESPACE, {"metadata": {"name": "default"}})
    await client.create(api.POD, {"metadata": {"name": "netshoot", "namespace": "default"},
                                  "spec": {"nodeName": "n1"},
                                  "status": {"podIP": "192.168.1.5"}})


@pytest.mark.asyncio
async def test_get_shows_gateways_with_their_health(
    client: KubeClient, apiserver: ApiServer, tmp_path: Path
) -> None:
    await _cluster(client, apiserver)
    config = _kubeconfig(tmp_path, str(apiserver.url).rstrip("/"))
    result = await _run("get", "--kubeconfig", str(config))
    assert result.exit_code == 0, result.output
    assert "tenant0-egw" in result.output and "tenant1-egw" in result.output
    assert "Degraded" in result.output and "gone" in result.output


@pytest.mark.asyncio
async def test_explain_decides_on_live_state(
    client: KubeClient, apiserver: ApiServer, tmp_path: Path
) -> None:
    await _cluster(client, apiserver)
    config = _kubeconfig(tmp_path, str(apiserver.url).rstrip("/"))
    result = await _run("explain", "--kubeconfig", str(config), "--pod", "default/netshoot",
                        "--to", "8.8.8.8", "-o", "json")
    assert result.exit_code == 0, result.output
    decided = json.loads(result.output)
    assert (decided["pod"], decided["action"]) == ("default/netshoot", "direct")
