"""Property tests: random trees, printed with random but faithful spelling, must survive
parsing, canonical printing and re-parsing, and match like a naive reference evaluator."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from egressgw.selector import Selector, SelectorParseError, parse
from egressgw.selector.nodes import (
    All,
    And,
    Compare,
    Global,
    Has,
    InSet,
    Node,
    Not,
    Op,
    Or,
    canonical,
    negate,
)

# Labels include the words the lexer treats specially, to exercise "no reserved words".
LABELS = [
    "a",
    "b",
    "app",
    "k8s-app",
    "projectcalico.org/name",
    "1",
    "-x",
    "a//b",
    "in",
    "not",
    "has",
    "all",
    "global",
    "contains",
    "starts",
    "startswith",
    "with",
]
VALUES = ["", "a", "b", "ab", "ba", "'", '"', "x y", "é", "\\", "\n", "{,}", "&&"]

labels = st.sampled_from(LABELS)
values = st.sampled_from(VALUES)
label_maps = st.dictionaries(labels, values, max_size=6)

leaves: st.SearchStrategy[Node] = st.one_of(
    st.just(All()),
    st.just(Global()),
    st.builds(Has, labels),
    st.builds(Compare, labels, st.sampled_from(Op), values),
    st.builds(InSet, labels, st.lists(values, max_size=4).map(tuple), st.booleans()),
)


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    operands = st.lists(children, min_size=2, max_size=4).map(tuple)
    return st.one_of(children.map(negate), operands.map(And), operands.map(Or))


trees = st.recursive(leaves, _extend, max_leaves=12)
settings.register_profile("selector", deadline=None)


def reference(node: Node, labels: Mapping[str, str]) -> bool:
    """Calico's semantics (grammar §3), written as plainly as possible."""
    match node:
        case All() | Global():
            return True
        case Has(label):
            return label in labels
        case Compare(label, op, value):
            return _compare(op, labels.get(label), value)
        case InSet(label, members, negated):
            found = label in labels and labels[label] in members
            return not found if negated else found
        case Not(operand):
            return not reference(operand, labels)
        case And(operands):
            return all(reference(child, labels) for child in operands)
        case Or(operands):
            return any(reference(child, labels) for child in operands)
    raise AssertionError(node)


def _compare(op: Op, actual: str | None, value: str) -> bool:
    if op is Op.NE:
        return actual != value
    if actual is None:
        return False
    checks: dict[Op, Callable[[str, str], bool]] = {
        Op.EQ: str.__eq__,
        Op.CONTAINS: lambda a, v: v in a,
        Op.STARTS_WITH: str.startswith,
        Op.ENDS_WITH: str.endswith,
    }
    return checks[op](actual, value)


SPELLINGS = {
    Op.EQ: ["=="],
    Op.NE: ["!="],
    Op.CONTAINS: ["contains"],
    Op.STARTS_WITH: ["starts with", "startswith", "starts \t with"],
    Op.ENDS_WITH: ["ends with", "endswith", "ends  with"],
}
WORDS = {Op.CONTAINS, Op.STARTS_WITH, Op.ENDS_WITH}


class Spelling:
    """Prints a tree with randomly chosen, but equivalent, surface syntax."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def ws(self, required: bool = False) -> str:
        return self.draw(st.sampled_from([" ", "\t", "  "] if required else ["", " ", "\t"]))

    def quote(self, value: str) -> str:
        quotes = [q for q in "\"'" if q not in value]
        return (q := self.draw(st.sampled_from(quotes))) + value + q

    def node(self, node: Node) -> str:
        match node:
            case All() | Global():
                return f"{'all' if isinstance(node, All) else 'global'}({self.ws()})"
            case Has(label):
                return f"has({self.ws()}{label}{self.ws()})"
            case Compare(label, op, value):
                spelled = self.draw(st.sampled_from(SPELLINGS[op]))
                gap = self.ws(required=op in WORDS)
                return f"{label}{gap}{spelled}{self.ws()}{self.quote(value)}"
            case InSet(label, members, negated):
                operator = self.set_operator(negated)
                return f"{label}{self.ws(True)}{operator}{self.ws()}{self.set_body(members)}"
            case Not(operand):
                bangs = self.draw(st.sampled_from(["!", "!!!", "! !!", "!\t"]))
                return bangs + self.operand(operand, must_wrap=isinstance(operand, And | Or))
            case And(operands) | Or(operands):
                joiner = "&&" if isinstance(node, And) else "||"
                # Same-kind children need parentheses to stay nested; OR under AND for precedence.
                wrap = (And, Or) if isinstance(node, And) else (Or,)
                parts = [self.operand(child, isinstance(child, wrap)) for child in operands]
                return f"{self.ws()}{joiner}{self.ws()}".join(parts)
        raise AssertionError(node)

    def operand(self, node: Node, must_wrap: bool) -> str:
        text = self.node(node)
        if must_wrap or self.draw(st.booleans()):
            text = f"({self.ws()}{text}{self.ws()})"
        return text

    def set_operator(self, negated: bool) -> str:
        return self.draw(st.sampled_from(["not in", "notin", "not  in"])) if negated else "in"

    def set_body(self, members: tuple[str, ...]) -> str:
        # Shuffled, with duplicates: the canonical form sorts and de-duplicates.
        extra = self.draw(st.lists(st.sampled_from(members), max_size=2)) if members else []
        spelled = self.draw(st.permutations([*members, *extra]))
        items = [self.quote(value) for value in spelled]
        trailing = "," if self.draw(st.booleans()) and items else ""
        return "{" + self.ws() + f"{self.ws()},{self.ws()}".join(items) + trailing + self.ws() + "}"


@st.composite
def spelled_trees(draw: st.DrawFn) -> tuple[Node, str]:
    tree = draw(trees)
    spelling = Spelling(draw)
    return tree, spelling.ws() + spelling.operand(tree, must_wrap=False) + spelling.ws()


@settings(settings.get_profile("selector"))
@given(spelled_trees(), st.lists(label_maps, max_size=8))
def test_any_spelling_parses_to_the_canonical_form(
    case: tuple[Node, str], maps: list[dict[str, str]]
) -> None:
    tree, text = case
    selector = parse(text)
    assert str(selector) == canonical(tree)
    assert selector.root == tree
    for labels in maps:
        assert selector.matches(labels) is reference(tree, labels)


@settings(settings.get_profile("selector"))
@given(trees, st.lists(label_maps, max_size=8))
def test_canonical_form_round_trips(tree: Node, maps: list[dict[str, str]]) -> None:
    selector = Selector(tree)
    reparsed = parse(str(selector))
    assert reparsed == selector
    assert reparsed.root == tree
    assert str(parse(str(reparsed))) == str(reparsed)
    for labels in maps:
        assert reparsed.matches(labels) is selector.matches(labels) is reference(tree, labels)


@settings(settings.get_profile("selector"))
@given(trees, label_maps)
def test_label_restrictions_hold_for_every_match(tree: Node, labels: dict[str, str]) -> None:
    selector = Selector(tree)
    if not selector.matches(labels):
        return
    for label, fact in selector.label_restrictions().items():
        assert not fact.must_be_present or label in labels
        assert not fact.must_be_absent or label not in labels
        allowed = fact.must_have_one_of_values
        assert allowed is None or labels.get(label) in allowed


@settings(settings.get_profile("selector"))
@given(trees, label_maps, st.sampled_from(["pcns.", "x/", "visited/"]))
def test_label_prefix_moves_every_label(tree: Node, labels: dict[str, str], prefix: str) -> None:
    prefixed = Selector(tree).with_label_prefix(prefix)
    moved = {prefix + key: value for key, value in labels.items()}
    assert prefixed.matches(moved) is reference(tree, labels)
    assert parse(str(prefixed)) == prefixed


FRAGMENTS = [
    " ",
    "\t",
    "\n",
    *[
        "a",
        "b",
        "==",
        "!=",
        "!",
        "&&",
        "||",
        "(",
        ")",
        "{",
        "}",
        ",",
        "'x'",
        '"y"',
        "in",
        "not",
        "contains",
        "starts",
        "with",
        "endswith",
    ],
    *["has(", "all(", "global(", "=", "&", "|", "é", "'", '"', "%"],
]


@settings(settings.get_profile("selector"))
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join) | st.text(max_size=20))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        selector = parse(text)
    except SelectorParseError as error:
        assert 0 <= error.position <= len(text)
        return
    assert str(parse(str(selector))) == str(selector)
    assert isinstance(selector.matches({"a": "x", "b": "y"}), bool)
