"""The per-field global() rule (selector-grammar.md §6) on top of the grammar."""

from __future__ import annotations

import pytest

from egressgw.selector import GlobalUse, SelectorParseError, validate_field

CASES = [
    # (text, use, accepted)
    ("global()", GlobalUse.ANY, True),
    ("global() && all()", GlobalUse.ANY, True),
    ("global() &&", GlobalUse.ANY, False),
    ("global()", GlobalUse.FORBIDDEN, False),
    ("  global( )  ", GlobalUse.FORBIDDEN, False),
    ('a == "global("', GlobalUse.FORBIDDEN, False),  # a plain substring test, as CEL does
    ('a == "global"', GlobalUse.FORBIDDEN, True),
    ("has(a)", GlobalUse.FORBIDDEN, True),
    ("b ==", GlobalUse.FORBIDDEN, False),
    ("global()", GlobalUse.ALONE, True),
    ("  global()  ", GlobalUse.ALONE, True),
    ("global( )", GlobalUse.ALONE, True),
    (" global() && all()", GlobalUse.ALONE, False),
    ("global()||all()", GlobalUse.ALONE, False),
    ("!global()", GlobalUse.ALONE, False),
    ('a == "global("', GlobalUse.ALONE, False),
    ("projectcalico.org/name == 'test'", GlobalUse.ALONE, True),
    ("this is not valid", GlobalUse.ALONE, False),
    ("", GlobalUse.ALONE, True),
]


@pytest.mark.parametrize(
    ("text", "use", "accepted"), CASES, ids=[f"{u.value}:{t!r}" for t, u, _ in CASES]
)
def test_validate_field(text: str, use: GlobalUse, accepted: bool) -> None:
    if accepted:
        validate_field(text, use)
    else:
        with pytest.raises(SelectorParseError) as raised:
            validate_field(text, use)
        assert 0 <= raised.value.position <= len(text)


def test_forbidden_global_points_at_it() -> None:
    with pytest.raises(SelectorParseError) as raised:
        validate_field("has(a) || global()", GlobalUse.FORBIDDEN)
    assert raised.value.position == 10
