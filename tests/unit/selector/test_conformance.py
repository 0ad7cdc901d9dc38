"""Every vector of Calico's selector tests (shared/conformance/calico-selectors.json), as is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from egressgw.selector import (
    GlobalUse,
    LabelRestriction,
    SelectorParseError,
    parse,
    validate,
    validate_field,
)
from egressgw.selector.tokens import tokenize

CONFORMANCE = (
    Path(__file__).resolve().parents[3].parent / "shared" / "conformance" / "calico-selectors.json"
)
VECTORS: dict[str, Any] = json.loads(CONFORMANCE.read_text(encoding="utf-8"))


def _params(section: str) -> list[Any]:
    """One pytest.param per vector, id'd by section index and a readable excerpt."""
    params = []
    for index, vector in enumerate(VECTORS[section]):
        text = vector if isinstance(vector, str) else vector.get("selector", vector.get("input"))
        label = text if len(text) <= 40 else text[:37] + "..."
        params.append(pytest.param(vector, id=f"{index}:{label}"))
    return params


def test_section_sizes_match_the_grammar_document() -> None:
    sizes = {name: len(VECTORS[name]) for name in VECTORS if name not in ("source", "notes")}
    assert sizes == {
        "match": 98,
        "parse_errors": 45,
        "canonical": 17,
        "valid": 154,
        "parse_error_sources": 45,
        "prefix_visitor": 11,
        "tokenizer": 49,
        "label_restrictions": 32,
        "print_tree": 1,
        "validator_selector_cases": 47,
    }
    assert set(VECTORS["parse_error_sources"]) == set(VECTORS["parse_errors"])


@pytest.mark.parametrize("vector", _params("match"))
def test_match(vector: dict[str, Any]) -> None:
    selector = parse(vector["selector"])
    assert selector.matches(vector["labels"]) is vector["expected"]
    # As parser_test.go does: the canonical form must select the same label maps.
    reparsed = parse(str(selector))
    assert reparsed.matches(vector["labels"]) is vector["expected"]
    assert str(reparsed) == str(selector)


@pytest.mark.parametrize("text", _params("parse_errors"))
def test_parse_error(text: str) -> None:
    with pytest.raises(SelectorParseError) as raised:
        parse(text)
    assert 0 <= raised.value.position <= len(text)
    with pytest.raises(SelectorParseError):
        validate(text)


@pytest.mark.parametrize("vector", _params("canonical"))
def test_canonical(vector: dict[str, Any]) -> None:
    selector = parse(vector["selector"])
    assert str(selector) == vector["canonical"]
    assert str(parse(vector["canonical"])) == vector["canonical"]
    if "uid" in vector:
        assert selector.unique_id == vector["uid"]


@pytest.mark.parametrize("text", _params("valid"))
def test_valid(text: str) -> None:
    validate(text)
    canonical = str(parse(text))
    assert str(parse(canonical)) == canonical


@pytest.mark.parametrize("vector", _params("tokenizer"))
def test_tokenizer(vector: dict[str, Any]) -> None:
    if vector.get("error"):
        with pytest.raises(SelectorParseError):
            tokenize(vector["input"])
        return
    tokens = [[token.kind.value, token.value] for token in tokenize(vector["input"])]
    assert tokens == vector["tokens"]


@pytest.mark.parametrize("vector", _params("prefix_visitor"))
def test_prefix_visitor(vector: dict[str, Any]) -> None:
    prefixed = parse(vector["selector"]).with_label_prefix(vector["prefix"])
    assert str(prefixed) == vector["output"]


def _as_json(restrictions: dict[str, LabelRestriction]) -> dict[str, Any] | None:
    """Our restrictions in the JSON's shape: null when empty, value lists sorted."""
    if not restrictions:
        return None
    return {
        label: {
            "must_be_present": fact.must_be_present,
            "must_be_absent": fact.must_be_absent,
            "must_have_one_of_values": (
                None
                if fact.must_have_one_of_values is None
                else sorted(fact.must_have_one_of_values)
            ),
        }
        for label, fact in restrictions.items()
    }


@pytest.mark.parametrize("vector", _params("label_restrictions"))
def test_label_restrictions(vector: dict[str, Any]) -> None:
    assert _as_json(parse(vector["selector"]).label_restrictions()) == vector["restrictions"]
    if not vector["selector"].strip():
        return  # "all() && ()" would not parse; Calico's test wraps only non-empty ones
    wrapped = parse(f"all() && ({vector['selector']})")
    assert _as_json(wrapped.label_restrictions()) == vector["restrictions"]


@pytest.mark.parametrize("vector", _params("print_tree"))
def test_print_tree(vector: dict[str, Any]) -> None:
    assert parse(vector["selector"]).tree() == vector["tree"]


# validator_selector_cases judge whole objects. These are rejected for reasons other than
# their selectors (field conflicts, pool rules), so for them the selectors must pass.
NOT_ABOUT_SELECTORS = {
    ("api.IPPool", "should reject IP pool with LoadBlancer and nodeSelector other than all()"),
    ("api.IPPool", "should reject IP pool with Tunnel allowedUse and namespaceSelector"),
    (
        "api.IPPool",
        "should reject IP pool with Tunnel and Workload allowedUses and namespaceSelector",
    ),
    ("api.BGPPeer", "should reject BGPPeerSpec with both Node and NodeSelector"),
    ("api.BGPPeer", "should reject BGPPeerSpec with both PeerIP and PeerSelector"),
    ("api.BGPPeer", "should reject BGPPeerSpec with both ASNumber and PeerSelector"),
    ("api.BGPPeer", "should reject BGPPeerSpec with LocalWorkloadSelector and empty ASNumber"),
    ("api.BGPPeer", "should reject BGPPeerSpec with both LocalWorkloadSelector and PeerSelector"),
    ("api.BGPPeer", "should reject BGPPeerSpec with both LocalWorkloadSelector and PeerIP"),
    ("api.NetworkPolicy", "disallow a Service match AND a Selector match"),
    ("api.NetworkPolicy", "disallow a Service match AND a NotSelector match"),
    ("api.NetworkPolicy", "disallow a Service match AND a NamespaceSelector match"),
    ("api.GlobalNetworkPolicy", "disallow a Service match AND a NamespaceSelector match on a GNP"),
}


def _global_use(object_type: str, field: str) -> GlobalUse:
    """The grammar document's §6 rule for a field of a Calico resource."""
    if field.endswith(("Source.NamespaceSelector", "Destination.NamespaceSelector")):
        return GlobalUse.ALONE
    if object_type in ("api.BGPPeer", "api.BGPPeerSpec", "api.Template"):
        return GlobalUse.ANY
    if field.endswith("NotSelector"):
        return GlobalUse.ANY
    return GlobalUse.FORBIDDEN


def _fields_pass(vector: dict[str, Any]) -> bool:
    try:
        for field, text in vector["selector_fields"].items():
            validate_field(text, _global_use(vector["object_type"], field))
    except SelectorParseError:
        return False
    return True


def _validator_params() -> list[Any]:
    return [
        pytest.param(vector, id=f"{index}:{vector['object_type']}:{vector['description']}")
        for index, vector in enumerate(VECTORS["validator_selector_cases"])
    ]


@pytest.mark.parametrize("vector", _validator_params())
def test_validator_selector_case(vector: dict[str, Any]) -> None:
    if (vector["object_type"], vector["description"]) in NOT_ABOUT_SELECTORS:
        assert not vector["expected_valid"]
        assert _fields_pass(vector)
    else:
        assert _fields_pass(vector) is vector["expected_valid"]
