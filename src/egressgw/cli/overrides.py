"""Annotation overrides given on the command line (`--annotate`), applied to a ResourceSet."""

from __future__ import annotations

from collections.abc import Sequence

from egressgw.model import parsing
from egressgw.model.resourceset import ResourceSet

_KINDS = {"namespace": "Namespace", "ns": "Namespace", "pod": "Pod", "po": "Pod"}


class OverrideError(ValueError):
    """A malformed --annotate value or one naming a missing object."""


def apply(resources: ResourceSet, specs: Sequence[str]) -> ResourceSet:
    """`resources` with every `KIND/[NS/]NAME:KEY=VALUE` (or `KEY-`) annotation applied."""
    for spec in specs:
        resources = _apply_one(resources, spec)
    return resources


def _apply_one(resources: ResourceSet, spec: str) -> ResourceSet:
    target, sep, change = spec.partition(":")
    parts = target.split("/")
    kind = _KINDS.get(parts[0].lower())
    if not sep or kind is None or len(parts) not in (2, 3):
        raise OverrideError(f"--annotate {spec!r}: expected namespace/NAME:KEY=VALUE or pod/NS/NAME:KEY=VALUE")
    namespace = parts[1] if len(parts) == 3 else None
    if kind == "Pod" and namespace is None:
        namespace = "default"
    found = next(
        (r for r in resources.all
         if r.kind == kind and r.metadata.name == parts[-1] and r.metadata.namespace == namespace),
        None,
    )
    if found is None:
        raise OverrideError(f"--annotate {spec!r}: no {kind} {'/'.join(parts[1:])} in the manifests")
    body = parsing.to_dict(found)
    meta = body.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    if change.endswith("-") and "=" not in change:
        annotations.pop(change[:-1], None)
    else:
        key, eq, value = change.partition("=")
        if not eq or not key:
            raise OverrideError(f"--annotate {spec!r}: expected KEY=VALUE or KEY-")
        annotations[key] = value
    meta["annotations"] = annotations
    return resources.with_resource(parsing.from_dict(body, source="--annotate"))
