"""The text nft is given (`encode`) is the JSON of the document (`plain`), and a delta that
empties most of classify4 flushes it instead of deleting element by element."""

from __future__ import annotations

import json
from ipaddress import IPv4Address

import pytest

from egressgw.plan import nft
from egressgw.plan import nftjson as nj
from egressgw.plan.dataplane import Classification, NodePlan
from tests.unit.plan import nft_examples as ex


def pods(count: int, slot: int, first: int = 0) -> tuple[Classification, ...]:
    return tuple(Classification(f"cali{i:05d}", IPv4Address(f"10.244.{i // 250}.{i % 250 + 1}"), slot)
                 for i in range(first, first + count))  # fmt: skip


def with_pods(marks: tuple[Classification, ...]) -> NodePlan:
    base = ex.node_a()
    return NodePlan(base.routing, base.cluster, base.tables, marks, base.vxlan)


def commands(doc: nj.Json) -> list[tuple[str, str, str | None]]:
    return [(verb, kind, body.get("name")) for c in doc["nftables"] for verb, obj in c.items()
            for kind, body in obj.items()]  # fmt: skip


@pytest.mark.parametrize("doc", [
    lambda: nft.render_node(ex.node_a()),
    lambda: nft.reconcile_node(nft.node_state(ex.node_a()), ex.node_b()),
    lambda: nft.reconcile_node(nft.node_state(with_pods(pods(40, 0))), with_pods(pods(35, 3, 5))),
    lambda: nft.render_gateway(ex.gateway()),
])  # fmt: skip
def test_encode_is_the_compact_json_of_plain(doc) -> None:
    rendered = doc()
    assert nft.encode(rendered) == json.dumps(nj.plain(rendered), separators=(",", ":"))


def test_element_text_quotes_like_json() -> None:
    odd = (("ca\"l\\i", "10.0.0.1", 0), ("cali\u00e9\u2603", "10.0.0.2", 7))
    doc = nj.document([nj.add(nft.NODE.elements(nft.CLASSIFY_MAP, nft._Classify(odd, True))),
                       nj.delete(nft.NODE.elements(nft.CLASSIFY_MAP, nft._Classify(odd, False)))])  # fmt: skip
    assert json.loads(nft.encode(doc)) == nj.plain(doc)
    assert nj.plain(doc)["nftables"][0]["add"]["element"]["elem"][1] == [
        {"concat": ["cali\u00e9\u2603", "10.0.0.2"]}, {"goto": {"target": "slot_7"}}]


def test_removing_most_entries_flushes_and_adds_back_the_rest() -> None:
    before, after = with_pods(pods(100, 0)), with_pods(pods(20, 0))
    doc = nft.reconcile_node(nft.node_state(before), after)
    assert commands(doc) == [("flush", "map", "classify4"), ("add", "element", "classify4")]
    assert len(nj.plain(doc)["nftables"][1]["add"]["element"]["elem"]) == 20
    assert nft.changes(nft.node_state(before), nft.node_state(after)).removed == 80


def test_removing_a_few_entries_deletes_them() -> None:
    before, after = with_pods(pods(100, 0)), with_pods(pods(70, 0))
    doc = nft.reconcile_node(nft.node_state(before), after)
    assert commands(doc) == [("delete", "element", "classify4")]
    assert len(nj.plain(doc)["nftables"][0]["delete"]["element"]["elem"]) == 30


def test_removing_everything_is_one_flush() -> None:
    doc = nft.reconcile_node(nft.node_state(with_pods(pods(100, 0))), with_pods(()))
    assert commands(doc) == [("flush", "map", "classify4")]
