"""The public `Selector` value, the cached `parse`, and `validate`.

A Selector is immutable, equal to another exactly when their canonical forms are equal,
and carries its compiled matcher. This module does no I/O; its only state is the parse
cache, which depends on nothing but the input text.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from egressgw.selector.matcher import compile_node
from egressgw.selector.nodes import Node, canonical, with_label_prefix
from egressgw.selector.nodes import label_names as _label_names
from egressgw.selector.parser import parse_node
from egressgw.selector.restrictions import Restrictions, label_restrictions
from egressgw.selector.tokens import LABEL_CHARS, MAX_LABEL_LEN
from egressgw.selector.tree import render_tree

PARSE_CACHE_SIZE = 8192


class Selector:
    """A parsed Calico label selector.

    `matches(labels)` tells whether a label map is selected. It is the compiled closure
    itself, stored on the instance rather than behind a method, which saves one Python
    call (10-40 ns) per evaluation. `str(selector)` is Calico's canonical form.
    """

    __slots__ = ("_canonical", "_root", "_unique_id", "matches")

    matches: Callable[[Mapping[str, str]], bool]
    _root: Node
    _canonical: str
    _unique_id: str

    def __init__(self, root: Node) -> None:
        text = canonical(root)
        object.__setattr__(self, "_root", root)
        object.__setattr__(self, "_canonical", text)
        object.__setattr__(self, "_unique_id", _unique_id(text))
        object.__setattr__(self, "matches", compile_node(root))

    @property
    def root(self) -> Node:
        """The syntax tree."""
        return self._root

    @property
    def label_names(self) -> frozenset[str]:
        """Every label name the selector mentions."""
        return _label_names(self.root)

    @property
    def unique_id(self) -> str:
        """Calico's UniqueID(): "s:" + unpadded base64url(SHA-224("s:" + canonical))."""
        return self._unique_id

    def with_label_prefix(self, prefix: str) -> Selector:
        """This selector with every label name prefixed (Calico's PrefixVisitor).

        Raises ValueError if the result would not re-parse: the prefix must consist of
        label characters and keep every label within 512 bytes.
        """
        if not LABEL_CHARS.issuperset(prefix):
            raise ValueError(f"label prefix {prefix!r} has characters not allowed in labels")
        root = with_label_prefix(self.root, prefix)
        if any(len(label) > MAX_LABEL_LEN for label in _label_names(root)):
            raise ValueError(f"label prefix {prefix!r} makes a label longer than {MAX_LABEL_LEN}")
        return Selector(root)

    def label_restrictions(self) -> Restrictions:
        """Per-label facts any matching label map must satisfy (Calico's LabelRestrictions)."""
        return label_restrictions(self.root)

    def tree(self) -> str:
        """A drawing of the syntax tree, as Calico's calico-selector tool prints it."""
        return render_tree(self.root)

    def __str__(self) -> str:
        return self._canonical

    def __repr__(self) -> str:
        return f"Selector({self._canonical!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Selector):
            return NotImplemented
        return self._canonical == other._canonical

    def __hash__(self) -> int:
        return hash(self._canonical)

    def __reduce__(self) -> tuple[Callable[[str], Selector], tuple[str]]:
        # The compiled closure cannot be pickled; rebuild from the canonical text.
        return (parse, (self._canonical,))

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError(f"Selector is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Selector is immutable; cannot delete {name!r}")


def _unique_id(text: str) -> str:
    digest = hashlib.sha224(b"s:" + text.encode()).digest()
    return "s:" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def parse(text: str) -> Selector:
    """Parse a Calico selector; the empty or blank string means `all()`.

    Raises SelectorParseError. Results are cached by text, so parsing the same selector
    for every workload costs a dictionary lookup.
    """
    return _parse_cached(text)


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parse_cached(text: str) -> Selector:
    return Selector(parse_node(text))


def validate(text: str) -> None:
    """Raise SelectorParseError if `text` is not a valid selector; accepts exactly what parse does."""
    parse(text)


ALL = parse("all()")
"""The selector that matches everything."""
