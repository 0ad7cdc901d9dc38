"""Manifest text -> resources: documents, lists, JSON, lines, and problems reported together."""

from __future__ import annotations

import json

import pytest

from egressgw.model import IPPool, ManifestError, Namespace, Origin, Pod
from egressgw.model.parsing import from_dict, parse_documents, to_dict

POOL = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: {name}
spec:
  cidr: {cidr}
"""


def _problems(text: str, source: str = "t.yaml") -> list[str]:
    with pytest.raises(ManifestError) as caught:
        parse_documents(text, source)
    return [str(p) for p in caught.value.problems]


def test_documents_are_returned_in_order_and_empty_ones_skipped() -> None:
    text = "---\n" + POOL.format(name="b", cidr="10.1.0.0/16") + "---\n---\n"
    text += POOL.format(name="a", cidr="10.2.0.0/16")

    resources = parse_documents(text, "pools.yaml")

    assert [r.metadata.name for r in resources] == ["b", "a"]
    assert all(isinstance(r, IPPool) for r in resources)


def test_origin_remembers_file_and_first_line() -> None:
    text = "# comment\n---\n" + POOL.format(name="a", cidr="10.2.0.0/16")

    (pool,) = parse_documents(text, "pools.yaml")

    assert pool.origin is not None
    assert (pool.origin.source, pool.origin.line) == ("pools.yaml", 3)
    assert pool.origin.line_of(("spec", "cidr")) == 8


def test_a_kind_list_is_expanded_with_item_lines() -> None:
    text = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: tenant0-egw}
- apiVersion: v1
  kind: Pod
  metadata: {name: netshoot}
  spec: {nodeName: 7}
"""
    problems = _problems(text)

    assert problems == [
        "t.yaml:10: Pod/default/netshoot: spec.nodeName: Input should be a valid string"
    ]


def test_list_items_become_resources() -> None:
    items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}]
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})

    (ns,) = parse_documents(text, "list.json")

    assert isinstance(ns, Namespace)


def test_json_with_tabs_is_read() -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    text = json.dumps(obj, indent="\t")

    (pod,) = parse_documents(text, "pod.json")

    assert isinstance(pod, Pod) and pod.metadata.namespace == "default"


def test_problems_of_all_documents_are_reported_together_in_line_order() -> None:
    text = (
        POOL.format(name="a", cidr="10.0.0.0/33")
        + "---\n"
        + POOL.format(name="b", cidr="10.0.0.1/24")
        + "---\n"
        + "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
    )

    problems = _problems(text)

    assert problems == [
        "t.yaml:6: IPPool/a: spec.cidr: '10.0.0.0/33' must be a valid subnet",
        "t.yaml:13: IPPool/b: spec.cidr: 10.0.0.1/24 is not strictly masked"
        " (did you mean 10.0.0.0/24?)",
        "t.yaml:16: Secret/s: kind: unknown kind 'Secret' (apiVersion 'v1'); known kinds:"
        " BGPConfiguration, BGPFilter, BGPPeer, EgressGateway, EgressGatewayPolicy,"
        " FelixConfiguration, GlobalNetworkSet, IPPool, IPReservation, Namespace, Node, Pod",
    ]


def test_documents_before_a_syntax_error_are_checked_too() -> None:
    text = POOL.format(name="a", cidr="10.0.0.0/33") + "---\nfoo: : bar\n"

    problems = _problems(text)

    assert len(problems) == 2
    assert problems[1].startswith("t.yaml:8: YAML syntax error: ")


def test_a_document_that_is_not_a_mapping_is_refused() -> None:
    assert _problems("- a\n- b\n") == ["t.yaml:1: a manifest must be a mapping (an object)"]


def test_missing_kind_is_refused() -> None:
    assert _problems("apiVersion: v1\nmetadata: {name: x}\n") == [
        "t.yaml:1: kind: kind is required"
    ]


def test_from_dict_and_to_dict_round_trip() -> None:
    obj = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": "p", "labels": {"a": "b"}},
        "spec": {"cidr": "10.99.0.0/29", "blockSize": 31, "disableBGPExport": True},
    }

    pool = from_dict(obj)

    assert isinstance(pool, IPPool)
    written = to_dict(pool)
    assert written["spec"]["disableBGPExport"] is True
    assert written["spec"]["cidr"] == "10.99.0.0/29"
    assert from_dict(written) == pool


def test_from_dict_problems_carry_the_given_source_and_line() -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"}}

    with pytest.raises(ManifestError) as caught:
        from_dict(obj, source="store", line=4)

    (problem,) = caught.value.problems
    assert (problem.source, problem.line, problem.field) == ("store", 4, "metadata.name")
    assert (problem.kind, problem.namespace, problem.name) == ("Pod", "default", "Bad_Name")


def test_from_dict_refuses_a_list() -> None:
    with pytest.raises(ManifestError, match="List"):
        from_dict({"apiVersion": "v1", "kind": "List", "items": []})


def test_equality_ignores_where_an_object_was_read() -> None:
    (a,) = parse_documents(POOL.format(name="a", cidr="10.0.0.0/16"), "one.yaml")
    (b,) = parse_documents("\n\n" + POOL.format(name="a", cidr="10.0.0.0/16"), "two.yaml")

    assert a == b
    assert a.origin != b.origin
    assert a.located(Origin("x")).origin == Origin("x")
    assert a.origin is not None and a.origin.source == "one.yaml"


def test_problem_without_kind_or_line_formats_simply() -> None:
    problems = _problems("\t- x", source="tab.yaml")

    assert problems[0].startswith("tab.yaml:1: YAML syntax error")


def test_an_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = "\n".join(lines) + "\nkind: Namespace\n"

    problems = _problems(text)

    assert len(problems) == 1 and "document too large" in problems[0]
