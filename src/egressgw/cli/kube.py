"""`egressgw kube ...` (and `egressgw install-manifests`): the install and a live cluster.

Commands parse arguments, call egressgw.kube and render; no logic lives here.
- `install-manifests [--values FILE]`: the whole install as YAML on stdout.
- `crds [--beside-calico]`: only the CustomResourceDefinitions.
- `chart --out DIR`: write the Helm chart generated from the same source.
- `controller`: run the Kubernetes controller under leader election (in-cluster), and on
  every replica the admission webhook (EGRESSGW_WEBHOOK_ENABLED, _PORT, and _HOST: the
  address to listen on, default all); SIGTERM stops it cleanly, releasing the Lease.
- `get` / `explain`: EgressGateways with their health, and the egress decision for a pod,
  on live state read through kubeconfig.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from egressgw.calc import decision, snapshot
from egressgw.cli import explain as explain_cli
from egressgw.cli.daemons import until_signalled
from egressgw.kube import api, chart, install
from egressgw.kube.client import KubeClient
from egressgw.kube.controller import Controller
from egressgw.kube.leader import LeaderElector
from egressgw.kube.render import GatewayConfig
from egressgw.kube.store import KubeStore
from egressgw.kube.webhookserver import run_webhook
from egressgw.model import EgressGateway, ManifestError, Resource, ResourceSet
from egressgw.store import codec
from egressgw.store.resources import RESOURCE_PREFIX

app = typer.Typer(add_completion=False, help="Install on Kubernetes and look at a live cluster.")
err = Console(stderr=True, highlight=False)

ValuesOption = Annotated[
    Path | None, typer.Option("--values", "-f", help="A values YAML file (as for the Helm chart).")
]
KubeconfigOption = Annotated[str | None, typer.Option("--kubeconfig", help="Default: $KUBECONFIG.")]
ContextOption = Annotated[str | None, typer.Option("--context", help="kubeconfig context.")]


def _values(path: Path | None) -> install.Values:
    data = yaml.safe_load(path.read_text()) if path is not None else {}
    try:
        return install.Values.model_validate(data or {})
    except ValueError as exc:
        err.print(f"error: {path}: {exc}", markup=False)
        raise typer.Exit(2) from None


@app.command("install-manifests")
def install_manifests(values: ValuesOption = None) -> None:
    """Print every object of the install (CRDs, RBAC, config, agent, controller) as YAML."""
    typer.echo(install.render_yaml(_values(values)), nl=False)


@app.command("crds")
def print_crds(
    beside_calico: Annotated[bool, typer.Option(help="Leave Calico OSS's kinds to Calico.")] = False,
) -> None:
    """Print the CustomResourceDefinitions only."""
    values = install.Values.model_validate({"calico": {"oss": beside_calico}})
    objs = [m for m in install.manifests(values) if m["kind"] == "CustomResourceDefinition"]
    typer.echo(yaml.safe_dump_all(objs, sort_keys=False, explicit_start=True), nl=False)


@app.command("chart")
def write_chart(out: Annotated[Path, typer.Option("--out", help="The chart directory.")]) -> None:
    """Write the Helm chart generated from the install (charts/egressgw in the repository)."""
    for name, text in chart.chart_files().items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    typer.echo(f"wrote {len(chart.chart_files())} files to {out}")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"EGRESSGW_{name}", default)


@app.command("controller")
def run_controller(kubeconfig: KubeconfigOption = None, context: ContextOption = None) -> None:
    """Run the controller (in-cluster, configured by the EGRESSGW_* environment)."""
    level = _env("LOG_LEVEL", "info").upper()
    logging.basicConfig(level=level)
    if level != "DEBUG":  # httpx logs every request at INFO: two lines per Lease renewal
        logging.getLogger("httpx").setLevel(logging.WARNING)
    config = GatewayConfig(
        image=_env("IMAGE", "ghcr.io/egressgw/egressgw:0.1.0"),
        image_pull_policy=_env("IMAGE_PULL_POLICY", "IfNotPresent"),
        mode="native" if _env("MODE", "vxlan") == "native" else "vxlan",
        vxlan_vni=int(_env("VXLAN_VNI", "4097")),
        vxlan_port=int(_env("VXLAN_PORT", "4790")),
        aks=_env("AKS", "false") == "true",
        aws_secondary_ip_resource=_env("AWS_SECONDARY_IP_RESOURCE", "false") == "true",
    )
    asyncio.run(until_signalled(_controller(config, kubeconfig, context)))


async def store_from_env(kubeconfig: str | None = None, context: str | None = None) -> KubeStore:
    """The Kubernetes Store as the install configures it (EGRESSGW_NAMESPACE, _CALICO_OSS):
    what `egressgw agent --datastore kubernetes` should run on."""
    client = await KubeClient.connect(kubeconfig=kubeconfig, context=context)
    apis = api.ApiMap.beside_calico() if _env("CALICO_OSS", "false") == "true" else api.ApiMap()
    return KubeStore(client, namespace=_env("NAMESPACE", "egressgw-system"), apis=apis)


async def _controller(config: GatewayConfig, kubeconfig: str | None, context: str | None) -> None:
    store = await store_from_env(kubeconfig, context)
    elector = LeaderElector(store.client, namespace=store.namespace, name=install.LEASE_NAME,
                            identity=os.environ.get("POD_NAME") or socket.gethostname())
    async with asyncio.TaskGroup() as tasks:
        # A new Controller for every term of leadership: one that lost the Lease and won it
        # back must list again, not act on what it saw before.
        tasks.create_task(elector.run(lambda: Controller(store.client, store, config).run()))
        if _env("WEBHOOK_ENABLED", "false") == "true":  # every replica serves, not only the leader
            tasks.create_task(run_webhook(
                store.client, store, namespace=store.namespace, service=install.WEBHOOK_NAME,
                secret=install.WEBHOOK_SECRET, configuration=install.WEBHOOK_NAME,
                port=int(_env("WEBHOOK_PORT", "9443")), host=_env("WEBHOOK_HOST", "") or None,
            ))


async def _live(kubeconfig: str | None, context: str | None) -> tuple[ResourceSet, list[str]]:
    store = await store_from_env(kubeconfig, context)
    try:
        snap = await store.list(RESOURCE_PREFIX)
    finally:
        await store.client.close()
    notes: list[str] = []
    resources: list[Resource] = []
    for item in snap.items:
        try:
            resources.append(codec.decode(item.value))
        except ManifestError as exc:
            notes += [str(p) for p in exc.problems]
    return _buildable(resources, notes), notes


def _buildable(resources: list[Resource], notes: list[str]) -> ResourceSet:
    """A ResourceSet of the live objects, leaving out those with broken references."""
    try:
        return ResourceSet.build(resources)
    except ManifestError as exc:
        notes += [str(p) for p in exc.problems]
        bad = {(p.kind, p.namespace, p.name) for p in exc.problems}
        return ResourceSet.build(r for r in resources if tuple(r.key) not in bad)


@app.command("get")
def get(kubeconfig: KubeconfigOption = None, context: ContextOption = None) -> None:
    """EgressGateways on the cluster with their health (state, ready replicas, problems)."""
    resources, notes = asyncio.run(_live(kubeconfig, context))
    table = Table("namespace", "name", "replicas", "state", "ready", "message")
    for gw in resources.egress_gateways:
        table.add_row(*_health(gw))
    Console().print(table)
    for note in notes:
        err.print(f"note: {note}", markup=False, style="yellow")


def _health(gw: EgressGateway) -> tuple[str, ...]:
    conditions: dict[str, Any] = {
        str(c.get("type")): c for c in (gw.status.conditions if gw.status else [])
    }
    ready = conditions.get("Ready", {})
    degraded = conditions.get("Degraded", {})
    message = degraded.get("message", "") if degraded.get("status") == "True" else ready.get("message", "")
    state = gw.status.state if gw.status and gw.status.state else "-"
    return (gw.metadata.namespace or "", gw.metadata.name, str(gw.spec.replicas), state,
            str(ready.get("status", "Unknown")), str(message))


@app.command("explain")
def explain(
    pod: Annotated[str, typer.Option("--pod", help="The client pod, NAMESPACE/NAME.")],
    to: Annotated[str, typer.Option("--to", help="The destination IPv4 address.")],
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: Annotated[explain_cli.Output, typer.Option("-o", "--output")] = explain_cli.Output.TEXT,
) -> None:
    """Explain the egress decision for a live pod and a destination."""
    destination = ip_address(to)
    if not isinstance(destination, IPv4Address):
        err.print("error: egress gateways are IPv4 only; --to must be an IPv4 address")
        raise typer.Exit(2)
    resources, notes = asyncio.run(_live(kubeconfig, context))
    view = snapshot.view_of(resources)
    namespace, _, name = pod.partition("/")
    workload = view.workloads.get((namespace, name))
    if workload is None:
        err.print(f"error: pod {pod!r} not found on the cluster (use NAMESPACE/NAME)")
        raise typer.Exit(2)
    result = decision.decide(view, workload, destination)
    notes += list(decision.egress_config(view, workload).problems)
    if output is explain_cli.Output.JSON:
        typer.echo(json.dumps(explain_cli.as_json(result, notes), indent=2))
    else:
        explain_cli._render(result, notes)


__all__ = ["app", "install_manifests", "store_from_env"]
