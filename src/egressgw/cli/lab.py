"""`egressgw lab ...`: bring a lab up and down, look at it, run commands in it, run the demo.

Parses, calls egressgw.lab, renders: progress goes to stderr, results to stdout (a table,
or JSON with `-o json`). `lab kubelet` is the lab's kubelet daemon, which `lab up` starts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Annotated, Any, Protocol

import typer
from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from egressgw.drivers.routeserver import RouteServerError
from egressgw.lab import azure as lab_azure
from egressgw.lab import demo as lab_demo
from egressgw.lab import demo_azure as lab_demo_azure
from egressgw.lab import kubelet as lab_kubelet
from egressgw.lab import procs, scenarios
from egressgw.lab import registry as lab_registry
from egressgw.lab import running as lab_running
from egressgw.lab import status as lab_status
from egressgw.lab import up as lab_up
from egressgw.lab.scenarios import Transport

app = typer.Typer(
    name="lab", help="A lab of network namespaces running egressgw.", no_args_is_help=True
)
demo_app = typer.Typer(
    name="demo", help="Walk a reference scenario on a lab.", no_args_is_help=True
)
app.add_typer(demo_app, name="demo")


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


class TransportChoice(StrEnum):
    NATIVE = "native"
    VXLAN = "vxlan"


_TRANSPORTS: dict[TransportChoice, Transport] = {
    TransportChoice.NATIVE: "native",
    TransportChoice.VXLAN: "vxlan",
}
PrefixOption = Annotated[
    str | None, typer.Option("--prefix", help="The lab (default: the only one running).")
]
OutputOption = Annotated[Output, typer.Option("-o", "--output")]
TransportOption = Annotated[
    TransportChoice | None,
    typer.Option("--transport", help="How clients reach gateways (default: the scenario's)."),
]
_err = Console(stderr=True, highlight=False)


def _fail(message: str, code: int = 1) -> typer.Exit:
    _err.print(f"error: {message}", markup=False)
    return typer.Exit(code)


def _progress(message: str) -> None:
    _err.print(f"[dim]{message}[/dim]")


def _handle(prefix: str | None) -> lab_running.LabHandle:
    try:
        return lab_running.attach(prefix)
    except LookupError as err:
        raise _fail(str(err)) from None


def _bring_up(scenario: str, transport: TransportChoice | None) -> lab_running.LabHandle:
    try:
        chosen = scenarios.get(scenario)
    except KeyError as err:
        raise _fail(str(err.args[0]), 2) from None
    try:
        return lab_up.up(
            chosen, transport=_TRANSPORTS[transport] if transport else None, progress=_progress
        )
    except (RuntimeError, TimeoutError, OSError) as err:
        raise _fail(f"the lab did not come up and was taken down again: {err}") from None


# --- up, down, status, exec -----------------------------------------------------------------


@app.command()
def up(
    scenario: Annotated[str, typer.Argument(help="Scenario name.")] = "aws",
    transport: TransportOption = None,
) -> None:
    """Build a lab of SCENARIO and start etcd, the controller, the agents and the gateways."""
    handle = _bring_up(scenario, transport)
    Console(highlight=False).print(_status_tables(lab_status.status(handle)))
    _err.print(f"lab {handle.prefix} is up; `egressgw lab down` takes it down")


@app.command()
def down(prefix: PrefixOption = None) -> None:
    """Stop every process of the lab and remove its namespaces and state."""
    try:
        _err.print(f"lab {lab_running.down(prefix)} is down")
    except LookupError as err:
        raise _fail(str(err)) from None


@app.command()
def status(prefix: PrefixOption = None, output: OutputOption = Output.TABLE) -> None:
    """Nodes, pods, gateway pods and internet stand-ins of the lab."""
    found = lab_status.status(_handle(prefix))
    if output is Output.JSON:
        typer.echo(json.dumps(status_json(found), indent=2))
    else:
        Console(highlight=False).print(_status_tables(found))


@app.command("exec", context_settings={"ignore_unknown_options": True})
def exec_(
    name: Annotated[
        str, typer.Argument(help="NS/NAME or NAME (a pod in default), a host or node.")
    ],
    command: Annotated[list[str], typer.Argument(help="The command, after --.")],
    prefix: PrefixOption = None,
) -> None:
    """Run a command inside a pod's, an internet host's or a node's namespace."""
    try:
        netns = lab_status.netns_for(_handle(prefix).topology(), name)
    except LookupError as err:
        raise _fail(str(err)) from None
    argv = procs.netns_argv(netns, command)
    os.execvp(argv[0], argv)


@app.command()
def routes(
    peer: Annotated[
        str, typer.Argument(help="A route server of the hub: its name (rs-a) or address.")
    ],
    prefix: PrefixOption = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """The routes a route-server peer learned, read from it, shaped like `az network
    routeserver peering list-learned-routes`."""
    handle = _handle(prefix)
    try:
        learned = lab_azure.learned_azure(handle.topology(), peer, handle.root)
    except (LookupError, RouteServerError) as err:
        raise _fail(str(err)) from None
    if output is Output.JSON:
        typer.echo(json.dumps(learned, indent=2))
        return
    columns = ["network", "nextHop", "asPath", "sourcePeer", "origin"]  # JSON has them all
    rows = [[str(r[c]) for c in columns] for r in learned]
    Console(highlight=False).print(_table(f"Routes {peer} learned", columns, rows))


@app.command()
def kubelet(lab: Annotated[str, typer.Option("--lab", help="The lab's prefix.")]) -> None:
    """The lab's kubelet daemon (started by `lab up`): wires pods, plays AWS."""
    lab_kubelet.main(lab)


# --- the demo -------------------------------------------------------------------------------


@demo_app.command("aws")
def demo_aws(
    output: OutputOption = Output.TABLE,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the lab running.")] = False,
    transport: TransportOption = None,
    prefix: PrefixOption = None,
) -> None:
    """Walk the AWS reference (egw-1..3, then the policy, then reset) and check each step."""
    _on_lab("aws", transport, prefix, keep, lambda handle: _walk(handle, output, lab_demo.aws_demo, _demo_table))


@demo_app.command("azure")
def demo_azure(
    output: OutputOption = Output.TABLE,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the lab running.")] = False,
    prefix: PrefixOption = None,
) -> None:
    """Walk the Azure reference (BGP to the route servers, disableBGPExport, the BGPFilter,
    the firewall's answers before and after egress, the policy) and check each step."""
    _on_lab("azure", None, prefix, keep, lambda handle: _walk(handle, output, lab_demo_azure.azure_demo, _azure_table))


def _on_lab(
    scenario: str,
    transport: TransportChoice | None,
    prefix: str | None,
    keep: bool,
    run: Callable[[lab_running.LabHandle], bool],
) -> None:
    """`run` on lab `prefix`, or on a lab of `scenario` brought up for it (and taken down
    after, unless `keep`) when none runs; exit 1 when `run` says it failed."""
    owned: list[lab_running.LabHandle] = []

    def cleanup() -> None:
        for handle in owned if not keep else ():
            handle.down()

    with procs.guarded(cleanup):
        if prefix is None and not lab_registry.labs():
            owned.append(handle := _bring_up(scenario, transport))
        else:
            handle = _handle(prefix)
        if handle.info.scenario != scenario:
            raise _fail(f"lab {handle.prefix} runs {handle.info.scenario}, not {scenario}")
        ok = run(handle)
    if owned and keep:
        _err.print(f"lab {handle.prefix} left running (--keep)")
    if not ok:
        raise typer.Exit(1)


class _Walked(Protocol):
    """What both demos return."""

    @property
    def ok(self) -> bool: ...

    @property
    def steps(self) -> Sequence[Any]: ...

    def as_dict(self) -> dict[str, Any]: ...


def _walk(
    handle: lab_running.LabHandle,
    output: Output,
    demo: Callable[..., _Walked],
    table: Callable[[list[Any]], Table],
) -> bool:
    """Run `demo` on the lab: JSON at the end, or a live table of its steps; True if all held."""
    for note in handle.info.stand_ins:
        _err.print(f"[dim]{note}[/dim]")
    if output is Output.JSON:
        result = demo(handle, progress=_progress)
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return result.ok
    steps: list[Any] = []
    with Live(table(steps), console=Console(highlight=False)) as live:

        def on_step(step: Any) -> None:
            steps.append(step)
            live.update(table(steps))

        result = demo(handle, on_step=on_step)
    failed = sum(not s.ok for s in result.steps)
    verdict = (
        "[green]every step as expected[/green]" if result.ok else f"[red]{failed} failed[/red]"
    )
    _err.print(f"{len(result.steps)} steps: {verdict}")
    return result.ok


def _azure_table(steps: list[lab_demo_azure.AzureStep]) -> Table:
    table = Table(title="What the hub saw", box=box.SIMPLE_HEAD, collapse_padding=True)
    for column in ("step", "what", "observed", "", "ms"):
        table.add_column(column, justify="right" if column == "ms" else "left")
    for s in steps:
        mark = "[green]✓[/green]" if s.ok else "[red]✗[/red]"
        table.add_row(s.step, s.title, s.summary(), mark, str(s.elapsed_ms))
    return table


def _demo_table(steps: list[lab_demo.DemoStep]) -> Table:
    table = Table(title="What the lab's internet saw", box=box.SIMPLE_HEAD, collapse_padding=True)
    for column in ("step", "to", "via", "expected", "seen", "", "ms"):
        table.add_column(column, justify="right" if column == "ms" else "left", no_wrap=True)
    for s in steps:
        table.add_row(
            s.step,
            s.host,
            s.via,
            " ".join(map(str, s.expected)) or "(none)",
            str(s.seen) if s.seen else "[red]no answer[/red]",
            "[green]✓[/green]" if s.ok else "[red]✗[/red]",
            str(s.elapsed_ms),
        )
    return table


# --- rendering status -----------------------------------------------------------------------


def status_json(s: lab_status.LabStatus) -> dict[str, Any]:
    t = s.topology
    return {
        "lab": s.info.prefix,
        "scenario": s.info.scenario,
        "transport": s.info.transport,
        "etcd": s.info.etcd,
        "nodes": [
            {"name": n.name, "zone": n.zone, "ip": str(n.ip), "pod_cidr": str(n.pod_cidr)}
            for n in t.nodes
        ],
        "pods": [
            {"name": p.name, "namespace": p.namespace, "node": p.node, "ip": str(p.ip)}
            for p in t.workloads()
        ],
        "gateway_pods": [
            {
                "gateway": g.gateway,
                "name": g.name,
                "namespace": g.namespace,
                "node": g.node,
                "ip": str(g.ip),
                "public_ip": str(g.public_ip) if g.public_ip else None,
                "ready": g.ready,
            }
            for g in s.gateways
        ],
        "internet_hosts": [
            {
                "name": h.name,
                "address": str(h.address),
                "stands_for": str(h.stands_for) if h.stands_for else None,
            }
            for h in t.internet_hosts
        ],
        "processes": [{"name": name, "alive": alive} for name, alive in s.processes],
    }


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def _status_tables(s: lab_status.LabStatus) -> Table:
    data = status_json(s)
    grid = Table.grid(padding=(1, 0))
    grid.add_row(f"lab {s.info.prefix}: {s.info.scenario}, {s.info.transport}, etcd {s.info.etcd}")
    sections: list[tuple[str, str, list[str]]] = [
        ("nodes", "Nodes", ["name", "zone", "ip", "pod_cidr"]),
        ("pods", "Pods", ["namespace", "name", "node", "ip"]),
        ("gateway_pods", "Gateway pods", ["gateway", "name", "node", "ip", "public_ip", "ready"]),
        ("internet_hosts", "Internet", ["name", "address", "stands_for"]),
    ]
    for key, title, columns in sections:
        rows = [[str(item[c]) for c in columns] for item in data[key]]
        grid.add_row(_table(title, columns, rows))
    dead = [p["name"] for p in data["processes"] if not p["alive"]]
    if dead:
        grid.add_row(f"[red]not running: {', '.join(dead)}[/red]")
    return grid
