"""`egressgw kube controller` run as the cluster runs it, against the API emulator.

The pieces of the controller are tested one by one elsewhere; here the real process runs,
with the argv and the environment the install's controller Deployment gives its container
(`install.manifests`, resolved by test_commands' helpers: the config ConfigMap through
`envFrom`, POD_NAME through the downward API). Added are only what a cluster would give it
otherwise: KUBECONFIG (a file pointing at the emulator on 127.0.0.1, instead of the pod's
service account), a free webhook port, and EGRESSGW_WEBHOOK_HOST=127.0.0.1 so the webhook
listens on loopback only (host servers stay on 127.0.0.1). The emulator holds what the
install creates that it can hold (namespace, CRDs, config, the controller's own Deployment,
the webhook's Service and ValidatingWebhookConfiguration) and examples/aws-public-ip.

Everything asserted is read back from the emulator over HTTP, or seen over the webhook's
HTTPS: the Lease, the gateways' Deployments and status, the CA Secret and the caBundle, a
refusal; then a scale-up followed, and SIGTERM answered promptly with the Lease released.
Last, every request the process made (told apart by its kubeconfig's token, from kmock's
request log) must be granted by the install's RBAC for the Deployment's ServiceAccount.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import pytest_asyncio
import yaml

from egressgw.kube import api, install
from egressgw.kube.api import ApiResource
from egressgw.kube.client import KubeClient
from tests.unit.kube.emulator import ApiServer
from tests.unit.kube.test_commands import _containers, _resolve
from tests.unit.kube.test_crds import INVALID, ROOT
from tests.unit.kube.test_webhook import admission, as_sent, docs_of, expectation

T = TypeVar("T")
# Not the defaults, so that each one reaching the gateways' Deployments shows the
# environment was read (the defaults are also the CLI's fallbacks).
VALUES = install.Values.model_validate({
    "image": {"repository": "registry.example/egressgw", "tag": "t1", "pullPolicy": "Always"},
    "vxlan": {"vni": 4242},
    "aws": {"secondaryIpResource": True},
})
NS = VALUES.namespace
HOST = f"{install.WEBHOOK_NAME}.{NS}.svc"
EXAMPLE = ROOT / "examples" / "aws-public-ip"
DOCS = [d for p in sorted(EXAMPLE.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
GATEWAYS = [d for d in DOCS if d["kind"] == "EgressGateway"]
LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{install.LEASE_NAME}"
SECRET = f"/api/v1/namespaces/{NS}/secrets/{install.WEBHOOK_SECRET}"
HOOKS = f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{install.WEBHOOK_NAME}"
AWS_SECONDARY_IP = "projectcalico.org/aws-secondary-ipv4"
TOKEN = "controller-token"  # tells the process's requests from the test's own
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
Rule = dict[str, Any]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "controller", "user": {"token": TOKEN}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "controller"}}],
    }))
    return path


def _as_deployed(objects: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """The controller container's argv (references resolved) and environment."""
    where = f"Deployment/{install.CONTROLLER}/controller"
    for name, container, env in _containers(objects):
        if name == where:
            argv = _resolve(container.get("command", []) + container.get("args", []), env, name)
            assert argv[0] == "egressgw"  # the image's console script; here the venv's
            return [str(Path(sys.executable).with_name("egressgw")), *argv[1:]], env
    raise AssertionError(f"no {where} in the install")


async def _load(client: KubeClient, apiserver: ApiServer, objects: list[dict[str, Any]]) -> None:
    """Create the install's objects the emulator can hold (CRDs first, as they come)."""
    for obj in objects:
        t = apiserver.resource_of(obj["apiVersion"], obj["kind"])
        if t is not None:  # not ServiceAccounts, RBAC or the DaemonSet: nothing reads them here
            await client.create(ApiResource(t.group, t.version, t.plural, t.kind, t.namespaced), obj)


class Cluster:
    """Reads and writes of the emulator's state over plain HTTP: the test's oracle."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self._session = session
        self._url = url.rstrip("/")

    async def get(self, path: str, **params: str) -> dict[str, Any] | None:
        async with self._session.get(self._url + path, params=params) as resp:
            if resp.status == 404:
                return None
            assert resp.status == 200, await resp.text()
            body: dict[str, Any] = await resp.json()
            return body

    async def merge_patch(self, path: str, patch: dict[str, Any]) -> None:
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self._session.patch(self._url + path, data=json.dumps(patch), headers=headers) as resp:
            assert resp.status == 200, await resp.text()


class Process:
    """The controller process with its output in a file (shown when something fails)."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    async def until(self, check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 10) -> T:
        """Poll `check` until it gives something truthy; fail early if the process died."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            result = await check()
            if result:
                return result
            if self.proc.returncode is not None:
                raise AssertionError(f"{what}: the controller exited ({self.proc.returncode}):\n"
                                     f"{self.output()}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{what}: timed out; last {result!r}; output:\n{self.output()}")
            await asyncio.sleep(0.1)


@pytest_asyncio.fixture
async def cluster(apiserver: ApiServer) -> AsyncIterator[Cluster]:
    async with aiohttp.ClientSession() as session:
        yield Cluster(session, str(apiserver.url))


@pytest_asyncio.fixture
async def controller(
    apiserver: ApiServer, client: KubeClient, tmp_path: Path
) -> AsyncIterator[tuple[Process, dict[str, str], int]]:
    objects = install.manifests(VALUES)
    await _load(client, apiserver, objects)
    for doc in DOCS:  # the example, through the client code the store writes with
        await client.create(api.ApiMap()[doc["kind"]], doc)
    argv, env = _as_deployed(objects)
    port = _free_port()
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", str(apiserver.url).rstrip("/"))
    env = {**env, "KUBECONFIG": str(kubeconfig), "EGRESSGW_WEBHOOK_PORT": str(port),
           "EGRESSGW_WEBHOOK_HOST": "127.0.0.1"}
    log = tmp_path / "controller.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        yield Process(proc, log), env, port
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _condition(gw: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in gw["status"]["conditions"] if c["type"] == kind)


async def _review(port: int, ca_pem: bytes, review: dict[str, Any]) -> dict[str, Any] | None:
    """The webhook's answer over HTTPS, verified against `ca_pem` for the Service's name;
    None while it does not listen yet."""
    tls = ssl.create_default_context(cadata=ca_pem.decode())
    try:
        async with aiohttp.ClientSession() as session, session.post(
            f"https://127.0.0.1:{port}{install.WEBHOOK_PATH}", json=review, ssl=tls,
            server_hostname=HOST,
        ) as resp:
            assert resp.status == 200, await resp.text()
            answer: dict[str, Any] = (await resp.json())["response"]
            return answer
    except aiohttp.ClientConnectorError:
        return None


@pytest.mark.asyncio
async def test_the_controller_process_as_deployed(
    controller: tuple[Process, dict[str, str], int], cluster: Cluster, apiserver: ApiServer
) -> None:
    process, env, port = controller

    # Leader: the Lease names this pod (POD_NAME from the downward API).
    lease = await process.until(lambda: cluster.get(LEASE), "the Lease")
    assert lease["spec"]["holderIdentity"] == env["POD_NAME"]

    # One Deployment per EgressGateway, shaped as the reference operator's.
    for gw in GATEWAYS:
        name, namespace = gw["metadata"]["name"], gw["metadata"]["namespace"]
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
        dep = await process.until(partial(cluster.get, path), f"Deployment {name}")
        assert dep["spec"]["replicas"] == gw["spec"]["replicas"]
        template = dep["spec"]["template"]
        assert template["metadata"]["labels"]["k8s-app"] == name
        annotations = template["metadata"]["annotations"]
        assert json.loads(annotations["cni.projectcalico.org/ipv4pools"]) == [
            p["name"] for p in gw["spec"]["ipPools"]]
        assert json.loads(annotations["cni.projectcalico.org/awsElasticIPs"]) == gw["spec"]["aws"]["elasticIPs"]
        gateway = next(c for c in template["spec"]["containers"] if c["name"] == "egress-gateway")
        assert (gateway["image"], gateway["imagePullPolicy"]) == ("registry.example/egressgw:t1", "Always")
        assert {"name": "EGRESS_VXLAN_VNI", "value": "4242"} in gateway["env"]
        assert gateway["resources"]["requests"][AWS_SECONDARY_IP] == "1"
    owned = await cluster.get("/apis/apps/v1/deployments",
                              labelSelector="app.kubernetes.io/managed-by=egressgw")
    assert owned is not None and len(owned["items"]) == len(GATEWAYS)

    # Status: conditions written on every gateway; all pools exist, so none is Degraded.
    for gw in GATEWAYS:
        name, namespace = gw["metadata"]["name"], gw["metadata"]["namespace"]
        path = f"/apis/operator.tigera.io/v1/namespaces/{namespace}/egressgateways/{name}"
        written = await process.until(partial(_with_status, cluster, path), f"{name}'s status")
        assert {c["type"] for c in written["status"]["conditions"]} == {"Available", "Ready", "Degraded"}
        assert _condition(written, "Degraded")["status"] == "False"
        assert _condition(written, "Available")["status"] == "True"

    # The webhook: one CA in the Secret, the same in the caBundle, and served over HTTPS.
    secret = await process.until(lambda: cluster.get(SECRET), "the webhook CA Secret")
    ca_b64 = secret["data"]["tls.crt"]
    hooks = await process.until(lambda: _bundled(cluster), "the caBundle")
    assert [h["clientConfig"]["caBundle"] for h in hooks["webhooks"]] == [ca_b64]
    ca_pem = base64.b64decode(ca_b64)
    bad = INVALID / "policy-bad-selector.yaml"
    answer = await process.until(lambda: _review(port, ca_pem, admission(as_sent(docs_of(bad)[0]))),
                                 "the webhook over HTTPS")
    assert answer["allowed"] is False
    assert expectation(bad) in answer["status"]["message"]
    # It has read the cluster's pools: a copy of an example pool under another name overlaps.
    pool = next(d for d in DOCS if d["kind"] == "IPPool" and d["metadata"]["name"].startswith("egress-workload-1"))
    twin = {**pool, "metadata": {"name": "twin"}}
    overlap = await process.until(lambda: _synced_review(port, ca_pem, twin), "the webhook's pools")
    assert overlap["allowed"] is False and "overlaps" in overlap["status"]["message"]

    # A scale-up of a gateway reaches its Deployment.
    first = GATEWAYS[0]["metadata"]
    await cluster.merge_patch(
        f"/apis/operator.tigera.io/v1/namespaces/{first['namespace']}/egressgateways/{first['name']}",
        {"spec": {"replicas": 3}})
    path = f"/apis/apps/v1/namespaces/{first['namespace']}/deployments/{first['name']}"
    await process.until(lambda: _replicas(cluster, path, 3), "the Deployment scaled to 3")

    # The controller's own Deployment (from the install) is not one it owns: left alone.
    assert await cluster.get(f"/apis/apps/v1/namespaces/{NS}/deployments/{install.CONTROLLER}")

    # SIGTERM (a pod being deleted): it exits promptly and gives the Lease up.
    process.proc.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.wait_for(process.proc.wait(), 5)
    except TimeoutError:
        raise AssertionError(f"still running 5 s after SIGTERM:\n{process.output()}") from None
    assert code == 0, process.output()
    released = await cluster.get(LEASE)
    assert released is not None and not released["spec"].get("holderIdentity"), released

    # Everything it asked the API server for, the install's RBAC grants its ServiceAccount.
    calls = [_call(r) for r in apiserver if _bearer(r) == TOKEN and r.resource and r.resource.plural]
    assert len(calls) > 20
    everywhere, namespaced = _granted(install.manifests(VALUES))
    refused = sorted({c for c in calls if not _allowed(everywhere + (namespaced if c[1] == NS else []), c)})
    assert not refused, f"not granted by the install's RBAC (verb, namespace, group, resource, name): {refused}"


def _bearer(request: Any) -> str:
    headers = {k.lower(): v for k, v in request.headers.items()}
    return str(headers.get("authorization", "")).removeprefix("Bearer ")


def _call(request: Any) -> tuple[str, str, str, str, str]:
    """(verb, namespace, group, resource[/subresource], name), as RBAC sees a request."""
    method = request.method.value
    if method == "GET":
        verb = "watch" if request.params.get("watch") in ("true", "1") else "get" if request.name else "list"
    else:
        verb = VERBS[method]
    resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
    return verb, request.namespace or "", request.resource.group or "", resource, request.name or ""


def _granted(objects: list[dict[str, Any]]) -> tuple[list[Rule], list[Rule]]:
    """The rules bound to the controller Deployment's ServiceAccount: cluster-wide (through
    ClusterRoleBindings) and in the install's namespace (through RoleBindings)."""
    pod = next(o for o in objects if o["kind"] == "Deployment"
               and o["metadata"]["name"] == install.CONTROLLER)["spec"]["template"]["spec"]
    account = {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": NS}
    roles = {(o["kind"], o["metadata"]["name"]): o["rules"] for o in objects
             if o["kind"] in ("Role", "ClusterRole")}
    everywhere: list[Rule] = []
    namespaced: list[Rule] = []
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        if account in binding["subjects"]:
            rules = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
            (everywhere if binding["kind"] == "ClusterRoleBinding" else namespaced).extend(rules)
    return everywhere, namespaced


def _allowed(rules: list[Rule], call: tuple[str, str, str, str, str]) -> bool:
    verb, _, group, resource, name = call
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
               and (not r.get("resourceNames") or name in r["resourceNames"]) for r in rules)


async def _with_status(cluster: Cluster, path: str) -> dict[str, Any] | None:
    gw = await cluster.get(path)
    return gw if gw and (gw.get("status") or {}).get("conditions") else None


async def _bundled(cluster: Cluster) -> dict[str, Any] | None:
    hooks = await cluster.get(HOOKS)
    return hooks if hooks and all(h["clientConfig"].get("caBundle") for h in hooks["webhooks"]) else None


async def _synced_review(port: int, ca_pem: bytes, pool: dict[str, Any]) -> dict[str, Any] | None:
    """The answer for `pool` once the webhook has read the cluster's pools (no warning that
    it has not)."""
    answer = await _review(port, ca_pem, admission(as_sent(pool)))
    return None if answer is None or answer.get("warnings") else answer


async def _replicas(cluster: Cluster, path: str, replicas: int) -> bool:
    dep = await cluster.get(path)
    return dep is not None and dep["spec"]["replicas"] == replicas
