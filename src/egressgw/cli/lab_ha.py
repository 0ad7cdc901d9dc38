"""`egressgw lab kill-gateway | stop-gateway | partition | scale | demo-ha`: faults, changes
and the high-availability demo on a running lab.

Registers its commands on the `lab` typer app (importing this module is enough). Parses,
calls egressgw.lab.chaos / demo_ha, renders: progress on stderr, results on stdout.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from egressgw.cli.lab import (
    Output,
    OutputOption,
    PrefixOption,
    _fail,
    _handle,
    _on_lab,
    _progress,
    app,
    demo_app,
)
from egressgw.lab import chaos, demo_ha

PodArgument = Annotated[str, typer.Argument(help="The gateway pod: NAMESPACE/NAME or NAME.")]
HealOption = Annotated[bool, typer.Option("--heal", help="Undo the fault instead.")]
_err = Console(stderr=True, highlight=False)
_out = Console(highlight=False)


def _act(what: str, action: typer.models.CommandFunctionType) -> None:
    try:
        action()
    except (LookupError, ValueError, chaos.ChaosError) as err:
        raise _fail(f"{what}: {err}") from None


@app.command("kill-gateway")
def kill_gateway(pod: PodArgument, heal: HealOption = False, prefix: PrefixOption = None) -> None:
    """Kill a gateway pod as a crash would: SIGKILL its process, take its link down.
    With --heal the pod comes back (link up; waits until it answers its readiness probe)."""
    handle = _handle(prefix)
    if heal:
        _act("revive", lambda: _err.print(
            f"{pod} is back after {chaos.revive_gateway(handle, pod):.1f}s"))  # fmt: skip
        return
    _act(
        "kill",
        lambda: _err.print(f"{pod}: killed pid {chaos.kill_gateway(handle, pod)}, link down"),
    )


@app.command("stop-gateway")
def stop_gateway(
    pod: PodArgument,
    grace: Annotated[int, typer.Option("--grace", help="Seconds it drains.")] = 30,
    prefix: PrefixOption = None,
) -> None:
    """Stop a gateway pod gracefully: it takes no new flows and is deleted after --grace."""
    handle = _handle(prefix)
    _act("stop", lambda: _err.print(
        f"{pod}: terminating, deleted at {chaos.stop_gateway(handle, pod, grace):%H:%M:%S} UTC"))  # fmt: skip


@app.command("partition")
def partition(pod: PodArgument, heal: HealOption = False, prefix: PrefixOption = None) -> None:
    """Cut a gateway pod's network path while its process keeps running (--heal: restore)."""
    handle = _handle(prefix)
    _act("partition", lambda: chaos.partition(handle, pod, heal))
    _err.print(f"{pod}: {'healed' if heal else 'partitioned'}")


@app.command("scale")
def scale(
    gateway: Annotated[str, typer.Argument(help="The EgressGateway's name.")],
    replicas: Annotated[int, typer.Argument(help="How many gateway pods it should run.")],
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    prefix: PrefixOption = None,
) -> None:
    """Set an EgressGateway's replicas."""
    handle = _handle(prefix)
    before: list[int] = []
    _act("scale", lambda: before.append(chaos.scale(handle, gateway, replicas, namespace)))
    _err.print(f"egressgateway/{gateway} scaled from {before[0]} to {replicas}")


@app.command("demo-ha")
def demo_ha_command(
    output: OutputOption = Output.TABLE,
    keep: Annotated[bool, typer.Option("--keep", help="Leave a lab it started running.")] = False,
    prefix: PrefixOption = None,
) -> None:
    """Two replicas of egw-1, a stream of connections from netshoot, kill one replica:
    the timeline of what the echo service saw, the failover time, the flows lost."""
    _on_lab("aws", None, prefix, keep, lambda handle: _show(demo_ha.ha_demo(handle, _progress), output))


def _show(result: demo_ha.HaDemo, output: Output) -> bool:
    if output is Output.JSON:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        _render(result)
    return result.ok


def _bar(count: int, style: str) -> str:
    return f"[{style}]{'█' * count}[/{style}] {count}" if count else ""


def _render(result: demo_ha.HaDemo) -> None:
    trial = result.trial
    names = [r.name for r in trial.replicas]
    table = Table(title=f"New connections from netshoot per {result.step * 1000:.0f} ms "
                  f"({trial.victim.name} killed at 0.0 s)", box=box.SIMPLE_HEAD)  # fmt: skip
    table.add_column("t (s)", justify="right")
    for r in trial.replicas:
        table.add_column(f"via {r.name} ({r.public_ip})")
    table.add_column("failed")
    styles = ["cyan" if n != trial.victim.name else "magenta" for n in names]
    for b in demo_ha.timeline(trial, result.step):
        cells = [_bar(n, s) for n, s in zip(b.via, styles, strict=True)]
        table.add_row(f"{b.start:+.1f}", *cells, _bar(b.failed, "red"))
    _out.print(table)
    _out.print(_summary(trial))


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _summary(trial: demo_ha.Trial) -> str:
    survivors = trial.flows_through(trial.survivors)
    victims = trial.flows_through([trial.victim])
    moved = sum(f.disturbed for f in victims)
    verdict = "[green]ok[/green]" if trial.ok else "[red]goal missed[/red]"
    return "\n".join([
        f"detection (client node dropped {trial.victim.name}): {_ms(trial.detection_s)}",
        f"failover (fault -> first success after the last failure): {_ms(trial.restoration_s)}"
        f" (goal <= {demo_ha.GOAL_SECONDS * 1000:.0f} ms) {verdict}",
        f"connections: {len(trial.traffic.attempts)}, failed: {len(trial.failed)}, "
        f"via {trial.victim.name} after the kill: {trial.via_victim_after}",
        f"long flows on the survivor: {len(survivors)}, disturbed: {len(trial.disturbed)}",
        f"long flows on {trial.victim.name}: {len(victims)}, lost or moved: {moved} "
        "(no gateway shares NAT state)",
    ])  # fmt: skip


demo_app.command("ha")(demo_ha_command)  # `egressgw lab demo ha`, beside aws and azure
