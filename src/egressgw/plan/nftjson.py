"""nftables' JSON vocabulary (`nft -j`): expressions, commands on one table, whole-table
replacement, the fingerprint rule, the document's text (`encode`), and reading a listing.

Pure: JSON-shaped dicts in and out. plan.nft composes these into our two tables. nft 1.0.6
keeps comments only on rules (not on tables or chains), hence the fingerprint *rule*, in a
chain nothing jumps to, so it costs no packet anything.

Big element lists (10,000s of map entries) travel as `RawElements`, not as a dict and
two lists per element: `encode` writes them straight to text, 4x faster than building and
dumping the dicts, and without 30,000 short-lived containers for the garbage collector to
scan. `plain` turns a document into pure JSON; both spell the same JSON.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from json.encoder import encode_basestring_ascii
from typing import Any

from egressgw.plan import ownership

Json = dict[str, Any]
U32 = 0xFFFFFFFF
FINGERPRINT_CHAIN = "fingerprint"
FINGERPRINT_PREFIX = "egressgw "
SKELETON_VERSION = 1  # bump when rendering changes in a way the fingerprint cannot see

# ---------------------------------------------------------------- expressions


def meta(key: str) -> Json:
    return {"meta": {"key": key}}


def ct(key: str) -> Json:
    return {"ct": {"key": key}}


def ip(field: str) -> Json:
    return {"payload": {"protocol": "ip", "field": field}}


def tcp(field: str) -> Json:
    return {"payload": {"protocol": "tcp", "field": field}}


def match(left: Any, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def set_bits(key: Json, mask: int, value: int) -> Json:
    """`<key> set <key> & ~mask | value`: only the bits under `mask` change."""
    return {"mangle": {"key": key, "value": {"|": [{"&": [key, ~mask & U32]}, value]}}}


def mss_clamp(direction: str, device: str, mss: int) -> list[Json]:
    """SYNs whose `direction` (iifname/oifname) is `device` carry an MSS of at most `mss`."""
    tcp_mss = {"tcp option": {"name": "maxseg", "field": "size"}}
    syn = {"&": [{"payload": {"protocol": "tcp", "field": "flags"}}, ["syn", "rst"]]}
    return [
        match(meta(direction), device),
        match(syn, "syn"),
        match(tcp_mss, mss, ">"),
        {"mangle": {"key": tcp_mss, "value": mss}},
    ]


# ---------------------------------------------------------------- big element lists


class RawElements(ABC):
    """A set's or map's elements that write their own JSON text (see the module docstring)."""

    __slots__ = ()

    @abstractmethod
    def plain(self) -> list[Any]:
        """The elements as JSON values."""

    @abstractmethod
    def text(self) -> str:
        """Exactly `json.dumps(self.plain(), separators=(",", ":"))`."""


# The json module's own string quoting (its C version), for RawElements.text.
quote = encode_basestring_ascii


# ---------------------------------------------------------------- objects and commands


class Table:
    """Builds the objects of one of our tables (family ownership.NFT_FAMILY)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ref = {"family": ownership.NFT_FAMILY, "table": name}

    def table(self) -> Json:
        return {"table": {"family": ownership.NFT_FAMILY, "name": self.name}}

    def chain(self, name: str, hook: tuple[str, str, int] | None = None) -> Json:
        """A regular chain, or with `hook` = (type, hook, priority) a base chain."""
        body: Json = {**self.named_ref(name)}
        if hook is not None:
            kind, hook_name, prio = hook
            body |= {"type": kind, "hook": hook_name, "prio": prio, "policy": "accept"}
        return {"chain": body}

    def rule(self, chain: str, expr: list[Json], comment: str | None = None) -> Json:
        body: Json = {**self.ref, "chain": chain, "expr": expr}
        if comment is not None:
            body["comment"] = comment
        return {"rule": body}

    def elements(self, name: str, elem: list[Any] | RawElements) -> Json:
        return {"element": {**self.ref, "name": name, "elem": elem}}

    def named(self, kind: str, name: str, **body: Any) -> Json:
        """A set, map or chain reference by name, with extra attributes."""
        return {kind: {**self.named_ref(name), **body}}

    def named_ref(self, name: str) -> Json:
        return {"family": ownership.NFT_FAMILY, "table": self.name, "name": name}


def add(obj: Json) -> Json:
    return {"add": obj}


def delete(obj: Json) -> Json:
    return {"delete": obj}


def flush(obj: Json) -> Json:
    return {"flush": obj}


def document(commands: Iterable[Json]) -> Json:
    """The JSON document `nft -j -f -` reads: one transaction."""
    return {"nftables": list(commands)}


def encode(doc: Json) -> str:
    """The text of `doc` that `nft -j -f -` reads (compact JSON)."""
    return '{"nftables":[' + ",".join(map(_encode_command, doc["nftables"])) + "]}"


def plain(doc: Json) -> Json:
    """`doc` as pure JSON values (each RawElements as its list), for json.dumps."""
    return {"nftables": [_plain_command(command) for command in doc["nftables"]]}


def _raw_elements(command: Json) -> tuple[str, Json, RawElements] | None:
    """(verb, body without elem, elements) of an element command holding RawElements."""
    ((verb, obj),) = command.items()
    body = obj.get("element") if isinstance(obj, dict) else None
    if body is None or not isinstance(body.get("elem"), RawElements):
        return None
    return verb, {k: v for k, v in body.items() if k != "elem"}, body["elem"]


def _encode_command(command: Json) -> str:
    found = _raw_elements(command)
    if found is None:
        return json.dumps(command, separators=(",", ":"))
    verb, head, elements = found
    head_text = json.dumps({**head, "elem": None}, separators=(",", ":"))
    # {..., "elem": null} with the null (the last 5 characters before "}") swapped for the text
    return f'{{{json.dumps(verb)}:{{"element":{head_text[:-5]}{elements.text()}}}}}}}'


def _plain_command(command: Json) -> Json:
    found = _raw_elements(command)
    if found is None:
        return command
    verb, head, elements = found
    return {verb: {"element": {**head, "elem": elements.plain()}}}


def replace_table(t: Table, body: list[Json]) -> list[Json]:
    """Add-delete-add: replaces the table whether or not it exists, in one transaction."""
    return [add(t.table()), delete(t.table()), add(t.table()), *map(add, body)]


def delete_table(name: str) -> Json:
    """Remove one of our tables (explicit teardown only; nothing is flushed on exit)."""
    t = Table(name)
    return document([add(t.table()), delete(t.table())])


def fingerprint(skeleton: list[Json]) -> str:
    text = json.dumps([SKELETON_VERSION, skeleton], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint_commands(t: Table, skeleton: list[Json]) -> list[Json]:
    comment = FINGERPRINT_PREFIX + fingerprint(skeleton)
    return [t.chain(FINGERPRINT_CHAIN), t.rule(FINGERPRINT_CHAIN, [{"accept": None}], comment)]


# ---------------------------------------------------------------- reading a listing


def objects(listing: Json, kind: str) -> Iterator[Json]:
    """The objects of one kind ("rule", "chain", "set", "map", ...) in a listing."""
    for item in listing.get("nftables", []):
        if kind in item:
            yield item[kind]


def elements(listing: Json, kind: str, name: str) -> list[Any]:
    """The elements of one listed set or map ([] when empty or absent)."""
    for obj in objects(listing, kind):
        if obj.get("name") == name:
            return list(obj.get("elem", []))
    return []


def parse_fingerprint(listing: Json) -> str:
    """The fingerprint recorded in a listed table, or "" if there is none."""
    for rule in objects(listing, "rule"):
        comment = rule.get("comment", "")
        if rule.get("chain") == FINGERPRINT_CHAIN and comment.startswith(FINGERPRINT_PREFIX):
            return str(comment.removeprefix(FINGERPRINT_PREFIX))
    return ""
