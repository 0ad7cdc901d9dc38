"""`BGPFilter` (projectcalico.org/v3, cluster-scoped): ordered import/export rules per family.

Holds the model and every rule of calico-validation.md §2. Evaluation (first match wins,
default Accept) belongs to the BGP plan, not here.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, StrictInt, model_validator

from egressgw.model.fields import ASNumber, Cidr, Community, FieldError
from egressgw.model.meta import Frozen, Resource

PRIORITY_MAX = 2147483646
_INTERFACE = re.compile(r"\*|[a-zA-Z0-9_.*-]{1,15}")


def _interface(text: str) -> str:
    if not _INTERFACE.fullmatch(text):
        raise ValueError(
            f"{text!r} is not an interface name: up to 15 of letters, digits, '_', '.', '-', '*'"
        )
    return text


class PrefixLength(Frozen):
    min: StrictInt | None = None
    max: StrictInt | None = None


class BGPFilterCommunities(Frozen):
    values: list[Community] = Field(min_length=1, max_length=1)


class AddCommunity(Frozen):
    value: Community


class PrependASPath(Frozen):
    prefix: list[ASNumber] = Field(min_length=1, max_length=10)


class SetPriority(Frozen):
    value: StrictInt = Field(ge=1, le=PRIORITY_MAX)


class BGPFilterOperation(Frozen):
    """Exactly one action applied to an accepted route."""

    add_community: AddCommunity | None = None
    prepend_as_path: PrependASPath | None = Field(default=None, alias="prependASPath")
    set_priority: SetPriority | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> BGPFilterOperation:
        given = [op for op in (self.add_community, self.prepend_as_path, self.set_priority) if op]
        if len(given) != 1:
            raise ValueError(
                "an operation must have exactly one of addCommunity, prependASPath, setPriority"
            )
        return self


class BGPFilterRule(Frozen):
    """One rule; the V4/V6 subclasses fix the address family and prefix-length limits."""

    version: ClassVar[int] = 4

    action: Literal["Accept", "Reject"]
    cidr: Cidr | None = None
    match_operator: Literal["Equal", "NotEqual", "In", "NotIn"] | None = None
    prefix_length: PrefixLength | None = None
    source: Literal["RemotePeers"] | None = None
    interface: Annotated[str, AfterValidator(_interface)] | None = None
    peer_type: Literal["eBGP", "iBGP"] | None = None
    communities: BGPFilterCommunities | None = None
    as_path_prefix: list[ASNumber] = []
    priority: StrictInt | None = Field(default=None, ge=1, le=PRIORITY_MAX)
    operations: list[BGPFilterOperation] | None = Field(default=None, min_length=1, max_length=10)

    @model_validator(mode="after")
    def _rules(self) -> BGPFilterRule:
        self._check_cidr()
        self._check_prefix_length()
        if self.operations and self.action != "Accept":
            raise FieldError(("operations",), "operations are only allowed with action Accept")
        return self

    def _check_cidr(self) -> None:
        if self.cidr is not None and self.cidr.version != self.version:
            raise FieldError(("cidr",), f"{self.cidr} is not an IPv{self.version} CIDR")
        if (self.cidr is None) != (self.match_operator is None):
            raise FieldError(
                ("matchOperator" if self.cidr else "cidr",),
                "cidr and matchOperator must both be set or both be empty",
            )

    def _check_prefix_length(self) -> None:
        if self.prefix_length is None:
            return
        if self.cidr is None:
            raise FieldError(("prefixLength",), "prefixLength requires cidr")
        limit = 32 if self.version == 4 else 128
        for name in ("min", "max"):
            value = getattr(self.prefix_length, name)
            if value is not None and not 0 <= value <= limit:
                raise FieldError(("prefixLength", name), f"must be between 0 and {limit}")


class BGPFilterRuleV4(BGPFilterRule):
    version: ClassVar[int] = 4


class BGPFilterRuleV6(BGPFilterRule):
    version: ClassVar[int] = 6


class BGPFilterSpec(Frozen):
    export_v4: list[BGPFilterRuleV4] = []
    import_v4: list[BGPFilterRuleV4] = []
    export_v6: list[BGPFilterRuleV6] = []
    import_v6: list[BGPFilterRuleV6] = []


class BGPFilter(Resource):
    namespaced: ClassVar[bool] = False

    kind: Literal["BGPFilter"] = "BGPFilter"
    api_version: Literal["projectcalico.org/v3"] = "projectcalico.org/v3"
    spec: BGPFilterSpec = BGPFilterSpec()
