"""Classification's written-out constructor behaves as the frozen dataclass it is, and
NodePlan refuses a source classified twice on one interface wherever it sorts."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from ipaddress import IPv4Address as A
from ipaddress import IPv4Network as N

import pytest

from egressgw.plan.dataplane import (
    Classification,
    EgressRoute,
    EgressTable,
    NodePlan,
    RoutingSettings,
)


def test_a_classification_is_a_frozen_value() -> None:
    c = Classification("cali1", A("10.1.0.2"), 3)
    assert (c.iifname, c.source, c.slot, c.element) == ("cali1", A("10.1.0.2"), 3, ("cali1", "10.1.0.2", 3))
    assert c == Classification("cali1", A("10.1.0.2"), 3) and hash(c) == hash(Classification("cali1", A("10.1.0.2"), 3))
    assert c != Classification("cali1", A("10.1.0.2"), 4)
    assert repr(c) == "Classification(iifname='cali1', source=IPv4Address('10.1.0.2'), slot=3)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.slot = 4  # type: ignore[misc]
    for twin in (pickle.loads(pickle.dumps(c)), copy.deepcopy(c), dataclasses.replace(c, slot=5)):
        assert twin.element[:2] == c.element[:2] and twin.element[2] == twin.slot
    assert Classification.from_element(c.element) == c
    assert Classification("cali1", source=A("10.1.0.2"), slot=3) == c


def test_a_source_is_classified_once_per_interface() -> None:
    tables = (EgressTable(0, (EgressRoute.unreachable(N("0.0.0.0/0")),)),
              EgressTable(1, (EgressRoute.throw(N("0.0.0.0/0")),)))  # fmt: skip
    same_source = (Classification("b", A("10.1.0.2"), 0), Classification("a", A("10.1.0.2"), 1))
    assert len(NodePlan(RoutingSettings(), (), tables, same_source).classifications) == 2
    between = (Classification("a", A("10.1.0.2"), 0), Classification("a", A("10.1.0.3"), 0),
               Classification("a", A("10.1.0.2"), 1))  # fmt: skip
    with pytest.raises(ValueError, match="twice"):
        NodePlan(RoutingSettings(), (), tables, between)
