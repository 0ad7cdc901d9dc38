"""The selector syntax tree, its canonical text and the label-prefix rewrite.

Holds frozen node types and pure functions over them (selector-grammar.md §2, §4). It
must not evaluate selectors (see matcher.py) nor parse text (see parser.py).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import assert_never


class Op(enum.Enum):
    """Label-versus-string comparisons; each value is the operator's canonical spelling."""

    EQ = "=="
    NE = "!="
    CONTAINS = "contains"
    STARTS_WITH = "starts with"
    ENDS_WITH = "ends with"


@dataclass(frozen=True, slots=True)
class All:
    """`all()`: matches everything."""


@dataclass(frozen=True, slots=True)
class Global:
    """`global()`: matches everything; a marker for non-namespaced resources (§6)."""


@dataclass(frozen=True, slots=True)
class Has:
    """`has(label)`: the label is present, whatever its value."""

    label: str


@dataclass(frozen=True, slots=True)
class Compare:
    """`label <op> "value"`."""

    label: str
    op: Op
    value: str


@dataclass(frozen=True, slots=True)
class InSet:
    """`label in {...}`, or `label not in {...}` when `negated`.

    `values` is always sorted (Go byte order equals Python str order) and de-duplicated.
    """

    label: str
    values: tuple[str, ...]
    negated: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(sorted(set(self.values))))


@dataclass(frozen=True, slots=True)
class Not:
    """`!operand`. Never wraps another Not: use `negate`."""

    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    """Conjunction of two or more operands, evaluated left to right."""

    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Disjunction of two or more operands, evaluated left to right."""

    operands: tuple[Node, ...]


Node = All | Global | Has | Compare | InSet | Not | And | Or


def negate(node: Node) -> Node:
    """`!node`, cancelling a double negation.

    Calico collapses `!!x` but keeps `!(!x)` as two NOTs, which prints as `!!x` and so
    re-parses to a different tree; cancelling here keeps canonical forms idempotent.
    """
    return node.operand if isinstance(node, Not) else Not(node)


def quote(value: str) -> str:
    """Calico's quoting: single quotes only when the value contains a double quote."""
    return f"'{value}'" if '"' in value else f'"{value}"'


def canonical(node: Node) -> str:
    """Calico's `Selector.String()` for the tree rooted at `node`."""
    match node:
        case All():
            return "all()"
        case Global():
            return "global()"
        case Has(label):
            return f"has({label})"
        case Compare(label, op, value):
            return f"{label} {op.value} {quote(value)}"
        case InSet(label, values, negated):
            members = ", ".join(quote(value) for value in values)
            return f"{label} {'not in' if negated else 'in'} {{{members}}}"
        case Not(operand):
            return "!" + canonical(operand)
        case And(operands):
            return "(" + " && ".join(canonical(child) for child in operands) + ")"
        case Or(operands):
            return "(" + " || ".join(canonical(child) for child in operands) + ")"
        case _:
            assert_never(node)


def with_label_prefix(node: Node, prefix: str) -> Node:
    """The same tree with every label name replaced by `prefix + name` (Calico's PrefixVisitor)."""
    match node:
        case All() | Global():
            return node
        case Has(label):
            return Has(prefix + label)
        case Compare() | InSet():
            return dataclasses.replace(node, label=prefix + node.label)
        case Not(operand):
            return Not(with_label_prefix(operand, prefix))
        case And(operands):
            return And(tuple(with_label_prefix(child, prefix) for child in operands))
        case Or(operands):
            return Or(tuple(with_label_prefix(child, prefix) for child in operands))
        case _:
            assert_never(node)


def label_names(node: Node) -> frozenset[str]:
    """Every label name the tree mentions: the only labels its result can depend on."""
    match node:
        case All() | Global():
            return frozenset()
        case Has(label) | Compare(label) | InSet(label):
            return frozenset({label})
        case Not(operand):
            return label_names(operand)
        case And(operands) | Or(operands):
            return frozenset().union(*(label_names(child) for child in operands))
        case _:
            assert_never(node)
