"""What went wrong in a manifest, and where: `Problem`, `ManifestError` and `Origin`.

Holds plain values only. It must not read files or print: the CLI formats problems, the
parser and the resource set create them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Loc = tuple[str | int, ...]


def format_path(loc: Loc) -> str:
    """`("spec", "rules", 1, "cidr")` -> `spec.rules[1].cidr` (the JSON field path users see)."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


@dataclass(frozen=True)
class Origin:
    """Where a resource was read from: its file, its first line and the line of each field.

    `field_lines` maps a field's location (JSON names and list indexes) to its 1-based line,
    so checks made long after parsing can still point at the offending line.
    """

    source: str
    line: int | None = None
    field_lines: Mapping[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """The line of `loc`, or of its nearest ancestor that was written in the file."""
        for end in range(len(loc), 0, -1):
            found = self.field_lines.get(loc[:end])
            if found is not None:
                return found
        return self.line


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one manifest object (or with the file around it)."""

    source: str
    line: int | None
    kind: str | None
    namespace: str | None
    name: str | None
    field: str
    message: str

    def __str__(self) -> str:
        parts = [self.source if self.line is None else f"{self.source}:{self.line}"]
        if self.kind:
            parts.append("/".join(p for p in (self.kind, self.namespace, self.name) if p))
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)

    def sort_key(self) -> tuple[str, int, str, str, str, str, str]:
        """Order problems by file and line, so reports read top to bottom and are stable."""
        return (
            self.source,
            self.line or 0,
            self.kind or "",
            self.namespace or "",
            self.name or "",
            self.field,
            self.message,
        )


class ManifestError(Exception):
    """One or more problems; raised only after every problem in the input has been found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=Problem.sort_key))
        super().__init__("\n".join(str(p) for p in self.problems))
