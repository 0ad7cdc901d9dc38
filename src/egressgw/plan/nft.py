"""Render plans as nftables JSON transactions (`nft -j -f -`), and read our tables back.

Node table `inet egressgw`:

    set cluster4     ipv4_addr, interval        pod pools, service ranges, node IPs
    map classify4    ifname . ipv4_addr : verdict  -> goto slot_<n>
    map restore      mark : verdict              (ct mark & mask) -> goto slot_<n>
    chain slot_<n>   meta mark and ct mark set to slot n's mark (other bits kept)
    chain prerouting filter/prerouting/mangle:
        a bare SYN: clear the slot bits of its conntrack entry   (a stale entry's slot)
        ct direction original, established: restore the connection's mark (later packets)
        [vxlan] replies arriving on the tunnel: restore it too   (RPF via src_valid_mark)
        ct state new or a bare SYN, ip daddr not in cluster4: classify (first packet)
    chain forward    [vxlan] clamp the MSS of SYNs in and out of the tunnel
    chain fingerprint  never jumped to; its rule's comment names the skeleton it belongs to

The mark lives in the conntrack entry, so a live connection keeps its path when the maps
change; lookups are O(1) hash maps whatever the number of pods. The skeleton (everything but
set/map elements and slot chains) is fingerprinted: a table whose fingerprint differs is
replaced whole, atomically, in one transaction (add, delete, add the table); otherwise only
elements and slot chains change.

Gateway table `inet egressgw_gw`: SNAT to the egress IP of what it forwards out of its
uplink, and the MSS clamp; small, always replaced whole when its fingerprint differs.

Pure: JSON-shaped dicts in and out, no I/O (the JSON vocabulary is in plan.nftjson).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, collapse_addresses, summarize_address_range
from typing import Any

from egressgw.plan import nftjson as nj
from egressgw.plan import ownership
from egressgw.plan.dataplane import (
    ApplyStats,
    Classification,
    GatewayPlan,
    NodePlan,
    RoutingSettings,
)

Json = nj.Json

CLUSTER_SET = "cluster4"
CLASSIFY_MAP = "classify4"
RESTORE_MAP = "restore"
SLOT_CHAIN_PREFIX = "slot_"
PRIO_MANGLE = -150
PRIO_SRCNAT = 100
# A delta that removes more than FLUSH_RATIO times as many classify4 elements as it keeps
# flushes the map and adds the kept ones back, in the same transaction: nft 1.0.6 spends
# ~6 us deleting an element, ~10 us adding one and ~1.5 us per element flushing a map.
FLUSH_RATIO = 3


@dataclass(frozen=True, slots=True)
class NftState:
    """What our node table holds, read back from the kernel or as last written."""

    fingerprint: str
    slots: frozenset[int]
    classifications: frozenset[tuple[str, str, int]]  # Classification.element
    cluster: tuple[IPv4Network, ...]

    def entries(self) -> list[Classification]:
        return [Classification.from_element(e) for e in sorted(self.classifications)]


def slot_chain(slot: int) -> str:
    return f"{SLOT_CHAIN_PREFIX}{slot}"


def _goto(slot: int) -> Json:
    return {"goto": {"target": slot_chain(slot)}}


# ---------------------------------------------------------------- node table

NODE = nj.Table(ownership.NODE_NFT_TABLE)


def _node_skeleton(plan: NodePlan) -> list[Json]:
    mask = plan.routing.mark_mask
    restore = {"vmap": {"key": {"&": [nj.ct("mark"), mask]}, "data": f"@{RESTORE_MAP}"}}
    classify = [
        nj.match(nj.ip("daddr"), f"@{CLUSTER_SET}", "!="),
        {"vmap": {"key": {"concat": [nj.meta("iifname"), nj.ip("saddr")]}, "data": f"@{CLASSIFY_MAP}"}},
    ]  # fmt: skip
    # A new connection can meet a stale conntrack entry that still carries a slot: the entry
    # of an earlier connection from the same source port that was never answered (SYN_SENT,
    # two minutes) or was cut off (FIN_WAIT, ESTABLISHED), e.g. through a gateway that died.
    # That slot may route elsewhere by now (a lingering table, another configuration). So a
    # bare SYN clears the slot bits of its entry and is classified afresh, and only an
    # answered connection's mark is restored.
    syn = nj.match({"&": [nj.tcp("flags"), ["syn", "ack"]]}, "syn")
    established = nj.match(nj.ct("state"), ["established", "related"], "in")
    prerouting = [
        [syn, nj.set_bits(nj.ct("mark"), mask, 0)],
        [nj.match(nj.ct("direction"), "original"), established, restore],
    ]
    if plan.vxlan is not None:
        tunnel = nj.match(nj.meta("iifname"), plan.vxlan.device)
        prerouting.append([tunnel, nj.match(nj.ct("direction"), "reply"), restore])
    prerouting.append([nj.match(nj.ct("state"), "new", "in"), *classify])
    prerouting.append([syn, *classify])
    body = [
        NODE.named("set", CLUSTER_SET, type="ipv4_addr", flags=["interval"]),
        NODE.named("map", CLASSIFY_MAP, type=["ifname", "ipv4_addr"], map="verdict"),
        NODE.named("map", RESTORE_MAP, type="mark", map="verdict"),
        NODE.chain("prerouting", ("filter", "prerouting", PRIO_MANGLE)),
        *(NODE.rule("prerouting", expr) for expr in prerouting),
    ]
    if plan.vxlan is not None:
        body.append(NODE.chain("forward", ("filter", "forward", PRIO_MANGLE)))
        for direction in ("oifname", "iifname"):
            clamp = nj.mss_clamp(direction, plan.vxlan.device, plan.vxlan.mss)
            body.append(NODE.rule("forward", clamp))
    return body


def node_fingerprint(plan: NodePlan) -> str:
    return nj.fingerprint(_node_skeleton(plan))


def _slot_commands(routing: RoutingSettings, slot: int) -> list[Json]:
    mark, mask, chain = routing.mark(slot), routing.mark_mask, slot_chain(slot)
    return [
        NODE.chain(chain),
        NODE.rule(chain, [nj.set_bits(nj.meta("mark"), mask, mark)]),
        NODE.rule(chain, [nj.set_bits(nj.ct("mark"), mask, mark)]),
    ]


def _restore_elements(routing: RoutingSettings, slots: Iterable[int], with_verdict: bool) -> Json:
    def element(slot: int) -> Any:
        return [routing.mark(slot), _goto(slot)] if with_verdict else routing.mark(slot)

    return NODE.elements(RESTORE_MAP, [element(slot) for slot in sorted(slots)])


@dataclass(frozen=True, slots=True)
class _Classify(nj.RawElements):
    """classify4 elements for Classification.element tuples, sorted (deterministic output)."""

    entries: tuple[tuple[str, str, int], ...]
    with_verdict: bool

    def plain(self) -> list[Any]:
        if self.with_verdict:
            return [[{"concat": [iif, src]}, _goto(slot)] for iif, src, slot in self.entries]
        return [{"concat": [iif, src]} for iif, src, _ in self.entries]

    def text(self) -> str:
        q = nj.quote
        if self.with_verdict:
            goto = {slot: f'{{"goto":{{"target":{q(slot_chain(slot))}}}}}' for slot in {e[2] for e in self.entries}}
            parts = [f'[{{"concat":[{q(iif)},{q(src)}]}},{goto[slot]}]' for iif, src, slot in self.entries]
        else:
            parts = [f'{{"concat":[{q(iif)},{q(src)}]}}' for iif, src, _ in self.entries]
        return "[" + ",".join(parts) + "]"


def _classify_elements(entries: Collection[tuple[str, str, int]], with_verdict: bool) -> Json:
    """Map elements for Classification.element tuples."""
    return NODE.elements(CLASSIFY_MAP, _Classify(tuple(sorted(entries)), with_verdict))


def _cluster_elements(cluster: Iterable[IPv4Network]) -> Json:
    def element(net: IPv4Network) -> Any:
        if net.prefixlen == 32:
            return str(net.network_address)
        return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}

    return NODE.elements(CLUSTER_SET, [element(net) for net in cluster])


def render_node(plan: NodePlan) -> Json:
    """The transaction that replaces our node table with exactly `plan`."""
    skeleton = _node_skeleton(plan)
    slots = [table.slot for table in plan.tables]
    body = skeleton + nj.fingerprint_commands(NODE, skeleton)
    for slot in slots:
        body += _slot_commands(plan.routing, slot)
    if plan.cluster:
        body.append(_cluster_elements(plan.cluster))
    if slots:
        body.append(_restore_elements(plan.routing, slots, with_verdict=True))
    if plan.classifications:
        body.append(_classify_elements([c.element for c in plan.classifications], True))
    return nj.document(nj.replace_table(NODE, body))


def node_state(plan: NodePlan) -> NftState:
    """The state `plan` leaves in the kernel."""
    return NftState(
        fingerprint=node_fingerprint(plan),
        slots=frozenset(table.slot for table in plan.tables),
        classifications=frozenset(c.element for c in plan.classifications),
        cluster=plan.cluster,
    )


def changes(old: NftState | None, new: NftState) -> ApplyStats:
    """What going from `old` to `new` changes: entries and slots added or removed; a whole
    table replaced and a new cluster set count as changed."""
    before = old or NftState("", frozenset(), frozenset(), ())
    added = len(new.classifications - before.classifications) + len(new.slots - before.slots)
    removed = len(before.classifications - new.classifications) + len(before.slots - new.slots)
    replaced = old is None or old.fingerprint != new.fingerprint
    return ApplyStats(added, removed, int(replaced) + int(before.cluster != new.cluster))


def reconcile_node(
    current: NftState | None, plan: NodePlan, wanted: NftState | None = None
) -> Json:
    """The cheapest transaction taking `current` to `plan` (whose `node_state` the caller
    may pass as `wanted`); no commands when in sync.

    Order inside the (atomic) transaction follows the kernel's references: new slot
    chains before the elements that jump to them, element deletes before chain deletes.
    """
    wanted = wanted or node_state(plan)
    if current is None or current.fingerprint != wanted.fingerprint:
        return render_node(plan)
    return nj.document(_node_delta(current, wanted, plan.routing))


def _node_delta(old: NftState, new: NftState, routing: RoutingSettings) -> Iterator[Json]:
    added_slots, removed_slots = new.slots - old.slots, old.slots - new.slots
    for slot in sorted(added_slots):
        yield from map(nj.add, _slot_commands(routing, slot))
    if added_slots:
        yield nj.add(_restore_elements(routing, added_slots, with_verdict=True))
    stale = old.classifications - new.classifications
    fresh = new.classifications - old.classifications
    if len(stale) > FLUSH_RATIO * (len(old.classifications) - len(stale)):
        # Most of the map goes: emptying it and adding back what stays is cheaper.
        yield nj.flush(NODE.named("map", CLASSIFY_MAP))
        fresh = new.classifications
    elif stale:
        yield nj.delete(_classify_elements(stale, with_verdict=False))
    if fresh:
        yield nj.add(_classify_elements(fresh, with_verdict=True))
    if old.cluster != new.cluster:
        yield nj.flush(NODE.named("set", CLUSTER_SET))
        if new.cluster:
            yield nj.add(_cluster_elements(new.cluster))
    if removed_slots:
        yield nj.delete(_restore_elements(routing, removed_slots, with_verdict=False))
    for slot in sorted(removed_slots):
        yield nj.flush(NODE.chain(slot_chain(slot)))
        yield nj.delete(NODE.chain(slot_chain(slot)))


# ---------------------------------------------------------------- reading back

parse_fingerprint = nj.parse_fingerprint  # re-exported: the drivers' one import
delete_table = nj.delete_table
encode = nj.encode


def _slot_of_chain(name: str) -> int | None:
    suffix = name.removeprefix(SLOT_CHAIN_PREFIX)
    return int(suffix) if name.startswith(SLOT_CHAIN_PREFIX) and suffix.isdigit() else None


def _slot_of_verdict(verdict: Json) -> int | None:
    return _slot_of_chain(str(verdict.get("goto", {}).get("target", "")))


def _parse_cluster(element: Any) -> list[IPv4Network]:
    if isinstance(element, str):
        return [IPv4Network(element)]
    if "prefix" in element:
        return [IPv4Network(f"{element['prefix']['addr']}/{element['prefix']['len']}")]
    first, last = (IPv4Address(a) for a in element["range"])
    return list(summarize_address_range(first, last))


def parse_node_table(listing: Json, routing: RoutingSettings) -> NftState:
    """Our node table as the kernel lists it (`nft -j list table inet egressgw`).

    Anything it cannot account for (a slot chain without its restore element, an element
    jumping elsewhere) blanks the fingerprint, so the next apply replaces the table whole.
    """
    chains = (_slot_of_chain(c["name"]) for c in nj.objects(listing, "chain"))
    slots = {slot for slot in chains if slot is not None}
    restore = {routing.slot_of_mark(key): _slot_of_verdict(v)
               for key, v in nj.elements(listing, "map", RESTORE_MAP)}  # fmt: skip
    classifications = set()
    for key, verdict in nj.elements(listing, "map", CLASSIFY_MAP):
        iifname, source = key["concat"]
        slot = _slot_of_verdict(verdict)
        if slot is not None:
            classifications.add((str(iifname), str(source), slot))
    cluster = [net for e in nj.elements(listing, "set", CLUSTER_SET) for net in _parse_cluster(e)]
    coherent = restore == {s: s for s in slots} and all(c[2] in slots for c in classifications)
    return NftState(
        fingerprint=nj.parse_fingerprint(listing) if coherent else "",
        slots=frozenset(slots),
        classifications=frozenset(classifications),
        cluster=tuple(collapse_addresses(cluster)),
    )


# ---------------------------------------------------------------- gateway table

GATEWAY = nj.Table(ownership.GATEWAY_NFT_TABLE)


def _gateway_body(plan: GatewayPlan) -> list[Json]:
    ingress = sorted(
        ([plan.vxlan.device] if plan.vxlan is not None else [])
        + ([plan.uplink] if plan.native else [])
    )
    body = [GATEWAY.chain("postrouting", ("nat", "postrouting", PRIO_SRCNAT))]
    if ingress:
        snat = {"snat": {"family": "ip", "addr": str(plan.egress_ip)}}
        matches = [
            nj.match(nj.meta("iifname"), {"set": ingress}),
            nj.match(nj.meta("oifname"), plan.uplink),
        ]
        body.append(GATEWAY.rule("postrouting", [*matches, snat]))
    if plan.vxlan is not None:
        body.append(GATEWAY.chain("forward", ("filter", "forward", PRIO_MANGLE)))
        for direction in ("iifname", "oifname"):
            clamp = nj.mss_clamp(direction, plan.vxlan.device, plan.vxlan.mss)
            body.append(GATEWAY.rule("forward", clamp))
    return body


def gateway_fingerprint(plan: GatewayPlan) -> str:
    return nj.fingerprint(_gateway_body(plan))


def render_gateway(plan: GatewayPlan) -> Json:
    """The transaction that replaces our gateway table with exactly `plan`."""
    body = _gateway_body(plan)
    return nj.document(nj.replace_table(GATEWAY, body + nj.fingerprint_commands(GATEWAY, body)))


def reconcile_gateway(current_fingerprint: str | None, plan: GatewayPlan) -> Json:
    """`render_gateway(plan)` unless the listed table already has its fingerprint."""
    if current_fingerprint == gateway_fingerprint(plan):
        return nj.document([])
    return render_gateway(plan)
