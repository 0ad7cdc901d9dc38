"""The egress annotations users put on pods and namespaces, read into typed values.

Pure. Semantics (reference §4.1): a non-empty `egressGatewayPolicy` wins over the other
keys of the same object; an invalid `selector` or `namespaceSelector` makes the object's
egress configuration void (as if it had no annotation), and is reported; a bad
`maxNextHops` is treated as 0 (use all gateways), and reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from egressgw.selector import Selector, SelectorParseError, parse

PREFIX = "egress.projectcalico.org/"
SELECTOR = PREFIX + "selector"
NAMESPACE_SELECTOR = PREFIX + "namespaceSelector"
MAX_NEXT_HOPS = PREFIX + "maxNextHops"
POLICY = PREFIX + "egressGatewayPolicy"
MAINTENANCE_GATEWAY_IP = PREFIX + "gatewayMaintenanceGatewayIP"
MAINTENANCE_STARTED = PREFIX + "gatewayMaintenanceStartedTimestamp"
MAINTENANCE_FINISHED = PREFIX + "gatewayMaintenanceFinishedTimestamp"

INT32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class GatewaySelection:
    """Which gateway pods an object (or a policy rule) selects."""

    selector: Selector | None  # over pod labels; None = every pod (namespaceSelector alone)
    namespace_selector: Selector | None  # over namespace labels; None = own namespace only
    max_next_hops: int  # 0 = use every active gateway
    # A hashable identity for caching the set of pods this selection matches (stored: the
    # decision reads it once or twice per pod).
    key: tuple[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sel = str(self.selector) if self.selector is not None else ""
        ns = str(self.namespace_selector) if self.namespace_selector is not None else ""
        object.__setattr__(self, "key", (sel, ns))


@dataclass(frozen=True, slots=True)
class EgressAnnotations:
    """The egress configuration one pod or namespace asks for."""

    policy: str | None  # a policy name; when set the other keys are ignored
    selection: GatewaySelection | None
    problems: tuple[str, ...] = ()  # why an annotation was ignored or defaulted


def read(annotations: Mapping[str, str]) -> EgressAnnotations | None:
    """The egress configuration in `annotations`, or None when there is none. Pure."""
    if not annotations:
        return None
    policy = annotations.get(POLICY, "")
    if policy:
        return EgressAnnotations(policy=policy, selection=None)
    raw_sel = annotations.get(SELECTOR, "")
    raw_ns = annotations.get(NAMESPACE_SELECTOR, "")
    if not raw_sel and not raw_ns:
        return None  # a lone maxNextHops selects nothing and so has no effect
    problems: list[str] = []
    selector = _selector(SELECTOR, raw_sel, problems)
    ns_selector = _selector(NAMESPACE_SELECTOR, raw_ns, problems)
    if problems:
        return EgressAnnotations(policy=None, selection=None, problems=tuple(problems))
    hops = _max_next_hops(annotations.get(MAX_NEXT_HOPS, ""), problems)
    selection = GatewaySelection(selector, ns_selector, hops)
    return EgressAnnotations(policy=None, selection=selection, problems=tuple(problems))


def _selector(key: str, text: str, problems: list[str]) -> Selector | None:
    if not text:
        return None
    try:
        return parse(text)
    except SelectorParseError as err:
        problems.append(f"{key}: {err.message} at position {err.position}; ignored")
        return None


def _max_next_hops(text: str, problems: list[str]) -> int:
    if not text:
        return 0
    try:
        value = int(text, 10)
    except ValueError:
        value = -1
    if 0 <= value <= INT32_MAX:
        return value
    problems.append(f"{MAX_NEXT_HOPS}: {text!r} is not an integer in 0..{INT32_MAX}; using 0")
    return 0
