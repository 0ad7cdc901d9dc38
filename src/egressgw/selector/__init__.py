"""The Calico label-selector language: parse, print canonically, and match label maps.

Semantics follow Calico's libcalico-go selector package as described in
shared/reference/selector-grammar.md. Pure code: standard library only, no I/O.

    sel = parse("egress-gateway == 'egw-4'")
    sel.matches({"egress-gateway": "egw-4"})  # True
    str(sel)                                  # 'egress-gateway == "egw-4"'
"""

from egressgw.selector.errors import SelectorParseError
from egressgw.selector.fields import GlobalUse, validate_field
from egressgw.selector.restrictions import LabelRestriction, Restrictions
from egressgw.selector.selector import ALL, Selector, parse, validate

__all__ = [
    "ALL",
    "GlobalUse",
    "LabelRestriction",
    "Restrictions",
    "Selector",
    "SelectorParseError",
    "parse",
    "validate",
    "validate_field",
]
