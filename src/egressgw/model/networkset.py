"""`GlobalNetworkSet` (projectcalico.org/v3, cluster-scoped): labelled external networks.

Holds the model only; policy use of the labels is outside egressgw's scope.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from egressgw.model.fields import CidrOrIP
from egressgw.model.meta import Frozen, Resource


class GlobalNetworkSetSpec(Frozen):
    nets: list[CidrOrIP] = []
    allowed_egress_domains: list[str] = []


class GlobalNetworkSet(Resource):
    namespaced: ClassVar[bool] = False

    kind: Literal["GlobalNetworkSet"] = "GlobalNetworkSet"
    api_version: Literal["projectcalico.org/v3"] = "projectcalico.org/v3"
    spec: GlobalNetworkSetSpec = GlobalNetworkSetSpec()
