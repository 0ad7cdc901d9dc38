"""`egressgw selector ...`: try Calico selectors from the command line.

Parses arguments, calls egressgw.selector, prints. A bad selector is reported on stderr
with a caret under the offending position and exit status 2.
"""

from __future__ import annotations

from typing import Annotated

import typer

from egressgw.selector import Selector, SelectorParseError, parse

app = typer.Typer(
    name="selector",
    help="Parse, canonicalise and evaluate Calico label selectors.",
    no_args_is_help=True,
)

USAGE_ERROR = 2


@app.command()
def match(
    selector: Annotated[str, typer.Argument(help="A Calico selector, e.g. \"app == 'web'\".")],
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="A label as key=value; repeat for more."),
    ] = None,
) -> None:
    """Print `true` if the labels match SELECTOR, else `false`."""
    labels = dict(_split_label(item) for item in label or [])
    typer.echo("true" if _parse_or_exit(selector).matches(labels) else "false")


@app.command()
def canonical(
    selector: Annotated[str, typer.Argument(help="A Calico selector.")],
) -> None:
    """Print SELECTOR in Calico's canonical form."""
    typer.echo(str(_parse_or_exit(selector)))


@app.command()
def tree(
    selector: Annotated[str, typer.Argument(help="A Calico selector.")],
) -> None:
    """Draw SELECTOR's syntax tree, to check precedence and grouping."""
    typer.echo(_parse_or_exit(selector).tree(), nl=False)


def _split_label(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep:
        raise typer.BadParameter(f"expected key=value, got {item!r}", param_hint="--label")
    return key, value


def _parse_or_exit(text: str) -> Selector:
    try:
        return parse(text)
    except SelectorParseError as error:
        typer.echo(f"error: invalid selector: {error.message}", err=True)
        typer.echo(_pointer(text, error.position), err=True)
        raise typer.Exit(USAGE_ERROR) from None


def _pointer(text: str, position: int) -> str:
    """The line of `text` holding `position`, with a caret under that column."""
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    line = text[start : len(text) if end < 0 else end]
    # Keep tabs so the caret lines up however the terminal expands them.
    padding = "".join("\t" if char == "\t" else " " for char in text[start:position])
    return f"  {line}\n  {padding}^ (position {position})"
