"""A workload's egress configuration: per destination range, what to do and through whom.

Pure data: the types the egress decision (calc/decision.py) answers with and the maxNextHops
assignment (calc/assignment.py) fills in. Nothing here decides anything, and nothing does
I/O, reads a clock or draws random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network


class Action(StrEnum):
    """What happens to a connection."""

    GATEWAY = "gateway"
    DIRECT = "direct"
    DROP = "drop"


class Source(StrEnum):
    """Which annotation decided."""

    POD_POLICY = "pod-policy"
    NAMESPACE_POLICY = "namespace-policy"
    POD_SELECTOR = "pod-selector"
    NAMESPACE_SELECTOR = "namespace-selector"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Hop:
    """A gateway pod used as a next hop."""

    namespace: str
    gateway: str  # the EgressGateway
    pod: str
    ip: IPv4Address
    node: str | None
    text: str = field(init=False, repr=False, compare=False)  # `ip` as text, for the ledger

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", str(self.ip))


@dataclass(frozen=True, slots=True)
class Route:
    """One destination range of a workload's egress configuration."""

    destination: IPv4Network
    rule: int | None  # index into the policy's rules; None for selector annotations
    action: Action
    hops: tuple[Hop, ...] = ()
    description: str = ""
    cap: int = 0  # maxNextHops (0: none): the hops are this pod's own subset
    draining: tuple[IPv4Address, ...] = ()  # matched gateways left out because terminating

    @property
    def capped(self) -> bool:
        """Does maxNextHops apply (the hops are this pod's own pick)?"""
        return self.cap > 0


@dataclass(frozen=True, slots=True)
class EgressConfig:
    """A workload's whole egress configuration: what to do per destination range."""

    source: Source
    policy: str | None
    routes: tuple[Route, ...]  # longest prefix first
    reason: str
    problems: tuple[str, ...] = ()
    identity: str = ""  # which policy or selection this is, whatever its gateways are now

    def lookup(self, destination: IPv4Address) -> Route | None:
        """The route for `destination` by longest-prefix match, or None (normal routing)."""
        for route in self.routes:
            if destination in route.destination:
                return route
        return None
