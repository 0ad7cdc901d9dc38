"""Compiles a syntax tree into one nested Python closure (selector-grammar.md §3).

Selectors are evaluated millions of times per decision, so the tree is walked once, here,
and evaluation is then plain function calls with no dispatch on node types. This module
must not parse or print selectors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import assert_never

from egressgw.selector.nodes import All, And, Compare, Global, Has, InSet, Node, Not, Op, Or

Labels = Mapping[str, str]
Matcher = Callable[[Labels], bool]


def _always(labels: Labels) -> bool:
    return True


def _never(labels: Labels) -> bool:
    return False


def compile_node(node: Node) -> Matcher:
    """A function telling whether a label map matches `node`."""
    match node:
        case All() | Global():
            return _always
        case Has(label):
            return _has(label)
        case Compare(label, op, value):
            return _COMPARISONS[op](label, value)
        case InSet(label, values, negated):
            return _not_in_set(label, values) if negated else _in_set(label, values)
        case Not(operand):
            return _negation(operand)
        case And(operands):
            return _conjunction([compile_node(child) for child in operands])
        case Or(operands):
            return _disjunction([compile_node(child) for child in operands])
        case _:
            assert_never(node)


# Every leaf reads the label once with .get(): None (absent) never equals a string,
# which gives Calico's "absent means false" for ==/in and "absent means true" for !=/not in.


def _has(label: str) -> Matcher:
    def match(labels: Labels) -> bool:
        return label in labels

    return match


def _lacks(label: str) -> Matcher:
    def match(labels: Labels) -> bool:
        return label not in labels

    return match


def _equal(label: str, value: str) -> Matcher:
    def match(labels: Labels) -> bool:
        return labels.get(label) == value

    return match


def _not_equal(label: str, value: str) -> Matcher:
    def match(labels: Labels) -> bool:
        return labels.get(label) != value

    return match


def _contains(label: str, value: str) -> Matcher:
    def match(labels: Labels) -> bool:
        actual = labels.get(label)
        return actual is not None and value in actual

    return match


def _starts_with(label: str, value: str) -> Matcher:
    def match(labels: Labels) -> bool:
        actual = labels.get(label)
        return actual is not None and actual.startswith(value)

    return match


def _ends_with(label: str, value: str) -> Matcher:
    def match(labels: Labels) -> bool:
        actual = labels.get(label)
        return actual is not None and actual.endswith(value)

    return match


_COMPARISONS: dict[Op, Callable[[str, str], Matcher]] = {
    Op.EQ: _equal,
    Op.NE: _not_equal,
    Op.CONTAINS: _contains,
    Op.STARTS_WITH: _starts_with,
    Op.ENDS_WITH: _ends_with,
}


def _in_set(label: str, values: Sequence[str]) -> Matcher:
    if not values:
        return _never
    members = frozenset(values)

    def match(labels: Labels) -> bool:
        return labels.get(label) in members

    return match


def _not_in_set(label: str, values: Sequence[str]) -> Matcher:
    if not values:
        return _always
    members = frozenset(values)

    def match(labels: Labels) -> bool:
        return labels.get(label) not in members

    return match


_FLIPPED = {Op.EQ: Op.NE, Op.NE: Op.EQ}


def _negation(operand: Node) -> Matcher:
    # `!a == "b"` is exactly `a != "b"` (and so on), which saves a call per evaluation.
    match operand:
        case Has(label):
            return _lacks(label)
        case Compare(op=op) if op in _FLIPPED:
            return compile_node(dataclasses.replace(operand, op=_FLIPPED[op]))
        case InSet(negated=negated):
            return compile_node(dataclasses.replace(operand, negated=not negated))
    inner = compile_node(operand)
    if inner is _always or inner is _never:
        return _never if inner is _always else _always

    def match(labels: Labels) -> bool:
        return not inner(labels)

    return match


def _conjunction(children: list[Matcher]) -> Matcher:
    children = [child for child in children if child is not _always]
    if _never in children:
        return _never
    return _all_of(children) if children else _always


def _disjunction(children: list[Matcher]) -> Matcher:
    children = [child for child in children if child is not _never]
    if _always in children:
        return _always
    return _any_of(children) if children else _never


def _all_of(children: list[Matcher]) -> Matcher:
    # Unrolled for the common small cases: a loop costs more than the calls it makes.
    if len(children) == 1:
        return children[0]
    if len(children) == 2:
        first, second = children

        def match2(labels: Labels) -> bool:
            return first(labels) and second(labels)

        return match2
    if len(children) == 3:
        first, second, third = children

        def match3(labels: Labels) -> bool:
            return first(labels) and second(labels) and third(labels)

        return match3
    operands = tuple(children)

    def match(labels: Labels) -> bool:
        # An explicit loop: all() over a generator costs ~3x more per evaluation.
        for child in operands:  # noqa: SIM110
            if not child(labels):
                return False
        return True

    return match


def _any_of(children: list[Matcher]) -> Matcher:
    if len(children) == 1:
        return children[0]
    if len(children) == 2:
        first, second = children

        def match2(labels: Labels) -> bool:
            return first(labels) or second(labels)

        return match2
    if len(children) == 3:
        first, second, third = children

        def match3(labels: Labels) -> bool:
            return first(labels) or second(labels) or third(labels)

        return match3
    operands = tuple(children)

    def match(labels: Labels) -> bool:
        for child in operands:  # noqa: SIM110 (see _all_of)
            if child(labels):
                return True
        return False

    return match
