"""Just enough of Helm's Go templates to render our generated chart without `helm`.

Supports what the chart uses and nothing else: `{{ .Values.a.b }}`,
`{{ .Values.a.b | quote }}`, `{{- if .Values.a.b }}` / `{{- else }}` / `{{- end }}`, and
`{{-` / `-}}` whitespace trimming. Values print as Go prints them (true/false, integers).
Anything else raises, so the chart cannot quietly grow a construct this does not check.
"""

from __future__ import annotations

import json
import re
from typing import Any

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
_VALUE = re.compile(r"\.Values((?:\.[A-Za-z0-9_]+)+)")


def _lookup(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for part in path.strip(".").split("."):
        node = node[part]
    return node


def _go(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _expression(text: str, values: dict[str, Any]) -> str:
    found = re.fullmatch(r"\.Values((?:\.[A-Za-z0-9_]+)+)(\s*\|\s*quote)?", text)
    if found is None:
        raise ValueError(f"unsupported template expression: {text!r}")
    value = _go(_lookup(values, found.group(1)))
    return json.dumps(value) if found.group(2) else value


def _tokens(template: str) -> list[tuple[str, str]]:
    """("text", ...) and ("action", ...) pieces with trimming applied."""
    pieces: list[tuple[str, str]] = []
    position, trim_next = 0, False
    for match in _ACTION.finditer(template):
        text = template[position:match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        pieces += [("text", text), ("action", match.group(2))]
        position, trim_next = match.end(), bool(match.group(3))
    tail = template[position:]
    pieces.append(("text", tail.lstrip() if trim_next else tail))
    return pieces


def render(template: str, values: dict[str, Any]) -> str:
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (this branch taken, enclosing branch active)

    def active() -> bool:
        return all(taken and outer for taken, outer in stack)

    for kind, text in _tokens(template):
        if kind == "text":
            if active():
                out.append(text)
        elif text.startswith("if "):
            condition = _VALUE.fullmatch(text[3:].strip())
            if condition is None:
                raise ValueError(f"unsupported condition: {text!r}")
            stack.append((bool(_lookup(values, condition.group(1))), active()))
        elif text == "else":
            taken, outer = stack.pop()
            stack.append((not taken, outer))
        elif text == "end":
            stack.pop()
        elif active():
            out.append(_expression(text, values))
    if stack:
        raise ValueError("unterminated if")
    return "".join(out)
