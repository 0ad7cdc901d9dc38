"""`egressgw validate`: summary and exit 0 when valid, one line per problem and exit 1 if not."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from egressgw.cli.validate import app

ROOT = Path(__file__).resolve().parents[3]
runner = CliRunner()


def test_valid_examples_print_a_summary() -> None:
    result = runner.invoke(app, ["-f", str(ROOT / "examples" / "aws-public-ip")])

    assert result.exit_code == 0, result.output
    assert "EgressGateway" in result.stdout and "IPPool" in result.stdout
    assert "33 object(s) valid" in result.stdout
    assert result.stderr == ""


def test_several_paths_and_long_option(tmp_path: Path) -> None:
    azure = ROOT / "examples" / "azure-hub-spoke"
    result = runner.invoke(
        app, ["--filename", str(azure / "egw-tenants.yaml"), "-f", str(azure / "netshoot.yaml")]
    )

    assert result.exit_code == 0, result.output
    assert "7 object(s) valid" in result.stdout


def test_every_problem_goes_to_stderr_one_line_each(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\n"
        "spec:\n  cidr: 10.99.0.1/29\n---\n"
        "apiVersion: projectcalico.org/v3\nkind: Widget\nmetadata:\n  name: w\n"
    )

    result = runner.invoke(app, ["-f", str(bad)])

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{bad}:6: IPPool/p: spec.cidr: 10.99.0.1/29 is not strictly masked (did you mean 10.99.0.0/29?)",
        f"{bad}:9: Widget/w: kind: unknown kind 'Widget' (apiVersion 'projectcalico.org/v3');"
        " known kinds: BGPConfiguration, BGPFilter, BGPPeer, EgressGateway, EgressGatewayPolicy,"
        " FelixConfiguration, GlobalNetworkSet, IPPool, IPReservation, Namespace, Node, Pod",
        "2 problem(s) found",
    ]


def test_stdin_is_read_for_dash() -> None:
    text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tenant0-egw\n"
    result = runner.invoke(app, ["-f", "-"], input=text)

    assert result.exit_code == 0, result.output
    assert "1 object(s) valid" in result.stdout


def test_a_filename_is_required() -> None:
    assert runner.invoke(app, []).exit_code == 2
