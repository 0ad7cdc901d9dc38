"""Where `global()` may appear: the per-field rule Calico adds on top of the grammar (§6).

The grammar accepts `global()` anywhere; Calico's CRD (CEL) rules ban the substring
`global(` from most selector fields, and EntityRule.namespaceSelector allows it only on
its own. This module holds that rule and nothing about which resource has which field.
"""

from __future__ import annotations

import enum

from egressgw.selector.errors import SelectorParseError
from egressgw.selector.selector import validate
from egressgw.selector.tokens import Kind, tokenize

_MARKER = "global("


class GlobalUse(enum.Enum):
    """How a selector field treats `global()`."""

    ANY = "any"
    """No rule on the field (for example BGPPeer selectors): only the grammar applies."""
    FORBIDDEN = "forbidden"
    """The raw text must not contain `global(`, even inside a string value."""
    ALONE = "alone"
    """EntityRule.namespaceSelector: `global()` is allowed, but only as the whole selector."""


def validate_field(text: str, use: GlobalUse) -> None:
    """Raise SelectorParseError unless `text` is acceptable in a field with rule `use`."""
    marker = text.find(_MARKER)
    if marker < 0 or use is GlobalUse.ANY:
        validate(text)
    elif use is GlobalUse.FORBIDDEN:
        raise SelectorParseError("global() is not allowed in this field", marker)
    elif text != "global()":
        _require_global_alone(text, marker)


def _require_global_alone(text: str, marker: int) -> None:
    # Calico tokenizes rather than parses here: the tokens must be exactly global(), EOF.
    kinds = [token.kind for token in tokenize(text)]
    if kinds != [Kind.GLOBAL, Kind.EOF]:
        raise SelectorParseError("global() must be the whole selector in this field", marker)
