"""Judge an object against a CRD the way the API server would, offline.

`check(crd, obj)` applies the schema's defaults, validates with `jsonschema` (unknown fields
refused, as with kubectl's strict field validation; `x-kubernetes-list-type: set` items
unique), then evaluates every `x-kubernetes-validations` CEL rule with cel-python, bound to
the node's value. Kubernetes' CEL extension functions used by our rules (ip, cidr, strings)
are implemented here on `ipaddress`. Returns `(field path, message)` pairs; empty = valid.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Iterator
from typing import Any

import celpy
import celpy.adapter
import jsonschema
from celpy import celtypes

Schema = dict[str, Any]
Error = tuple[str, str]


# -- Kubernetes CEL library functions -----------------------------------------------------


class IP:
    def __init__(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        self.addr = addr

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IP) and self.addr == other.addr


class CIDR:
    def __init__(self, address: Any, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
        self.address = address  # as written: cidr("10.0.0.1/8").ip() is 10.0.0.1
        self.network = network

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CIDR) and (self.address, self.network) == (other.address, other.network)


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if "%" in text or text != text.strip():
        raise ValueError(text)
    return ipaddress.ip_address(text)


def _parse_cidr(text: str) -> CIDR:
    address, _, length = text.partition("/")
    if not length.isdigit():
        raise ValueError(text)
    return CIDR(_parse_ip(address), ipaddress.ip_network(text, strict=False))


def _ok(parse: Any, value: Any) -> celtypes.BoolType:
    try:
        parse(str(value))
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _ip(value: Any) -> IP:
    return IP(value.address) if isinstance(value, CIDR) else IP(_parse_ip(str(value)))


def _contains_ip(cidr: CIDR, other: Any) -> celtypes.BoolType:
    addr = other.addr if isinstance(other, IP) else _parse_ip(str(other))
    return celtypes.BoolType(addr.version == cidr.network.version and addr in cidr.network)


FUNCTIONS: dict[str, Any] = {
    "isIP": lambda v: _ok(_parse_ip, v),
    "isCIDR": lambda v: _ok(_parse_cidr, v),
    "ip": _ip,
    "cidr": lambda v: _parse_cidr(str(v)),
    "family": lambda v: celtypes.IntType(v.addr.version),
    "prefixLength": lambda c: celtypes.IntType(c.network.prefixlen),
    "masked": lambda c: CIDR(c.network.network_address, c.network),
    "containsIP": _contains_ip,
    "split": lambda s, sep: celtypes.ListType(
        [celtypes.StringType(p) for p in str(s).split(str(sep))]
    ),
    "substring": lambda s, a, b: celtypes.StringType(str(s)[int(a) : int(b)]),
    "indexOf": lambda s, sub: celtypes.IntType(str(s).find(str(sub))),
    "lastIndexOf": lambda s, sub: celtypes.IntType(str(s).rfind(str(sub))),
}
_ENV = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


def evaluate(expression: str, value: Any) -> bool:
    """One CEL rule on one value; an evaluation error fails the rule, as in Kubernetes."""
    program = _PROGRAMS.get(expression)
    if program is None:
        program = _PROGRAMS[expression] = _ENV.program(_ENV.compile(expression), functions=FUNCTIONS)
    try:
        result = program.evaluate({"self": celpy.adapter.json_to_cel(value)})
    except Exception:
        return False
    return result is True or (isinstance(result, celtypes.BoolType) and bool(result))


# -- structural schema -> JSON schema ------------------------------------------------------


def _strict(schema: Schema) -> Schema:
    out = copy.deepcopy(schema)
    for node in _nodes(out):
        if node.get("x-kubernetes-int-or-string"):
            node.setdefault("type", ["integer", "string"])
        if node.get("x-kubernetes-list-type") == "set":
            node["uniqueItems"] = True
        open_ = node.get("x-kubernetes-preserve-unknown-fields")
        if node.get("type") == "object" and not open_ and "additionalProperties" not in node:
            node["additionalProperties"] = False
    return out


def _nodes(schema: Schema) -> Iterator[Schema]:
    yield schema
    for child in (schema.get("properties") or {}).values():
        yield from _nodes(child)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _nodes(schema[key])


def defaulted(schema: Schema, value: Any) -> Any:
    """`value` with the schema's defaults filled in, as the API server does before validation."""
    if isinstance(value, dict) and "properties" in schema:
        out = dict(value)
        for name, child in schema["properties"].items():
            if name not in out and "default" in child:
                out[name] = copy.deepcopy(child["default"])
            if name in out:
                out[name] = defaulted(child, out[name])
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [defaulted(schema["items"], v) for v in value]
    return value


def _cel_errors(schema: Schema, value: Any, path: str) -> Iterator[Error]:
    for validation in schema.get("x-kubernetes-validations", []):
        if not evaluate(validation["rule"], value):
            yield path + validation.get("fieldPath", ""), validation["message"]
    if isinstance(value, dict):
        for name, child in (schema.get("properties") or {}).items():
            if name in value:
                yield from _cel_errors(child, value[name], f"{path}.{name}" if path else name)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _cel_errors(schema["items"], item, f"{path}[{index}]")


def _format(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def check(crd: Schema, obj: Any) -> list[Error]:
    """Every reason the API server would refuse `obj` under `crd` (empty: accepted).
    `metadata` is judged as the API server judges every object's: the name only."""
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    name = str(obj.get("metadata", {}).get("name", ""))
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        return [("metadata.name", "a lowercase RFC 1123 subdomain must consist of ...")]
    value = defaulted(schema, {k: v for k, v in obj.items() if k != "metadata"})
    validator = jsonschema.Draft7Validator(_strict(schema))
    errors = [(_format(e.absolute_path), e.message) for e in validator.iter_errors(value)]
    if errors:  # as in Kubernetes, CEL runs only on schema-valid objects
        return errors
    return list(_cel_errors(schema, value, ""))
