"""`egressgw explain`: why a pod's connection to a destination goes where it goes."""

from __future__ import annotations

import json
from enum import StrEnum
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from egressgw import manifests
from egressgw.calc import decision, snapshot
from egressgw.cli import overrides
from egressgw.model.parsing import ManifestError


class Output(StrEnum):
    """Output formats."""

    TEXT = "text"
    JSON = "json"


def explain(
    filename: Annotated[list[Path], typer.Option("-f", "--filename", help="Manifest file or directory; repeatable.")],
    pod: Annotated[str, typer.Option("--pod", help="The client pod, NAMESPACE/NAME.")],
    to: Annotated[str, typer.Option("--to", help="The destination IPv4 address.")],
    annotate: Annotated[
        list[str] | None,
        typer.Option("--annotate", help="KIND/[NAMESPACE/]NAME:KEY=VALUE (or KEY- to remove), applied before deciding; repeatable."),
    ] = None,
    output: Annotated[Output, typer.Option("-o", "--output")] = Output.TEXT,
) -> None:
    """Explain the egress decision for one pod and one destination."""
    err = Console(stderr=True)
    try:
        destination = ip_address(to)
    except ValueError:
        err.print(f"error: --to {to!r} is not an IP address")
        raise typer.Exit(2) from None
    if not isinstance(destination, IPv4Address):
        err.print("error: egress gateways are IPv4 only; --to must be an IPv4 address")
        raise typer.Exit(2)
    try:
        resources = overrides.apply(manifests.load(filename), annotate or [])
    except ManifestError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False, highlight=False)
        raise typer.Exit(1) from None
    except overrides.OverrideError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    view, _, problems = snapshot.view_of_manifests(resources)
    namespace, _, name = pod.partition("/")
    workload = view.workloads.get((namespace, name)) if name else None
    if workload is None:
        err.print(f"error: pod {pod!r} not found in the manifests (use NAMESPACE/NAME)")
        raise typer.Exit(2)
    result = decision.decide(view, workload, destination)
    notes = [*problems, *decision.egress_config(view, workload).problems]
    if output is Output.JSON:
        typer.echo(json.dumps(as_json(result, notes), indent=2))
    else:
        _render(result, notes)


def as_json(result: decision.Decision, notes: list[str]) -> dict[str, Any]:
    """The stable JSON shape of a decision."""
    return {
        "pod": "/".join(result.pod),
        "destination": str(result.destination),
        "action": str(result.action),
        "source": str(result.source),
        "policy": result.policy,
        "rule": result.rule,
        "gateways": [
            {"namespace": h.namespace, "name": h.gateway, "pod": h.pod, "ip": str(h.ip)}
            for h in result.gateways
        ],
        "reason": result.reason,
        "notes": notes,
    }


def _render(result: decision.Decision, notes: list[str]) -> None:
    console = Console()
    colour = {"gateway": "green", "direct": "cyan", "drop": "red"}[str(result.action)]
    console.print(
        f"[bold]{'/'.join(result.pod)}[/] -> [bold]{result.destination}[/]: "
        f"[bold {colour}]{result.action}[/]"
    )
    console.print(f"decided by: {result.source}" + (f" (policy {result.policy}, rule {result.rule})" if result.policy else ""))
    console.print(f"why: {result.reason}", markup=False, highlight=False)
    if result.gateways:
        table = Table("gateway", "pod", "ip", "node")
        for hop in result.gateways:
            table.add_row(f"{hop.namespace}/{hop.gateway}", hop.pod, str(hop.ip), hop.node or "-")
        console.print(table)
    for note in notes:
        console.print(f"note: {note}", markup=False, highlight=False, style="yellow")
