"""The generated CRDs accept every example and refuse what a schema can refuse.

Objects are judged offline as the API server would (tests/unit/kube/apicheck.py: defaults,
structural schema with strict field validation, CEL rules via cel-python). Every file in
tests/testdata/invalid must be classified below: refused by the CRD (at the field its header
names, or an ancestor of it), refused by the API server's own machinery, or caught only by
egressgw's own validation, with the reason: refused or warned by the admission webhook, or
caught by `egressgw validate` alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from egressgw.kube import api
from egressgw.kube.crds import crds
from tests.unit.kube.apicheck import check, evaluate

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
INVALID = ROOT / "tests" / "testdata" / "invalid"
BY_KIND = {c["spec"]["names"]["kind"]: c for c in crds()}

API_SERVER = {
    "bad-name": "metadata.name is checked by the API server for every object",
    "unknown-api-version": "no resource is served at that group/version (unless Calico OSS's"
    " CRDs are installed, where our own validation still refuses it)",
    "unknown-kind": "no such resource: the API server answers 404",
    "duplicate-key": "kubectl refuses duplicate YAML keys; the server's strict decoding too",
    "yaml-syntax-error": "kubectl cannot parse it",
}
WEBHOOK_REFUSES = {
    "ippool-bad-selector": "the Calico selector grammar needs a parser, not a regex or CEL:"
    " the admission webhook refuses it",
    "policy-bad-selector": "the Calico selector grammar needs a parser, not a regex or CEL:"
    " the admission webhook refuses it",
    "ippool-overlap": "compares two pools: the admission webhook refuses the second, as"
    " Calico's API server does",
}
WEBHOOK_WARNS = {
    "bgppeer-unknown-filter": "refers to another object (the webhook warns: kubectl apply may"
    " create the peer before its filter)",
    "egw-native-ip-without-aws-subnet": "refers to the IPPool (the webhook warns, the"
    " controller reports Degraded)",
    "egw-pool-cidr-mismatch": "refers to the IPPool (the webhook warns, the controller"
    " reports Degraded)",
    "egw-pool-cidr-not-found": "refers to the IPPool (the webhook warns, the controller"
    " reports Degraded)",
    "egw-pool-not-found": "refers to the IPPool (the webhook warns, the controller reports"
    " Degraded)",
}
VALIDATE_ONLY = {
    "duplicate-object": "two objects in one file; the API server would apply both in turn",
    "cluster-scoped-with-namespace": "the API server silently drops metadata.namespace of a"
    " cluster-scoped object before any webhook sees it",
}
OURS_ONLY = WEBHOOK_REFUSES | WEBHOOK_WARNS | VALIDATE_ONLY
"""Caught by egressgw's own validation only: `egressgw validate` catches all of them; on a
cluster the admission webhook (tests/unit/kube/test_webhook.py) refuses or warns."""


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _judge(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return check(BY_KIND[doc["kind"]], doc)


def _expected_field(path: Path) -> str:
    header = next(line for line in path.read_text().splitlines() if line.startswith("# expect: "))
    return header.removeprefix("# expect: ").split("|", 1)[0].strip()


SCHEMA_CASES = sorted(
    p for p in INVALID.glob("*.yaml") if p.stem not in API_SERVER and p.stem not in OURS_ONLY
)


def test_one_crd_per_kind_we_own_under_the_reference_groups() -> None:
    names = sorted(c["metadata"]["name"] for c in crds())
    assert names == sorted(f"{r.plural}.{r.group}" for r in api.OUR_KINDS)
    assert BY_KIND["EgressGateway"]["spec"]["group"] == "operator.tigera.io"
    assert BY_KIND["EgressGateway"]["spec"]["scope"] == "Namespaced"
    assert BY_KIND["IPPool"]["spec"]["scope"] == "Cluster"
    version = BY_KIND["EgressGateway"]["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Replicas", "State", "Ready", "Age"]


@pytest.mark.parametrize("crd", crds(), ids=lambda c: c["metadata"]["name"])
def test_crd_is_a_valid_kubernetes_object(crd: dict[str, Any]) -> None:
    kubernetes_validate.validate(crd, "1.31", strict=True)


def test_beside_calico_moves_only_our_crds_out_of_calicos_way() -> None:
    moved = {c["spec"]["names"]["kind"]: c["spec"]["group"] for c in crds(api.ApiMap.beside_calico())}
    assert moved["IPPool"] == "crd.projectcalico.org"
    assert moved["EgressGateway"] == "operator.tigera.io"
    assert moved["EgressGatewayPolicy"] == "projectcalico.org"


def test_every_invalid_file_is_classified() -> None:
    stems = {p.stem for p in INVALID.glob("*.yaml")}
    assert set(API_SERVER) | set(OURS_ONLY) <= stems
    groups = [API_SERVER, WEBHOOK_REFUSES, WEBHOOK_WARNS, VALIDATE_ONLY]
    assert sum(map(len, groups)) == len(set().union(*groups)), "a file in two classes"
    assert len(SCHEMA_CASES) >= 30


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_examples_are_accepted(path: Path) -> None:
    for doc in _docs(path):
        if doc["kind"] in BY_KIND:
            assert _judge(doc) == [], doc["metadata"]["name"]


@pytest.mark.parametrize("path", SCHEMA_CASES, ids=lambda p: p.stem)
def test_invalid_manifest_is_refused_by_the_crd(path: Path) -> None:
    expected = _expected_field(path)
    errors = [e for doc in _docs(path) for e in _judge(doc)]
    assert errors, "accepted"
    assert any(expected == f or expected.startswith((f + ".", f + "[")) for f, _ in errors), errors


def test_defaults_are_the_reference_operators() -> None:
    doc = _docs(INVALID / "egw-http-timeout-below-interval.yaml")[0]
    doc["spec"]["egressGatewayFailureDetection"]["httpProbe"]["timeoutSeconds"] = 30
    assert _judge(doc) == []
    from tests.unit.kube.apicheck import defaulted

    schema = BY_KIND["EgressGateway"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = defaulted(schema, doc)["spec"]
    assert (spec["replicas"], spec["logSeverity"]) == (1, "Info")
    assert spec["egressGatewayFailureDetection"]["httpProbe"]["intervalSeconds"] == 10
    pool = BY_KIND["IPPool"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert "default" not in pool["properties"]["spec"]["properties"]["nodeSelector"]


@pytest.mark.parametrize(
    ("text", "valid"),
    [("65535:65535", True), ("65536:1", False), ("1:2:4294967295", True), ("1:2:4294967296", False),
     ("01:2", False)],
)
def test_community_rule(text: str, valid: bool) -> None:
    schema = BY_KIND["BGPFilter"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rule_node = schema["properties"]["spec"]["properties"]["exportV4"]["items"]["properties"]
    node = rule_node["communities"]["properties"]["values"]["items"]
    import re

    ok = bool(re.fullmatch(node["pattern"].strip("^$"), text)) and all(
        evaluate(v["rule"], text) for v in node["x-kubernetes-validations"]
    )
    assert ok is valid
