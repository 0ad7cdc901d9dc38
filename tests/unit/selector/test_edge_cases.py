"""Edge cases derived from Calico's code (selector-grammar.md §7) and our API's promises."""

from __future__ import annotations

import pickle

import pytest

from egressgw.selector import ALL, SelectorParseError, parse, validate
from egressgw.selector.nodes import And, Compare, Has, Not, Op

# (input, canonical form), from the §7 table and §1-§4 prose.
VALID = [
    ("\ta == 'b'\t", 'a == "b"'),
    ("a in {}", "a in {}"),
    ("a not in{}", "a not in {}"),
    ('a in {"x",}', 'a in {"x"}'),
    ("a in {'b', 'a', 'b'}", 'a in {"a", "b"}'),
    ("has( a )", "has(a)"),
    ("all( )", "all()"),
    ("global(\t)", "global()"),
    ('a notin {"x"}', 'a not in {"x"}'),
    ('a not  in {"x"}', 'a not in {"x"}'),
    ("a starts   with 'x'", 'a starts with "x"'),
    ("not in {'x'}", 'not in {"x"}'),
    ("in in {'in'}", 'in in {"in"}'),
    ("has == 'x'", 'has == "x"'),
    ("all == 'x'", 'all == "x"'),
    ('contains contains "contains"', 'contains contains "contains"'),
    ('a == ""', 'a == ""'),
    ("x contains''", 'x contains ""'),
    ('a == "it\'s"', 'a == "it\'s"'),
    ("a == 'say \"hi\"'", "a == 'say \"hi\"'"),
    ("a == 'multi\nline'", 'a == "multi\nline"'),
    ("a == 'back\\slash'", 'a == "back\\slash"'),
    ("1 == '2'", '1 == "2"'),
    ("-a == 'b'", '-a == "b"'),
    ("a//b == 'c'", 'a//b == "c"'),
    ("a.b/c-d_e == 'x'", 'a.b/c-d_e == "x"'),
    ("a == 'é'", 'a == "é"'),
    ("(a == 'b' && c == 'd') && e == 'f'", '((a == "b" && c == "d") && e == "f")'),
    ("a == 'b' || c == 'd' && e == 'f'", '(a == "b" || (c == "d" && e == "f"))'),
    ("!a == 'b' && c == 'd'", '(!a == "b" && c == "d")'),
    ("((a == 'b'))", 'a == "b"'),
    ("!!has(a)", "has(a)"),
    ("!! ! has(a)", "!has(a)"),
    # Calico keeps !(!x) as two NOTs (printed "!!x", which re-parses to x); we cancel them.
    ("!(!has(a))", "has(a)"),
    ("a=='b'&&c!='d'||e in{'f'}", '((a == "b" && c != "d") || e in {"f"})'),
    ("   ", "all()"),
    ("a" * 512 + " == 'x'", "a" * 512 + ' == "x"'),
]

# (input, position of the error)
INVALID = [
    ("a == 'b'\n", 8),
    ("a\r== 'b'", 1),
    ("a in {,}", 6),
    ('a in {"x",,"y"}', 10),
    ('a in {"x" "y"}', 10),
    ("has (a)", 4),
    ("all ( )", 4),
    ("é == 'a'", 0),
    ("a CONTAINS 'x'", 2),
    ("a == 'b' c == 'd'", 9),
    ("has(a) == 'b'", 7),
    ("a == 'b')", 8),
    ("!!", 2),
    ("!", 1),
    ("()", 1),
    ("( )", 2),
    ("a not in x", 2),
    ("b == b", 5),
    ("'b1' == b", 0),
    ("a in 'x'", 5),
    ("a == 'b' && ", 12),
    ("a" * 513 + " == 'x'", 0),
    ("has(" + "a" * 513 + ")", 4),
    ("a = 'b'", 2),
    ('"unterminated', 0),
    ("has(a b)", 6),
    ("(" * 101 + "all()" + ")" * 101, 100),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[repr(t)[:40] for t, _ in VALID])
def test_valid_edge_case(text: str, expected: str) -> None:
    assert str(parse(text)) == expected
    assert str(parse(expected)) == expected


@pytest.mark.parametrize(("text", "position"), INVALID, ids=[repr(t)[:40] for t, _ in INVALID])
def test_invalid_edge_case(text: str, position: int) -> None:
    with pytest.raises(SelectorParseError) as raised:
        validate(text)
    assert raised.value.position == position
    assert raised.value.message in str(raised.value)


def test_deep_but_allowed_nesting() -> None:
    assert str(parse("(" * 100 + "all()" + ")" * 100)) == "all()"


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("a in {}", {"a": "x"}, False),
        ("a not in {}", {}, True),
        ("a contains ''", {"a": ""}, True),
        ("a contains ''", {}, False),
        ("a starts with ''", {"a": "x"}, True),
        ("has(a)", {"a": ""}, True),
        ("a == ''", {"a": ""}, True),
        ("a == ''", {}, False),
        ("a != ''", {}, True),
        ("A == 'x'", {"a": "x"}, False),
        ("a == 'X'", {"a": "x"}, False),
        ("!all()", {}, False),
        ("!global()", {"a": "b"}, False),
        ("all() && !all()", {}, False),
        ("!all() || has(a)", {"a": "1"}, True),
        ("!(a == 'x' || b == 'y')", {"a": "z"}, True),
        ("!(a == 'x' && b == 'y' && c == 'z')", {"a": "x", "b": "y", "c": "z"}, False),
        ("a == 'x' || b == 'y' || c == 'z'", {"c": "z"}, True),
        ("!a ends with 'x'", {}, True),
        ("!a in {'x'}", {}, True),
        ("!a not in {'x'}", {}, False),
    ],
)
def test_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse(text).matches(labels) is expected


def test_all_constant() -> None:
    assert ALL == parse("") == parse(" all( ) ")
    assert ALL.matches({})
    assert ALL.unique_id == "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"


def test_equality_hash_and_cache() -> None:
    first, second = parse("a == 'b' && has(c)"), parse('(a == "b"  &&has( c ))')
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second}) == 1
    assert first != parse("has(c) && a == 'b'")
    assert parse("a == 'b' && has(c)") is first
    assert first != "a == 'b' && has(c)"


def test_selector_is_immutable_and_picklable() -> None:
    selector = parse("a in {'x', 'y'}")
    with pytest.raises(AttributeError):
        selector.matches = lambda labels: True
    restored = pickle.loads(pickle.dumps(selector))
    assert restored == selector
    assert restored.matches({"a": "y"})


def test_error_is_picklable() -> None:
    error = pickle.loads(pickle.dumps(SelectorParseError("expected ')'", 3)))
    assert (error.message, error.position) == ("expected ')'", 3)


def test_root_tree_and_label_names() -> None:
    selector = parse("a == 'b' && !has(c) || d in {}")
    assert selector.label_names == {"a", "c", "d"}
    root = parse("a == 'b' && !has(c)").root
    assert root == And((Compare("a", Op.EQ, "b"), Not(Has("c"))))


def test_label_prefix_must_keep_labels_parseable() -> None:
    with pytest.raises(ValueError, match="not allowed"):
        parse("has(a)").with_label_prefix("bad prefix ")
    with pytest.raises(ValueError, match="longer"):
        parse("!has(a)").with_label_prefix("p" * 512)
    assert str(parse("!has(a)").with_label_prefix("pcns.")) == "!has(pcns.a)"
