"""`ResourceSet`: a validated, immutable snapshot of every object egressgw works from.

`ResourceSet.build` is the one way in: it refuses duplicate keys and broken references, all
reported together, so a batch with one bad object yields nothing partial. The result does not
depend on input order. This module must not read files or talk to a store.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import TypeVar

from egressgw.model.bgp import BGPConfiguration, BGPPeer
from egressgw.model.bgpfilter import BGPFilter
from egressgw.model.core import Namespace, Node, Pod
from egressgw.model.felix import FelixConfiguration, default_felix_configuration
from egressgw.model.ippool import IPPool, IPReservation
from egressgw.model.meta import Resource, ResourceKey
from egressgw.model.networkset import GlobalNetworkSet
from egressgw.model.operator import EgressGateway
from egressgw.model.policy import EgressGatewayPolicy
from egressgw.model.problems import ManifestError, Problem
from egressgw.model.references import cross_object_problems

R = TypeVar("R", bound=Resource)
GLOBAL_NAME = "default"  # the cluster-wide FelixConfiguration / BGPConfiguration


def _sort_key(res: Resource) -> tuple[str, str, str]:
    """`res.key.sort_key()`, without building the ResourceKey (10,000s per reconcile)."""
    return (res.kind, res.metadata.namespace or "", res.metadata.name)


def _order(res: Resource) -> tuple[tuple[str, str, str], str, int]:
    origin = res.origin
    where = ("", 0) if origin is None else (origin.source, origin.line or 0)
    return (res.key.sort_key(), *where)


@dataclass(frozen=True)
class ResourceSet:
    """Resources sorted by key. Build with `ResourceSet.build`, never by hand."""

    all: tuple[Resource, ...] = ()

    @classmethod
    def build(cls, resources: Iterable[Resource]) -> ResourceSet:
        """A checked set of `resources`; raises ManifestError listing every problem."""
        ordered = sorted(resources, key=_order)
        unique, problems = _deduplicate(ordered)
        problems += cross_object_problems(unique)
        if problems:
            raise ManifestError(problems)
        return cls(tuple(unique))

    @classmethod
    def trusted(cls, resources: Iterable[Resource]) -> ResourceSet:
        """A set of resources already checked when they were written (a store's contents):
        sorted by key, not checked again. For processes that follow a store."""
        return cls(tuple(sorted(resources, key=_sort_key)))

    def get(self, key: ResourceKey) -> Resource | None:
        return self._by_key.get(key)

    def with_resource(self, res: Resource) -> ResourceSet:
        """This set with `res` added or replacing the object of the same key, re-checked."""
        return ResourceSet.build([*(r for r in self.all if r.key != res.key), res])

    def without(self, key: ResourceKey) -> ResourceSet:
        """This set without the object `key` (if present), re-checked."""
        return ResourceSet.build(r for r in self.all if r.key != key)

    @cached_property
    def _by_key(self) -> Mapping[ResourceKey, Resource]:
        return MappingProxyType({r.key: r for r in self.all})

    @cached_property
    def _by_class(self) -> Mapping[type[Resource], tuple[Resource, ...]]:
        """The objects of each class, sorted by key: one pass instead of one per kind."""
        found: dict[type[Resource], list[Resource]] = defaultdict(list)
        for res in self.all:
            found[type(res)].append(res)
        return {kind: tuple(objs) for kind, objs in found.items()}

    def _named(self, kind: type[R]) -> Mapping[str, R]:
        return MappingProxyType({r.metadata.name: r for r in self._listed(kind)})

    def _listed(self, kind: type[R]) -> tuple[R, ...]:
        groups = [objs for cls, objs in self._by_class.items() if issubclass(cls, kind)]
        if len(groups) > 1:  # subclasses of `kind`: merged in key order
            return tuple(r for r in self.all if isinstance(r, kind))
        return groups[0] if groups else ()  # type: ignore[return-value]  # all are `kind`s

    # Kinds other objects name (a policy annotation, a pod's namespace, a peer's filters)
    # come as name -> object mappings; every other kind as a tuple sorted by key.

    @cached_property
    def egress_gateways(self) -> tuple[EgressGateway, ...]:
        """Sorted by (namespace, name)."""
        return self._listed(EgressGateway)

    @cached_property
    def policies(self) -> Mapping[str, EgressGatewayPolicy]:
        return self._named(EgressGatewayPolicy)

    @cached_property
    def ip_pools(self) -> tuple[IPPool, ...]:
        return self._listed(IPPool)

    @cached_property
    def ip_reservations(self) -> tuple[IPReservation, ...]:
        return self._listed(IPReservation)

    @cached_property
    def bgp_configuration(self) -> BGPConfiguration | None:
        """The cluster-wide `default` BGPConfiguration, if there is one."""
        return self._named(BGPConfiguration).get(GLOBAL_NAME)

    @cached_property
    def bgp_configurations(self) -> Mapping[str, BGPConfiguration]:
        """All of them, including per-node `node.<name>` objects."""
        return self._named(BGPConfiguration)

    @cached_property
    def bgp_peers(self) -> tuple[BGPPeer, ...]:
        return self._listed(BGPPeer)

    @cached_property
    def bgp_filters(self) -> Mapping[str, BGPFilter]:
        return self._named(BGPFilter)

    @cached_property
    def felix_configuration(self) -> FelixConfiguration:
        """The `default` FelixConfiguration, or one with every default when there is none."""
        found = self._named(FelixConfiguration).get(GLOBAL_NAME)
        return found if found is not None else default_felix_configuration()

    @cached_property
    def global_network_sets(self) -> tuple[GlobalNetworkSet, ...]:
        return self._listed(GlobalNetworkSet)

    @cached_property
    def namespaces(self) -> Mapping[str, Namespace]:
        return self._named(Namespace)

    @cached_property
    def pods(self) -> tuple[Pod, ...]:
        """Sorted by (namespace, name)."""
        return self._listed(Pod)

    @cached_property
    def nodes(self) -> tuple[Node, ...]:
        return self._listed(Node)

    def counts(self) -> Mapping[str, int]:
        """How many objects of each kind, by kind name (for summaries)."""
        found: dict[str, int] = defaultdict(int)
        for res in self.all:
            found[res.kind] += 1
        return dict(sorted(found.items()))


def _deduplicate(ordered: list[Resource]) -> tuple[list[Resource], list[Problem]]:
    """The first object of each key, and a problem for every later one."""
    first: dict[ResourceKey, Resource] = {}
    problems: list[Problem] = []
    for res in ordered:
        earlier = first.get(res.key)
        if earlier is None:
            first[res.key] = res
        else:
            problems.append(res.problem((), f"duplicate {res.key}: {_where(earlier)}"))
    return list(first.values()), problems


def _where(res: Resource) -> str:
    origin = res.origin
    if origin is None:
        return "defined twice"
    return f"first defined at {origin.source}" + ("" if origin.line is None else f":{origin.line}")
