"""CustomResourceDefinitions for our kinds, generated from the same pydantic models.

Pure. `crds()` gives one `apiextensions.k8s.io/v1` CRD per kind we own (see `api.OUR_KINDS`),
under the group and version the `ApiMap` gives (the reference groups by default).
`openapi_schema(cls, kind)` turns the model's JSON schema into a *structural* OpenAPI v3
schema, as Kubernetes requires: references inlined, every node typed, optional fields not
nullable, `additionalProperties: false` dropped (the API server prunes unknown fields, and
`kubectl`'s strict field validation refuses them), open objects marked
`x-kubernetes-preserve-unknown-fields`, formats limited to those Kubernetes checks, and
defaults kept only for the kinds whose reference CRDs default them. The rules the models
check in Python are then merged in from `crdrules`. This module must not do I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from egressgw.kube import crdrules
from egressgw.kube.api import OUR_KINDS, ApiMap, ApiResource
from egressgw.model.meta import Resource
from egressgw.model.parsing import KINDS

Schema = dict[str, Any]
KUBERNETES_FORMATS = frozenset({"cidr", "ipv4", "ipv6", "date-time", "uri", "hostname", "byte"})
_DROP = frozenset({"title", "$defs", "additionalProperties", "const"})
PART_OF = {"app.kubernetes.io/part-of": "egressgw"}


class UnsupportedSchema(ValueError):
    """The model uses a construct a structural schema cannot express (a model change)."""


def crds(apis: ApiMap | None = None, kinds: Iterable[str] | None = None) -> list[Schema]:
    """The CRDs of `kinds` (default: all we own), sorted by name."""
    mapping = apis or ApiMap()
    wanted = [r.kind for r in OUR_KINDS] if kinds is None else list(kinds)
    found = [crd(KINDS[kind], mapping[kind]) for kind in wanted]
    return sorted(found, key=lambda c: str(c["metadata"]["name"]))


def crd(cls: type[Resource], res: ApiResource) -> Schema:
    """One CRD for the model class `cls`, served and stored at `res`."""
    version: Schema = {
        "name": res.version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": openapi_schema(cls, res.kind)},
    }
    if res.status:
        version["subresources"] = {"status": {}}
    if res.kind in crdrules.COLUMNS:
        version["additionalPrinterColumns"] = copy.deepcopy(crdrules.COLUMNS[res.kind])
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{res.plural}.{res.group}", "labels": dict(PART_OF)},
        "spec": {
            "group": res.group,
            "names": {
                "kind": res.kind,
                "listKind": f"{res.kind}List",
                "plural": res.plural,
                "singular": res.kind.lower(),
            },
            "scope": "Namespaced" if res.namespaced else "Cluster",
            "versions": [version],
        },
    }


def openapi_schema(cls: type[Resource], kind: str) -> Schema:
    """The structural schema of a whole object of `cls`."""
    source = cls.model_json_schema(by_alias=True, mode="validation")
    defs: Mapping[str, Schema] = source.get("$defs", {})
    keep_defaults = kind in crdrules.DEFAULTED_KINDS
    properties: dict[str, Schema] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
    }
    for name in ("spec", "status"):
        if name in source["properties"]:
            properties[name] = _convert(source["properties"][name], defs, keep_defaults, name)
    schema: Schema = {"type": "object", "properties": properties}
    if description := source.get("description"):
        schema["description"] = description
    if "spec" in source.get("required", []):
        schema["required"] = ["spec"]
    for path, keywords in crdrules.RULES.get(kind, {}).items():
        _merge(schema, path, keywords)
    return schema


def _convert(node: Schema, defs: Mapping[str, Schema], keep_defaults: bool, where: str) -> Schema:
    node = _resolved(node, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROP or (key == "default" and not _keep_default(value, keep_defaults)):
            continue
        if key == "format" and value not in KUBERNETES_FORMATS:
            continue
        if key == "properties":
            out[key] = {k: _convert(v, defs, keep_defaults, f"{where}.{k}") for k, v in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs, keep_defaults, f"{where}[]")
        else:
            out[key] = copy.deepcopy(value)
    _open_objects(node, out, defs, keep_defaults, where)
    if "const" in node:
        out["enum"] = [node["const"]]
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if not any(k in out for k in ("type", "x-kubernetes-int-or-string")):
        raise UnsupportedSchema(f"{where}: no type in {node}")
    return out


def _open_objects(
    node: Schema, out: Schema, defs: Mapping[str, Schema], keep_defaults: bool, where: str
) -> None:
    extra = node.get("additionalProperties")
    if extra is True or (node.get("type") == "object" and not node.get("properties") and extra is None):
        out["x-kubernetes-preserve-unknown-fields"] = True
    elif isinstance(extra, dict) and extra:
        out["additionalProperties"] = _convert(extra, defs, keep_defaults, f"{where}.*")


def _keep_default(value: Any, keep_defaults: bool) -> bool:
    return keep_defaults and isinstance(value, str | int | float | bool)


def _resolved(node: Schema, defs: Mapping[str, Schema]) -> Schema:
    """`node` with `$ref`s inlined and `anyOf: [X, null]` (an optional field) turned into X."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolved(merged, defs)
    if "anyOf" in node:
        choices = [c for c in node["anyOf"] if c != {"type": "null"}]
        if len(choices) != 1:
            raise UnsupportedSchema(f"a union of several types: {node['anyOf']}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return _resolved({**_resolved(choices[0], defs), **rest}, defs)
    return node


def _merge(schema: Schema, path: str, keywords: Mapping[str, Any]) -> None:
    node = schema
    for part in path.split("."):
        name, items = (part[:-2], True) if part.endswith("[]") else (part, False)
        try:
            node = node["properties"][name]
            if items:
                node = node["items"]
        except KeyError:
            raise UnsupportedSchema(f"rule path {path!r}: no field {part!r}") from None
    for key, value in keywords.items():
        if value is None:
            node.pop(key, None)
        elif key == "x-kubernetes-validations":
            node[key] = node.get(key, []) + copy.deepcopy(value)
        else:
            node[key] = copy.deepcopy(value)
