"""Checks that need more than one object: pool references, filter names, pool overlaps.

These are the operator's EgressGateway validation (reference §2.4), Calico's check that a
BGPPeer's filters exist, and the IPPool overlap check of Calico's client. Each function
returns problems; none raises, so one bad object never hides another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from egressgw.model.bgp import BGPPeer
from egressgw.model.bgpfilter import BGPFilter
from egressgw.model.ippool import IPPool
from egressgw.model.meta import Resource
from egressgw.model.operator import EgressGateway, EgressGatewayIPPool
from egressgw.model.problems import Problem


def cross_object_problems(resources: Iterable[Resource]) -> list[Problem]:
    """Every reference problem among `resources` (which hold no duplicate keys)."""
    items = list(resources)
    pools = {r.metadata.name: r for r in items if isinstance(r, IPPool)}
    filters = {r.metadata.name for r in items if isinstance(r, BGPFilter)}
    problems = _pool_overlaps(pools)
    for res in items:
        if isinstance(res, EgressGateway):
            problems += _gateway_pools(res, pools)
        elif isinstance(res, BGPPeer):
            problems += _peer_filters(res, filters)
    return problems


def resolve_pool(ref: EgressGatewayIPPool, pools: Mapping[str, IPPool]) -> IPPool | None:
    """The pool an EgressGateway entry names: by name, else the pool with exactly that CIDR."""
    if ref.name is not None:
        return pools.get(ref.name)
    return next((p for p in pools.values() if p.spec.cidr == ref.cidr), None)


def _gateway_pools(gateway: EgressGateway, pools: Mapping[str, IPPool]) -> list[Problem]:
    problems: list[Problem] = []
    native_ip = gateway.spec.aws is not None and gateway.spec.aws.native_ip == "Enabled"
    for index, ref in enumerate(gateway.spec.ip_pools):
        loc = ("spec", "ipPools", index)
        pool = resolve_pool(ref, pools)
        if pool is None and ref.name is not None:
            problems.append(gateway.problem((*loc, "name"), f"IPPool {ref.name!r} not found"))
        elif pool is None:
            message = f"IPPool matching CIDR = {ref.cidr} not present"
            problems.append(gateway.problem((*loc, "cidr"), message))
        elif ref.cidr is not None and ref.cidr != pool.spec.cidr:
            problems.append(gateway.problem((*loc, "cidr"), "IPPool CIDR does not match with name"))
        elif native_ip and not pool.spec.aws_subnet_id:
            message = (
                f"AWS subnet ID must be set when NativeIP is enabled"
                f" (IPPool {pool.metadata.name!r} has no awsSubnetID)"
            )
            problems.append(gateway.problem(loc, message))
    return problems


def _peer_filters(peer: BGPPeer, filters: set[str]) -> list[Problem]:
    return [
        peer.problem(("spec", "filters", index), f"BGPFilter {name!r} not found")
        for index, name in enumerate(peer.spec.filters)
        if name not in filters
    ]


def _pool_overlaps(pools: Mapping[str, IPPool]) -> list[Problem]:
    """Pools must not overlap; the later pool by name is the one reported."""
    ordered = sorted(pools.values(), key=lambda p: p.metadata.name)
    problems: list[Problem] = []
    for later_index, later in enumerate(ordered):
        for earlier in ordered[:later_index]:
            if _overlap(earlier, later):
                message = (
                    f"IPPool({later.metadata.name}) CIDR overlaps with"
                    f" IPPool({earlier.metadata.name}) CIDR {earlier.spec.cidr}"
                )
                problems.append(later.problem(("spec", "cidr"), message))
    return problems


def _overlap(a: IPPool, b: IPPool) -> bool:
    x, y = a.spec.cidr, b.spec.cidr
    return x.network_address in y or y.network_address in x
