"""The shared field types: CIDRs, addresses, AS numbers, communities, peer addresses."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_network

import pytest

from egressgw.model import split_peer_ip
from egressgw.model.fields import Community, Duration, parse_as_number, parse_cidr, parse_ip
from egressgw.model.meta import Frozen


class _Community(Frozen):
    value: Community


class _Duration(Frozen):
    value: Duration


def test_cidr_must_be_strictly_masked() -> None:
    assert parse_cidr("10.99.0.0/29") == ip_network("10.99.0.0/29")
    assert parse_cidr("fd00::/64") == ip_network("fd00::/64")
    with pytest.raises(ValueError, match="not strictly masked"):
        parse_cidr("10.99.0.1/29")


@pytest.mark.parametrize(
    "text", ["10.99.0.0/33", "fd00::/129", "10.0.0.0/255.0.0.0", "x/8", "10.0.0.0/"]
)
def test_bad_cidrs_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="must be a valid subnet"):
        parse_cidr(text)


def test_bare_ip_only_where_allowed() -> None:
    assert parse_cidr("8.8.8.8", allow_bare_ip=True) == ip_network("8.8.8.8/32")
    assert parse_cidr("fd00::1", allow_bare_ip=True) == ip_network("fd00::1/128")
    with pytest.raises(ValueError):
        parse_cidr("8.8.8.8")


def test_ip_parsing_follows_go() -> None:
    assert parse_ip("::ffff:10.0.0.1") == IPv4Address("10.0.0.1")
    for bad in ["010.0.0.1", "10.0.0.1/32", "fe80::1%eth0", 167772161]:
        with pytest.raises(ValueError):
            parse_ip(bad)


@pytest.mark.parametrize(
    ("value", "number"),
    [(64512, 64512), ("64512", 64512), ("1.10", 65546), ("0.0", 0), (4294967295, 4294967295)],
)
def test_as_numbers(value: int | str, number: int) -> None:
    assert parse_as_number(value) == number


@pytest.mark.parametrize("value", [-1, 4294967296, "1.65536", "a.b", "1.", True, 1.5])
def test_bad_as_numbers(value: object) -> None:
    with pytest.raises(ValueError):
        parse_as_number(value)


@pytest.mark.parametrize(
    "text", ["0:0", "65535:65535", "4294967295:4294967295:4294967295", "64512:100"]
)
def test_communities_accepted(text: str) -> None:
    assert _Community(value=text).value == text


@pytest.mark.parametrize(
    "text", ["01:02", "65536:0", "99999:0", "1", "1:2:3:4", "4294967296:0:0", "a:b"]
)
def test_communities_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a BGP community"):
        _Community(value=text)


@pytest.mark.parametrize("text", ["10s", "1m30s", "500ms", "0", "1.5h", "2h45m0.5s"])
def test_durations_accepted(text: str) -> None:
    assert _Duration(value=text).value == text


@pytest.mark.parametrize("text", ["10", "s", "10 s", "1d", ""])
def test_durations_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        _Duration(value=text)


@pytest.mark.parametrize(
    ("text", "address", "port"),
    [
        ("1.2.3.4", IPv4Address("1.2.3.4"), None),
        ("192.168.1.1:500", IPv4Address("192.168.1.1"), 500),
        ("[9000::]:500", IPv6Address("9000::"), 500),
        ("9.9.9.9:4444", IPv4Address("9.9.9.9"), 4444),
        ("[aabb::ffff]:4444", IPv6Address("aabb::ffff"), 4444),
        ("aabb::ffff", IPv6Address("aabb::ffff"), None),
    ],
)
def test_peer_ips_accepted(text: str, address: object, port: int | None) -> None:
    assert split_peer_ip(text) == (address, port)


@pytest.mark.parametrize(
    "text",
    [
        "999.999.999.999",
        "xyz:::",
        "192.168.0.0:65536",
        "192.168.0.0:0",
        "192.168.0.330:170",
        "[9000::]:98956",
        "[9000::]:0",
        "[9000::FFFFF]:170",
        "192.168.0.0:",
        "[9000::]:",
        ":8552",
        "[]:8552",
    ],
)
def test_peer_ips_refused(text: str) -> None:
    with pytest.raises(ValueError):
        split_peer_ip(text)
