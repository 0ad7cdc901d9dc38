"""The parts every resource shares: model configuration, `ObjectMeta`, `ResourceKey`, `Resource`.

Models are frozen pydantic v2 models whose attributes are snake_case with the Kubernetes/Calico
JSON name as alias, so `model_dump(mode="json", by_alias=True, exclude_none=True)` writes a
manifest back. This module must not know any particular kind.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, NamedTuple, Self

from pydantic import BaseModel, ConfigDict, PrivateAttr, StrictInt, model_validator
from pydantic.alias_generators import to_camel

from egressgw.model.fields import DNSLabel, DNSSubdomain, FieldError
from egressgw.model.problems import Loc, Origin, Problem, format_path


class Frozen(BaseModel):
    """Base of every model: immutable, camelCase aliases, unknown fields refused."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
    )


class Passthrough(Frozen):
    """For objects we read only partly (FelixConfiguration spec, Pod spec...): extras are kept."""

    model_config = ConfigDict(extra="allow")


class ObjectMeta(Frozen):
    """Kubernetes object metadata; the bookkeeping fields are kept so objects round-trip."""

    name: DNSSubdomain
    namespace: DNSLabel | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    uid: str | None = None
    resource_version: str | None = None
    generation: StrictInt | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    deletion_grace_period_seconds: StrictInt | None = None
    generate_name: str | None = None
    finalizers: list[str] | None = None
    owner_references: list[dict[str, Any]] | None = None
    managed_fields: list[dict[str, Any]] | None = None


class ResourceKey(NamedTuple):
    """Identity of a resource: no two objects in a ResourceSet share one."""

    kind: str
    namespace: str | None
    name: str

    def sort_key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace or "", self.name)

    def __str__(self) -> str:
        return "/".join(p for p in (self.kind, self.namespace, self.name) if p)


class Resource(Frozen):
    """A top-level object. Subclasses pin `kind` and `api_version` with Literal defaults.

    Namespaced kinds default `metadata.namespace` to "default" (as kubectl does); a
    cluster-scoped kind given a namespace is refused. `origin` remembers the file and lines
    it came from; it is provenance, not value, so equality ignores it.
    """

    namespaced: ClassVar[bool] = False

    kind: str
    api_version: str
    metadata: ObjectMeta

    _origin: Origin | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _default_namespace(cls, data: Any) -> Any:
        if not cls.namespaced or not isinstance(data, dict):
            return data
        meta = data.get("metadata")
        if isinstance(meta, dict) and meta.get("namespace") is None:
            return {**data, "metadata": {**meta, "namespace": "default"}}
        if isinstance(meta, ObjectMeta) and meta.namespace is None:
            return {**data, "metadata": meta.model_copy(update={"namespace": "default"})}
        return data

    @model_validator(mode="after")
    def _cluster_scoped(self) -> Resource:
        if not self.namespaced and self.metadata.namespace is not None:
            raise FieldError(
                ("metadata", "namespace"), f"{self.kind} is cluster-scoped: remove the namespace"
            )
        return self

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(self.kind, self.metadata.namespace, self.metadata.name)

    @property
    def origin(self) -> Origin | None:
        return self._origin

    def problem(self, loc: Loc, message: str) -> Problem:
        """A problem about field `loc` of this resource, at the line it was read from."""
        origin = self._origin or Origin("<input>")
        return Problem(
            source=origin.source,
            line=origin.line_of(loc),
            kind=self.kind,
            namespace=self.metadata.namespace,
            name=self.metadata.name,
            field=format_path(loc),
            message=message,
        )

    def located(self, origin: Origin) -> Self:
        """A copy of this resource that remembers where it was read (used by the parser)."""
        copy = self.model_copy()
        copy._origin = origin
        return copy

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseModel):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # dict-valued fields make resources unhashable
