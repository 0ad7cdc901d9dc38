"""Manifest text and dicts -> typed resources, with problems that point at file and line.

`parse_documents` reads multi-document YAML (JSON is YAML too) from a string; `from_dict`
turns one decoded object into a resource; `to_dict` writes one back. Every problem in the
input is collected before `ManifestError` is raised. This module must not read files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from egressgw.model.bgp import BGPConfiguration, BGPPeer
from egressgw.model.bgpfilter import BGPFilter
from egressgw.model.core import Namespace, Node, Pod
from egressgw.model.felix import FelixConfiguration
from egressgw.model.fields import FieldError
from egressgw.model.ippool import IPPool, IPReservation
from egressgw.model.meta import Resource
from egressgw.model.networkset import GlobalNetworkSet
from egressgw.model.operator import EgressGateway
from egressgw.model.policy import EgressGatewayPolicy
from egressgw.model.problems import Loc, ManifestError, Origin, Problem, format_path

__all__ = [
    "KINDS",
    "RESOURCE_CLASSES",
    "ManifestError",
    "Problem",
    "from_dict",
    "parse_documents",
    "to_dict",
]

RESOURCE_CLASSES: tuple[type[Resource], ...] = (
    EgressGateway,
    EgressGatewayPolicy,
    IPPool,
    IPReservation,
    BGPConfiguration,
    BGPPeer,
    BGPFilter,
    FelixConfiguration,
    GlobalNetworkSet,
    Namespace,
    Pod,
    Node,
)
KINDS: Mapping[str, type[Resource]] = {
    cls.model_fields["kind"].default: cls for cls in RESOURCE_CLASSES
}
_MAX_DEPTH = 64  # guards the line index against recursive YAML aliases
_MAX_NODES = 200_000  # and against alias bombs, which expand exponentially when walked
_MESSAGES = {"missing": "required field is missing", "extra_forbidden": "unknown field"}


def parse_documents(text: str, source: str) -> list[Resource]:
    """Every resource in a multi-document YAML/JSON text, in order; `kind: List` is expanded."""
    resources: list[Resource] = []
    problems: list[Problem] = []
    loader = yaml.SafeLoader(_untabbed_json(text))
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                data = loader.construct_document(node)
                _take_document(node, data, source, resources, problems)
    except yaml.MarkedYAMLError as err:
        problems.append(_syntax_problem(err, source, text))
    except yaml.YAMLError as err:
        problems.append(_problem(source, None, {}, "", f"YAML error: {err}"))
    finally:
        loader.dispose()
    if problems:
        raise ManifestError(problems)
    return resources


def _untabbed_json(text: str) -> str:
    """JSON may indent with tabs, which YAML refuses. A raw tab in JSON can only be
    whitespace (inside strings it must be escaped), so spaces mean the same, on the same lines."""
    return text.replace("\t", " ") if text.lstrip().startswith(("{", "[")) else text


def _syntax_problem(err: yaml.MarkedYAMLError, source: str, text: str) -> Problem:
    mark = err.problem_mark
    # An error found only at the end of the text (an unclosed bracket or quote) is best
    # shown where the construct began.
    if mark is None or (mark.line >= text.count("\n") and err.context_mark is not None):
        mark = err.context_mark
    line = None if mark is None else mark.line + 1
    message = ", ".join(part for part in (err.context, err.problem) if part)
    return _problem(source, line, {}, "", f"YAML syntax error: {message}")


def from_dict(obj: Mapping[str, Any], source: str = "<dict>", line: int | None = None) -> Resource:
    """One decoded manifest object as a typed resource; raises ManifestError."""
    return _validate(obj, Origin(source, line))


def to_dict(res: Resource) -> dict[str, Any]:
    """The manifest form of a resource (JSON names, no nulls); `from_dict` reads it back."""
    return res.model_dump(mode="json", by_alias=True, exclude_none=True)


def _take_document(
    node: yaml.Node, data: Any, source: str, resources: list[Resource], problems: list[Problem]
) -> None:
    if data is None:  # an empty document, as kubectl skips it
        return
    line = node.start_mark.line + 1
    try:
        lines, duplicates = _index(node)
    except _TooLarge:
        problems.append(_problem(source, line, _identity(data), "", _TooLarge.message))
        return
    origin = Origin(source, line, lines)
    if duplicates:
        ident = _identity(data)
        problems.extend(
            _problem(source, lines[loc], ident, format_path(loc), "duplicate key")
            for loc in duplicates
        )
        return
    for obj, item_origin in _expand(data, origin):
        try:
            resources.append(_validate(obj, item_origin))
        except ManifestError as err:
            problems.extend(err.problems)


def _expand(data: Any, origin: Origin) -> list[tuple[Any, Origin]]:
    """A `kind: List` document's items, each with its own origin; else the document itself."""
    if not (isinstance(data, dict) and data.get("kind") == "List"):
        return [(data, origin)]
    items = data.get("items") or []
    if not isinstance(items, list):
        return [({"kind": "List", "items": items}, origin)]  # refused later, with its line
    return [(item, _sub_origin(origin, ("items", i))) for i, item in enumerate(items)]


def _sub_origin(origin: Origin, prefix: Loc) -> Origin:
    cut = len(prefix)
    lines = {loc[cut:]: n for loc, n in origin.field_lines.items() if loc[:cut] == prefix}
    return Origin(origin.source, origin.field_lines.get(prefix, origin.line), lines)


def _validate(obj: Any, origin: Origin) -> Resource:
    if not isinstance(obj, Mapping):
        raise ManifestError([_located(origin, {}, (), "a manifest must be a mapping (an object)")])
    cls = _resource_class(obj, origin)
    try:
        resource = cls.model_validate(dict(obj))
    except ValidationError as err:
        ident = _identity(obj)
        raise ManifestError(_from_pydantic(e, ident, origin) for e in err.errors()) from None
    return resource.located(origin)


def _resource_class(obj: Mapping[str, Any], origin: Origin) -> type[Resource]:
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    ident = _identity(obj)
    if not isinstance(kind, str) or not kind:
        raise ManifestError([_located(origin, ident, ("kind",), "kind is required")])
    if kind == "List":
        message = "a List's items must be a list of objects; read it with parse_documents"
        raise ManifestError([_located(origin, ident, ("items",), message)])
    cls = KINDS.get(kind)
    if cls is None:
        known = ", ".join(sorted(KINDS))
        message = f"unknown kind {kind!r} (apiVersion {api_version!r}); known kinds: {known}"
        raise ManifestError([_located(origin, ident, ("kind",), message)])
    expected = cls.model_fields["api_version"].default
    if api_version != expected:
        message = f"unknown apiVersion {api_version!r} for kind {kind}: expected {expected!r}"
        raise ManifestError([_located(origin, ident, ("apiVersion",), message)])
    return cls


def _from_pydantic(error: ErrorDetails, ident: Mapping[str, str | None], origin: Origin) -> Problem:
    loc: Loc = tuple(error["loc"])
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, FieldError):
        loc, message = loc + cause.loc, cause.message
    elif isinstance(cause, Exception):
        message = str(cause)
    else:
        message = _MESSAGES.get(error["type"], error["msg"])
    return _located(origin, ident, loc, message)


def _located(origin: Origin, ident: Mapping[str, str | None], loc: Loc, message: str) -> Problem:
    return _problem(origin.source, origin.line_of(loc), ident, format_path(loc), message)


def _problem(
    source: str, line: int | None, ident: Mapping[str, str | None], field: str, message: str
) -> Problem:
    return Problem(
        source=source,
        line=line,
        kind=ident.get("kind"),
        namespace=ident.get("namespace"),
        name=ident.get("name"),
        field=field,
        message=message,
    )


def _identity(obj: Any) -> dict[str, str | None]:
    """Kind, namespace and name as written, for naming the object in a problem."""
    if not isinstance(obj, Mapping):
        return {}
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    kind = _str_or_none(obj.get("kind"))
    namespace = _str_or_none(meta.get("namespace"))
    cls = KINDS.get(kind or "")
    if namespace is None and cls is not None and cls.namespaced:
        namespace = "default"
    return {"kind": kind, "namespace": namespace, "name": _str_or_none(meta.get("name"))}


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class _TooLarge(Exception):
    message = f"document too large: more than {_MAX_NODES} values once aliases are expanded"


def _index(root: yaml.Node) -> tuple[dict[Loc, int], list[Loc]]:
    """The 1-based line of every field and list item under `root`, and any duplicate keys."""
    lines: dict[Loc, int] = {(): root.start_mark.line + 1}
    duplicates: list[Loc] = []
    stack: list[tuple[Loc, yaml.Node]] = [((), root)]
    while stack:
        loc, node = stack.pop()
        if len(loc) > _MAX_DEPTH:
            continue
        if len(lines) > _MAX_NODES:
            raise _TooLarge
        for child, line, value in _children(loc, node):
            if child in lines and isinstance(child[-1], str):
                duplicates.append(child)  # not descended: its fields would all repeat too
                lines[child] = line
                continue
            lines[child] = line
            stack.append((child, value))
    return lines, duplicates


def _children(loc: Loc, node: yaml.Node) -> list[tuple[Loc, int, yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        return [
            ((*loc, str(key.value)), key.start_mark.line + 1, value)
            for key, value in node.value
            if isinstance(key, yaml.ScalarNode)
        ]
    if isinstance(node, yaml.SequenceNode):
        return [((*loc, i), item.start_mark.line + 1, item) for i, item in enumerate(node.value)]
    return []
