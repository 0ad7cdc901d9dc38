"""The `egressgw` command: parse arguments, call the library, render. No logic lives here."""

from __future__ import annotations

import typer

from egressgw.cli import (
    daemons,
    explain,
    kube,
    lab,
    lab_ha,  # noqa: F401  (registers its commands on lab.app)
    resources,
    selector,
    validate,
)

app = typer.Typer(
    name="egressgw",
    help="Egress gateways for Kubernetes, API-compatible with Calico Enterprise.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("validate")(validate.validate)
app.command("explain")(explain.explain)
app.add_typer(selector.app, name="selector")
app.command("controller")(daemons.controller)
app.command("agent")(daemons.agent)
app.command("gateway")(daemons.gateway)
app.add_typer(lab.app, name="lab")  # lab_ha adds its commands to lab.app
app.command("apply")(resources.apply)
app.command("annotate")(resources.annotate)
app.command("get")(resources.get)
app.add_typer(kube.app, name="kube")
app.command("install-manifests")(kube.install_manifests)


def main() -> None:
    """Console-script entry point."""
    app()
