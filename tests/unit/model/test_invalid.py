"""Every file in tests/testdata/invalid is refused, with the field and line it announces.

Each file says what it expects in a header comment, `# expect: FIELD | MESSAGE PART` (FIELD
`-` for none), and marks the offending line with `# <-`. Each file holds exactly one mistake.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from egressgw.manifests import load
from egressgw.model import ManifestError, Problem

INVALID = Path(__file__).resolve().parents[2] / "testdata" / "invalid"
CASES = sorted(INVALID.glob("*.yaml"))


def _expectation(path: Path) -> tuple[str, str, int]:
    lines = path.read_text().splitlines()
    header = next(line for line in lines if line.startswith("# expect: "))
    field, message = (part.strip() for part in header.removeprefix("# expect: ").split("|", 1))
    marked = [n for n, line in enumerate(lines, start=1) if line.endswith("# <-")]
    assert len(marked) == 1, f"{path.name} must mark exactly one line with '# <-'"
    return ("" if field == "-" else field), message, marked[0]


def _problems(path: Path) -> tuple[Problem, ...]:
    with pytest.raises(ManifestError) as caught:
        load([path])
    return caught.value.problems


def test_there_is_a_case_for_each_refusal() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_invalid_manifest_is_refused_at_the_marked_field_and_line(path: Path) -> None:
    field, message, line = _expectation(path)

    problems = _problems(path)

    assert len(problems) == 1, "\n".join(map(str, problems))
    (problem,) = problems
    assert (problem.field, problem.line) == (field, line), str(problem)
    assert message in problem.message
    assert problem.source == str(path)
    assert str(problem).startswith(f"{path}:{line}: ")
