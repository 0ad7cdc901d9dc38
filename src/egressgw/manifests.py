"""Read manifest files and directories into resources (the file-reading edge of egressgw.model).

A path may be a file, a directory (read recursively: *.yaml, *.yml and *.json in sorted
order) or `-` for standard input. Every problem in every file is collected before
`ManifestError` is raised. Parsing and validation themselves live in egressgw.model.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from egressgw.model import ManifestError, Problem, Resource, ResourceSet
from egressgw.model.parsing import parse_documents

MANIFEST_SUFFIXES = frozenset({".yaml", ".yml", ".json"})
STDIN = Path("-")


def manifest_files(path: Path) -> list[Path]:
    """`path` itself if it is a file (or `-`), else the manifests under it, sorted."""
    if path == STDIN or not path.is_dir():
        return [path]
    found = sorted(p for p in path.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file())
    if not found:
        raise ManifestError([_unreadable(path, "no *.yaml, *.yml or *.json files in directory")])
    return found


def read_resources(paths: Iterable[Path]) -> list[Resource]:
    """Every resource in `paths`, in file order; raises ManifestError naming each problem."""
    resources: list[Resource] = []
    problems: list[Problem] = []
    for file in _files(paths, problems):
        try:
            resources += parse_documents(_read(file), str(file))
        except ManifestError as err:
            problems += err.problems
    if problems:
        raise ManifestError(problems)
    return resources


def _files(paths: Iterable[Path], problems: list[Problem]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        try:
            files += manifest_files(path)
        except ManifestError as err:
            problems += err.problems
    return files


def load(paths: Iterable[Path]) -> ResourceSet:
    """The checked ResourceSet of everything in `paths`; raises ManifestError."""
    return ResourceSet.build(read_resources(paths))


def _read(file: Path) -> str:
    if file == STDIN:
        return sys.stdin.read()
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ManifestError([_unreadable(file, reason)]) from None


def _unreadable(file: Path, reason: str) -> Problem:
    return Problem(str(file), None, None, None, None, "", f"cannot read: {reason}")
