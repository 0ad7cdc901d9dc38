"""Validated field types shared by the resource models: CIDRs, addresses, selectors, names.

Each type parses the JSON text into a typed value once (ipaddress objects, ints) and says how
to write it back. This module must not know about any particular resource kind.
"""

from __future__ import annotations

import re
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import Annotated, Any

from pydantic import AfterValidator, PlainSerializer, PlainValidator, WithJsonSchema

from egressgw.model.problems import Loc
from egressgw.selector import GlobalUse, SelectorParseError, validate_field

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

LINK_LOCAL = (ip_network("169.254.0.0/16"), ip_network("fe80::/10"))
INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1


class FieldError(ValueError):
    """A ValueError that names the field it is about, relative to the model that raised it.

    Struct-level checks use it so the reported path is `spec.rules[1].destination.cidr`, not
    just `spec`. The parser reads `.loc` back from pydantic's error context.
    """

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    return value


def parse_ip(value: object) -> Address:
    """An IPv4 or IPv6 address, as Go's net.ParseIP reads it (no zone, port or prefix)."""
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    text = _text(value, "IP address")
    try:
        if "%" in text:  # Python accepts an IPv6 zone; Go's ParseIP does not
            raise ValueError(text)
        addr = ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid IP address") from None
    # Go treats an IPv4-mapped IPv6 address as IPv4.
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def parse_ipv4(value: object) -> IPv4Address:
    addr = parse_ip(value)
    if not isinstance(addr, IPv4Address):
        raise ValueError(f"{addr} is not an IPv4 address")
    return addr


def parse_cidr(value: object, *, allow_bare_ip: bool = False) -> Network:
    """A strictly masked network; with `allow_bare_ip`, an address alone means /32 or /128."""
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    text = _text(value, "CIDR")
    if "/" not in text:
        if not allow_bare_ip:
            raise ValueError(f"{text!r} must be a valid subnet (address/prefix-length)")
        return ip_network(parse_ip(text))
    addr_text, _, length = text.partition("/")
    if not length.isdigit():  # ipaddress would also take a netmask; Go does not
        raise ValueError(f"{text!r} must be a valid subnet")
    try:
        loose = ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} must be a valid subnet") from None
    if loose.network_address != ip_address(addr_text):
        raise ValueError(f"{text} is not strictly masked (did you mean {loose}?)")
    return loose


def _cidr_or_ip(value: object) -> Network:
    return parse_cidr(value, allow_bare_ip=True)


def _selector_check(use: GlobalUse) -> AfterValidator:
    def check(text: str) -> str:
        try:
            validate_field(text, use)
        except SelectorParseError as err:
            raise ValueError(
                f"invalid selector: {err.message} (at position {err.position})"
            ) from None
        return text

    return AfterValidator(check)


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _check_subdomain(text: str) -> str:
    if len(text) > 253 or not all(_DNS_LABEL.fullmatch(p) for p in text.split(".")):
        raise ValueError(
            f"{text!r} must be a DNS subdomain: lower-case letters, digits, '-' and '.',"
            " starting and ending with a letter or digit, at most 253 characters"
        )
    return text


def check_dns_label(text: str) -> str:
    if len(text) > 63 or not _DNS_LABEL.fullmatch(text):
        raise ValueError(
            f"{text!r} must be a DNS label: lower-case letters, digits and '-',"
            " starting and ending with a letter or digit, at most 63 characters"
        )
    return text


_DURATION = re.compile(r"[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)")


def _check_duration(text: str) -> str:
    if not _DURATION.fullmatch(text):
        raise ValueError(f"{text!r} is not a duration (for example 10s, 1m30s, 500ms)")
    return text


_PART = r"(0|[1-9][0-9]*)"
_COMMUNITY = re.compile(rf"{_PART}:{_PART}(:{_PART})?")


def _check_community(text: str) -> str:
    match = _COMMUNITY.fullmatch(text)
    limit = UINT32_MAX if match and match.group(3) else 0xFFFF
    parts = text.split(":")
    if not match or len(text) > 32 or any(int(p) > limit for p in parts):
        raise ValueError(
            f"{text!r} is not a BGP community: expected aa:nn (each 0-65535) or aa:nn:mm"
            " (each 0-4294967295), decimal without leading zeros"
        )
    return text


def parse_as_number(value: object) -> int:
    """A 32-bit AS number: an integer, a decimal string or the dotted form `X.Y`."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("AS number must be an integer or a dotted X.Y string")
    if isinstance(value, str):
        value = _as_number_text(value)
    if not 0 <= value <= UINT32_MAX:
        raise ValueError(f"AS number {value} is outside 0-{UINT32_MAX}")
    return value


def _as_number_text(text: str) -> int:
    high, dot, low = text.partition(".")
    if not (high.isdigit() and (not dot or low.isdigit())):
        raise ValueError(f"{text!r} is not an AS number (decimal, or dotted X.Y)")
    if not dot:
        return int(high)
    if int(high) > 0xFFFF or int(low) > 0xFFFF:
        raise ValueError(f"{text!r}: each half of a dotted AS number must be 0-65535")
    return int(high) * 65536 + int(low)


def _string_schema(fmt: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "format": fmt})


def _as_text(value: Any) -> str:
    return str(value)


_TO_TEXT = PlainSerializer(_as_text, return_type=str)

Cidr = Annotated[Network, PlainValidator(parse_cidr), _TO_TEXT, _string_schema("cidr")]
"""A strictly masked IPv4 or IPv6 network written as address/prefix-length."""
CidrOrIP = Annotated[Network, PlainValidator(_cidr_or_ip), _TO_TEXT, _string_schema("cidr")]
"""Like Cidr, but a bare address is accepted as /32 (IPv4) or /128 (IPv6)."""
IPAddr = Annotated[Address, PlainValidator(parse_ip), _TO_TEXT, _string_schema("ip")]
IPv4 = Annotated[IPv4Address, PlainValidator(parse_ipv4), _TO_TEXT, _string_schema("ipv4")]
ASNumber = Annotated[
    int, PlainValidator(parse_as_number), WithJsonSchema({"x-kubernetes-int-or-string": True})
]
Selector = Annotated[str, _selector_check(GlobalUse.FORBIDDEN)]
"""A Calico label selector in a field whose CEL rule refuses the text `global(`."""
AnySelector = Annotated[str, _selector_check(GlobalUse.ANY)]
"""A Calico label selector with no rule beyond the grammar (BGPPeer's selectors)."""
DNSSubdomain = Annotated[str, AfterValidator(_check_subdomain)]
DNSLabel = Annotated[str, AfterValidator(check_dns_label)]
Duration = Annotated[str, AfterValidator(_check_duration)]
"""A Go duration string such as `10s` or `1m30s`, kept as written."""
Community = Annotated[str, AfterValidator(_check_community)]
