"""IP address management for gateway pods (and, in the lab, ordinary pods).

Pure. Calico's model: a pool is cut into blocks of `blockSize`; a block is affine to one
node; a pod takes the lowest free address of a block affine to its node, else claims the
lowest free block, else borrows the lowest free address of another node's block. Reserved
ranges (`IPReservation`) are never handed out. The state is a value: every function returns
a new state, and the controller persists it with compare-and-swap so that two controllers
can never hand out one address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

#: Blocks larger than this many addresses are scanned lazily; pools are walked block by block.
_BLOCK_SCAN_LIMIT = 1 << 16


class IpamExhausted(Exception):
    """No pool among the candidates has a free address."""


@dataclass(frozen=True, slots=True)
class Pool:
    """The parts of an IPPool that IPAM needs."""

    name: str
    cidr: Network
    block_size: int


@dataclass(frozen=True, slots=True)
class IpamState:
    """Who holds which address, and which node each claimed block is affine to."""

    allocations: Mapping[Address, str] = field(default_factory=dict)  # address -> handle
    affinities: Mapping[Network, str] = field(default_factory=dict)  # block -> node

    def address_of(self, handle: str) -> Address | None:
        """The address held by `handle`, if any."""
        for address, owner in self.allocations.items():
            if owner == handle:
                return address
        return None


def block_of(address: Address, block_size: int) -> Network:
    """The block of `block_size` that holds `address`."""
    return ipaddress.ip_network(f"{address}/{block_size}", strict=False)


def assign(
    state: IpamState,
    handle: str,
    node: str,
    pools: Sequence[Pool],
    reserved: Sequence[Network] = (),
) -> tuple[Address, IpamState]:
    """An address for `handle` on `node` from `pools` (in preference order), and the new state.

    Idempotent: a handle that already holds an address keeps it. Raises IpamExhausted.
    """
    held = state.address_of(handle)
    if held is not None:
        return held, state
    for chooser in (_from_affine_block, _from_free_block, _borrowed):
        for pool in pools:
            found = chooser(state, node, pool, reserved)
            if found is not None:
                return found, _take(state, found, handle, node, pool)
    names = ", ".join(p.name for p in pools) or "(none)"
    raise IpamExhausted(f"no free address in IP pools {names} for {handle} on node {node}")


def release(state: IpamState, handle: str) -> IpamState:
    """The state without `handle`'s address; a block left empty loses its affinity."""
    address = state.address_of(handle)
    if address is None:
        return state
    allocations = {a: h for a, h in state.allocations.items() if a != address}
    used_blocks = {b for b in state.affinities if any(a in b for a in allocations)}
    affinities = {b: n for b, n in state.affinities.items() if b in used_blocks}
    return IpamState(allocations, affinities)


def _take(state: IpamState, address: Address, handle: str, node: str, pool: Pool) -> IpamState:
    allocations = {**state.allocations, address: handle}
    block = block_of(address, pool.block_size)
    affinities = dict(state.affinities)
    affinities.setdefault(block, node)
    return replace(state, allocations=allocations, affinities=affinities)


def _blocks(pool: Pool) -> Iterator[Network]:
    if pool.block_size <= pool.cidr.prefixlen:
        yield pool.cidr
        return
    yield from pool.cidr.subnets(new_prefix=pool.block_size)


def _free_in(block: Network, state: IpamState, reserved: Sequence[Network]) -> Address | None:
    for count, address in enumerate(_addresses(block)):
        if count >= _BLOCK_SCAN_LIMIT:
            return None
        if address not in state.allocations and not any(address in r for r in reserved):
            return address
    return None


def _addresses(block: Network) -> Iterable[Address]:
    # Calico hands out every address of a block, network and broadcast included: blocks
    # are allocation units, not subnets.
    first = int(block.network_address)
    version = block.version
    for offset in range(block.num_addresses):
        yield ipaddress.ip_address(first + offset) if version == 4 else IPv6Address(first + offset)


def _from_affine_block(
    state: IpamState, node: str, pool: Pool, reserved: Sequence[Network]
) -> Address | None:
    mine = sorted(
        (b for b, n in state.affinities.items() if n == node and b.subnet_of(pool.cidr)),  # type: ignore[arg-type]
        key=lambda b: int(b.network_address),
    )
    for block in mine:
        found = _free_in(block, state, reserved)
        if found is not None:
            return found
    return None


def _from_free_block(
    state: IpamState, node: str, pool: Pool, reserved: Sequence[Network]
) -> Address | None:
    for block in _blocks(pool):
        if block in state.affinities:
            continue
        found = _free_in(block, state, reserved)
        if found is not None:
            return found
    return None


def _borrowed(
    state: IpamState, node: str, pool: Pool, reserved: Sequence[Network]
) -> Address | None:
    for block in _blocks(pool):
        if state.affinities.get(block, node) == node:
            continue
        found = _free_in(block, state, reserved)
        if found is not None:
            return found
    return None
