"""A text drawing of a selector's tree, in the layout of Calico's `calico-selector` tool.

For humans debugging precedence and AND/OR grouping; it is not a stable format and
nothing should parse it. Pure string building only.
"""

from __future__ import annotations

from typing import assert_never

from egressgw.selector.nodes import All, And, Compare, Global, Has, InSet, Node, Not, Or


def render_tree(node: Node) -> str:
    """One line per node, children under their parent, ending with a newline."""
    lines = [_describe(node)]
    _add_children(node, "", lines)
    return "\n".join(lines) + "\n"


def _add_children(node: Node, indent: str, lines: list[str]) -> None:
    children = _children(node)
    for index, child in enumerate(children):
        lines.append(f"{indent}+-{_describe(child)}")
        last = index == len(children) - 1
        _add_children(child, indent + ("  " if last else "| "), lines)


def _children(node: Node) -> tuple[Node, ...]:
    match node:
        case Not(operand):
            return (operand,)
        case And(operands) | Or(operands):
            return operands
    return ()


def _describe(node: Node) -> str:
    match node:
        case All():
            return "all()"
        case Global():
            return "global()"
        case Has(label):
            return f"has({label})"
        case Compare(label, op, value):
            return f"({label} {op.value} {_go_quote(value)})"
        case InSet(label, values, negated):
            return f"({label} {'not in' if negated else 'in'} {{{','.join(values)}}})"
        case Not():
            return "NOT"
        case And():
            return "AND"
        case Or():
            return "OR"
        case _:
            assert_never(node)


def _go_quote(value: str) -> str:
    """Approximately Go's %q: backslash-escape quotes, backslashes and control characters."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return f'"{escaped}"'
