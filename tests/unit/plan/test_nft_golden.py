"""Golden tests: the nft JSON our plans render to, byte for byte (sorted, indented).

Regenerate after an intended change with EGRESSGW_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from egressgw.plan import nft
from tests.unit.plan import nft_examples as ex

GOLDEN = Path(__file__).resolve().parents[2] / "testdata" / "golden" / "nft"


def check(name: str, doc: Any) -> None:
    """Compares the text nft is given (`encode`), re-indented."""
    text = json.dumps(json.loads(nft.encode(doc)), indent=1, sort_keys=True) + "\n"
    path = GOLDEN / name
    if os.environ.get("EGRESSGW_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs; EGRESSGW_UPDATE_GOLDEN=1 to regenerate"


@pytest.mark.parametrize(("name", "doc"), [
    ("node_full.json", lambda: nft.render_node(ex.node_a())),
    ("node_delta.json", lambda: nft.reconcile_node(nft.node_state(ex.node_a()), ex.node_b())),
    ("node_native_full.json", lambda: nft.render_node(ex.node_native())),
    ("gateway.json", lambda: nft.render_gateway(ex.gateway())),
])  # fmt: skip
def test_rendering_matches_golden(name: str, doc: Any) -> None:
    check(name, doc())


def test_in_sync_renders_no_commands() -> None:
    assert nft.reconcile_node(nft.node_state(ex.node_a()), ex.node_a()) == {"nftables": []}
    assert nft.reconcile_gateway(nft.gateway_fingerprint(ex.gateway()), ex.gateway()) == {
        "nftables": []
    }


def test_skeleton_change_replaces_the_whole_table() -> None:
    doc = nft.reconcile_node(nft.node_state(ex.node_a()), ex.node_native())
    assert doc["nftables"][:3] == [{"add": {"table": {"family": "inet", "name": "egressgw"}}},
                                   {"delete": {"table": {"family": "inet", "name": "egressgw"}}},
                                   {"add": {"table": {"family": "inet", "name": "egressgw"}}}]  # fmt: skip


def test_delta_orders_commands_by_reference() -> None:
    """New slot chains before elements jumping to them; old chains after their elements."""
    cmds = nft.reconcile_node(nft.node_state(ex.node_a()), ex.node_b())["nftables"]
    kinds = [
        (verb, next(iter(body)), next(iter(body.values())).get("name"))
        for c in cmds
        for verb, body in c.items()
    ]
    assert kinds.index(("add", "chain", "slot_5")) < kinds.index(("add", "element", "classify4"))
    assert kinds.index(("delete", "element", "classify4")) < kinds.index(
        ("delete", "chain", "slot_3")
    )
    assert kinds.index(("delete", "element", "restore")) < kinds.index(
        ("delete", "chain", "slot_3")
    )


def test_parse_recorded_listing_round_trips() -> None:
    """node_listing.json is what nft 1.0.6 listed after render_node(node_a())."""
    listing = json.loads((GOLDEN / "node_listing.json").read_text())
    plan = ex.node_a()
    assert nft.parse_node_table(listing, plan.routing) == nft.node_state(plan)
    assert (
        nft.changes(nft.parse_node_table(listing, plan.routing), nft.node_state(plan)).changes == 0
    )


def test_incoherent_listing_forces_a_rebuild() -> None:
    listing = json.loads((GOLDEN / "node_listing.json").read_text())
    for item in listing["nftables"]:
        if item.get("map", {}).get("name") == "restore":
            item["map"]["elem"] = item["map"]["elem"][:1]  # a slot chain without its element
    assert nft.parse_node_table(listing, ex.node_a().routing).fingerprint == ""
