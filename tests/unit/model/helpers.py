"""Small builders shared by the model tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import pytest

from egressgw.model import ManifestError, Resource
from egressgw.model.parsing import from_dict

R = TypeVar("R", bound=Resource)

API = {
    "EgressGateway": "operator.tigera.io/v1",
    "Namespace": "v1",
    "Pod": "v1",
    "Node": "v1",
}


def manifest(kind: str, name: str = "x", spec: Any = None, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": API.get(kind, "projectcalico.org/v3"),
        "kind": kind,
        "metadata": {"name": name},
    }
    if spec is not None:
        obj["spec"] = spec
    return obj | extra


def load(kind: str, spec: Any = None, **extra: Any) -> Resource:
    return from_dict(manifest(kind, spec=spec, **extra))


def refusal(kind: str, spec: Any = None, **extra: Any) -> tuple[str, str]:
    """(field, message) of the single problem `spec` has."""
    with pytest.raises(ManifestError) as caught:
        load(kind, spec, **extra)
    problems = caught.value.problems
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0].field, problems[0].message


def by_name(resources: Iterable[R]) -> dict[str, R]:
    return {r.metadata.name: r for r in resources}
