"""Per-label lower bounds implied by a selector (Calico's LabelRestrictions, grammar §5).

An index can use them to skip label maps that cannot match. They are necessary
conditions only, never sufficient. Pure functions over the syntax tree; no evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import reduce

from egressgw.selector.nodes import And, Compare, Has, InSet, Node, Not, Op, Or


@dataclass(frozen=True, slots=True)
class LabelRestriction:
    """What any matching label map must satisfy for one label.

    `must_have_one_of_values`: None means any value; an empty set means nothing matches.
    """

    must_be_present: bool = False
    must_be_absent: bool = False
    must_have_one_of_values: frozenset[str] | None = None


Restrictions = dict[str, LabelRestriction]

_PRESENT = LabelRestriction(must_be_present=True)
_ABSENT = LabelRestriction(must_be_absent=True)
_PRESENCE_OPS = (Op.CONTAINS, Op.STARTS_WITH, Op.ENDS_WITH)


def label_restrictions(node: Node) -> Restrictions:
    """The restrictions for each label that has any; empty when none is restricted."""
    match node:
        case Has(label):
            return {label: _PRESENT}
        case Compare(label, Op.EQ, value):
            return {label: LabelRestriction(True, False, frozenset({value}))}
        case Compare(label, op) if op in _PRESENCE_OPS:
            return {label: _PRESENT}
        case InSet(label, values, negated=False):
            return {label: LabelRestriction(True, False, frozenset(values))}
        case Not(Has(label)):
            return {label: _ABSENT}
        case And(operands):
            return reduce(_both, _each(operands))
        case Or(operands):
            return reduce(_either, _each(operands))
    # Other negations, !=, not in, all() and global() promise nothing.
    return {}


def _each(operands: Iterable[Node]) -> list[Restrictions]:
    return [label_restrictions(child) for child in operands]


def _both(left: Restrictions, right: Restrictions) -> Restrictions:
    """Facts of a conjunction: everything either side requires."""
    merged = dict(left)
    for label, fact in right.items():
        other = merged.get(label)
        merged[label] = fact if other is None else _intersect(other, fact)
    return merged


def _intersect(a: LabelRestriction, b: LabelRestriction) -> LabelRestriction:
    values = a.must_have_one_of_values
    if values is None:
        values = b.must_have_one_of_values
    elif b.must_have_one_of_values is not None:
        values = values & b.must_have_one_of_values
    return LabelRestriction(
        a.must_be_present or b.must_be_present,
        a.must_be_absent or b.must_be_absent,
        values,
    )


def _either(left: Restrictions, right: Restrictions) -> Restrictions:
    """Facts of a disjunction: only what every branch requires."""
    merged: Restrictions = {}
    for label, fact in left.items():
        if label not in right:
            continue
        combined = _union(fact, right[label])
        if combined != LabelRestriction():
            merged[label] = combined
    return merged


def _union(a: LabelRestriction, b: LabelRestriction) -> LabelRestriction:
    values = None
    if a.must_have_one_of_values is not None and b.must_have_one_of_values is not None:
        values = a.must_have_one_of_values | b.must_have_one_of_values
    return LabelRestriction(
        a.must_be_present and b.must_be_present,
        a.must_be_absent and b.must_be_absent,
        values,
    )
