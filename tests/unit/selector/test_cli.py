"""`egressgw selector ...`, driven through typer's CliRunner against the sub-app."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from egressgw.cli.selector import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "output"),
    [
        (["match", "egress-gateway == 'egw-4'", "--label", "egress-gateway=egw-4"], "true\n"),
        (["match", "egress-gateway == 'egw-4'", "-l", "egress-gateway=egw-5"], "false\n"),
        (["match", "a == 'x=y' && has(b)", "-l", "a=x=y", "-l", "b="], "true\n"),
        (["match", "!has(a)"], "true\n"),
        (["match", ""], "true\n"),
        (["canonical", "a in {'b', 'a'} && ! has( c )"], '(a in {"a", "b"} && !has(c))\n'),
        (["canonical", "  "], "all()\n"),
        (["tree", "a == 'b' || !has(c)"], 'OR\n+-(a == "b")\n+-NOT\n  +-has(c)\n'),
    ],
)
def test_success(args: list[str], output: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout == output


@pytest.mark.parametrize("command", ["match", "canonical", "tree"])
def test_parse_error_shows_position_on_stderr(command: str) -> None:
    result = runner.invoke(app, [command, "a == 'b' && c"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: invalid selector: expected an operator after label\n"
        "  a == 'b' && c\n"
        "               ^ (position 13)\n"
    )


def test_caret_keeps_tabs_and_finds_the_line() -> None:
    result = runner.invoke(app, ["canonical", "a == 'b\nc'\t&& %"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[1:] == ["  c'\t&& %", "    \t   ^ (position 14)"]


def test_malformed_label_option_is_a_usage_error() -> None:
    result = runner.invoke(app, ["match", "has(a)", "--label", "novalue"])
    assert result.exit_code == 2
    assert "key=value" in result.stderr
