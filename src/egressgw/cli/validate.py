"""`egressgw validate -f PATH...`: check manifests offline, as the API would on apply.

Parses and renders only: reading and checking live in egressgw.manifests and egressgw.model.
On success prints a per-kind summary and exits 0; otherwise prints every problem, one line
each (`FILE:LINE: Kind[/namespace]/name: field: message`), to stderr and exits 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from egressgw.manifests import load
from egressgw.model import ManifestError

app = typer.Typer(add_completion=False, help="Check egress gateway manifests offline.")

FilenameOption = Annotated[
    list[Path],
    typer.Option(
        "-f",
        "--filename",
        help="A manifest file, a directory (read recursively) or - for stdin. Repeatable.",
    ),
]


@app.command()
def validate(filenames: FilenameOption) -> None:
    """Check every object in the given manifests, and the references between them."""
    try:
        resources = load(filenames)
    except ManifestError as err:
        errors = Console(stderr=True, highlight=False, soft_wrap=True)
        for problem in err.problems:
            errors.print(str(problem), markup=False)
        errors.print(f"{len(err.problems)} problem(s) found", markup=False)
        raise typer.Exit(code=1) from None
    Console(highlight=False).print(_summary(resources.counts()))


def _summary(counts: Mapping[str, int]) -> Table:
    table = Table(title=f"{sum(counts.values())} object(s) valid")
    table.add_column("Kind")
    table.add_column("Count", justify="right")
    for kind, count in counts.items():
        table.add_row(kind, str(count))
    return table
