"""The admission webhook: what it refuses, warns and lets through, over real HTTPS, and the
CA Secret and caBundle it shares across replicas (against the API emulator).

Reviews are built as the API server sends them: the object already defaulted by its CRD and
carrying server metadata. Files of tests/testdata/invalid are applied document by document,
as `kubectl apply -f` does, each judged against the objects admitted before it.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from egressgw.kube import api, certs, install, webhook, webhooktls
from egressgw.kube.client import KubeClient
from egressgw.kube.crds import crds
from egressgw.kube.store import KubeStore
from egressgw.kube.webhookserver import WebhookServer, run_webhook, tls_context
from egressgw.model import Resource
from egressgw.model.parsing import from_dict
from tests.unit.kube.apicheck import defaulted
from tests.unit.kube.emulator import ApiServer
from tests.unit.kube.test_crds import (
    API_SERVER,
    INVALID,
    ROOT,
    SCHEMA_CASES,
    VALIDATE_ONLY,
    WEBHOOK_REFUSES,
    WEBHOOK_WARNS,
)

BY_KIND = {r.kind: r for r in api.OUR_KINDS}
SCHEMAS = {c["spec"]["names"]["kind"]: c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
           for c in crds()}
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
NS = "egressgw-system"
HOST = f"egressgw-webhook.{NS}.svc"


def as_sent(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` as the API server hands it to a webhook: defaulted, with server metadata."""
    obj: dict[str, Any] = defaulted(SCHEMAS[doc["kind"]], copy.deepcopy(doc))
    meta = obj["metadata"]
    if BY_KIND[doc["kind"]].namespaced:
        meta.setdefault("namespace", "default")
    meta.update(uid="0b5e-4c", creationTimestamp="2026-01-01T00:00:00Z", generation=1,
                managedFields=[{"manager": "kubectl", "operation": "Apply"}])
    return obj


def admission(
    obj: dict[str, Any], operation: str = "CREATE", old: dict[str, Any] | None = None
) -> dict[str, Any]:
    res = BY_KIND[obj["kind"]]
    request = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": res.group, "version": res.version, "kind": res.kind},
        "resource": {"group": res.group, "version": res.version, "resource": res.plural},
        "name": obj["metadata"]["name"], "namespace": obj["metadata"].get("namespace"),
        "operation": operation, "object": obj, "oldObject": old, "dryRun": False,
        "userInfo": {"username": "admin"},
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def applied(docs: list[dict[str, Any]], known: list[Resource] | None = None) -> list[dict[str, Any]]:
    """Each document's response, in order; admitted ones join the known objects."""
    known = [] if known is None else known
    answers = []
    for doc in docs:
        answer = webhook.review(admission(as_sent(doc)), known)["response"]
        answers.append(answer)
        if answer["allowed"]:
            known.append(from_dict(doc))
    return answers


def docs_of(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") in BY_KIND]


def expectation(path: Path) -> str:
    """`field: message` from the file's `# expect: field | message` header."""
    header = next(ln for ln in path.read_text().splitlines() if ln.startswith("# expect: "))
    field, _, message = header.removeprefix("# expect: ").partition("|")
    return f"{field.strip()}: {message.strip()}"


def refusal(answer: dict[str, Any]) -> str:
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 422 and answer["status"]["reason"] == "Invalid"
    message: str = answer["status"]["message"]
    return message


# -- what it refuses, warns and allows ----------------------------------------------------------


@pytest.mark.parametrize("example", sorted(p for p in (ROOT / "examples").iterdir() if p.is_dir()),
                         ids=lambda p: p.name)
def test_examples_are_allowed_in_any_order(example: Path) -> None:
    docs = [d for p in sorted(example.glob("*.yaml")) for d in docs_of(p)]
    assert docs
    for order in (docs, docs[::-1]):
        assert all(a["allowed"] for a in applied(order)), example
    everything = [from_dict(d) for d in docs]
    for doc in docs:  # with all the others present, nothing to warn about either
        others = [r for r in everything if r.key != from_dict(doc).key]
        assert webhook.review(admission(as_sent(doc)), others)["response"] == {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True}


@pytest.mark.parametrize("stem", sorted(WEBHOOK_REFUSES))
def test_what_only_our_validation_sees_is_refused_naming_the_field(stem: str) -> None:
    path = INVALID / f"{stem}.yaml"
    *admitted, last = applied(docs_of(path))
    assert all(a["allowed"] for a in admitted)
    message = refusal(last)
    assert expectation(path) in message
    kind, name = docs_of(path)[-1]["kind"], docs_of(path)[-1]["metadata"]["name"]
    assert message.startswith(f"{kind}/{name}: ")


def test_the_refusal_reads_as_the_issue_asks() -> None:
    doc = docs_of(INVALID / "policy-bad-selector.yaml")[0]
    doc["metadata"]["name"] = "egress-gateway-policy"
    (answer,) = applied([doc])
    assert refusal(answer) == ("EgressGatewayPolicy/egress-gateway-policy: spec.rules[0].gateway"
                               ".selector: invalid selector: expected '==' (at position 12)")


@pytest.mark.parametrize("path", SCHEMA_CASES, ids=lambda p: p.stem)
def test_what_the_crd_refuses_the_webhook_refuses_too(path: Path) -> None:
    # The API server runs the CRD's schema first; this is the same judgement, twice over.
    answers = applied([yaml.safe_load(t) for t in path.read_text().split("\n---\n")])
    assert any(not a["allowed"] and expectation(path).split(":")[0] in a["status"]["message"]
               for a in answers)


@pytest.mark.parametrize("stem", sorted(WEBHOOK_WARNS))
def test_references_to_other_objects_only_warn(stem: str) -> None:
    path = INVALID / f"{stem}.yaml"
    answers = applied(docs_of(path))
    assert all(a["allowed"] for a in answers)
    warnings = [w for a in answers for w in a.get("warnings", [])]
    assert len(warnings) == 1 and expectation(path) in warnings[0], warnings


def test_every_invalid_file_is_judged_here_or_is_not_the_webhooks() -> None:
    # VALIDATE_ONLY: one object on the cluster (the second of a duplicate is an update) or a
    # namespace the API server drops before any webhook runs.
    stems = {p.stem for p in INVALID.glob("*.yaml")}
    judged = set(WEBHOOK_REFUSES) | set(WEBHOOK_WARNS) | {p.stem for p in SCHEMA_CASES}
    assert stems == judged | set(VALIDATE_ONLY) | set(API_SERVER)


def test_a_gateway_before_its_pool_warns_and_after_it_does_not() -> None:
    docs = docs_of(ROOT / "examples/azure-hub-spoke/egw-tenants.yaml")
    gateway, pool = (next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
                     for kind, name in [("EgressGateway", "tenant0-egw"), ("IPPool", "tenant0-pool")])
    first, second = applied([gateway, pool])
    assert first["allowed"] and "IPPool 'tenant0-pool' not found" in first["warnings"][0]
    assert second == {"uid": second["uid"], "allowed": True}
    assert "warnings" not in applied([pool, gateway])[1]


def test_an_overlapping_pool_is_refused_whichever_comes_first_and_not_against_itself() -> None:
    a, b = docs_of(INVALID / "ippool-overlap.yaml")
    assert "overlaps" in refusal(applied([b, a])[1])
    known = [from_dict(a)]
    moved = copy.deepcopy(a)
    moved["spec"]["cidr"] = "10.99.0.0/29"  # an update of the same pool
    assert webhook.review(admission(as_sent(moved), "UPDATE", as_sent(a)), known)["response"]["allowed"]


def test_before_the_objects_are_read_cross_checks_are_skipped_not_guessed() -> None:
    gateway = docs_of(INVALID / "egw-native-ip-without-aws-subnet.yaml")[1]
    answer = webhook.review(admission(as_sent(gateway)), None)["response"]
    assert answer["allowed"] and answer["warnings"] == [webhook.NOT_SYNCED]
    bad = docs_of(INVALID / "ippool-bad-selector.yaml")[0]
    assert "spec.nodeSelector" in refusal(webhook.review(admission(as_sent(bad)), None)["response"])


def test_an_update_is_refused_only_for_problems_it_brings() -> None:
    bad = as_sent(docs_of(INVALID / "policy-bad-selector.yaml")[0])
    relabelled = copy.deepcopy(bad)
    relabelled["metadata"]["labels"] = {"team": "net"}
    answer = webhook.review(admission(relabelled, "UPDATE", bad), [])["response"]
    assert answer["allowed"] and "(allowed: it was already so)" in answer["warnings"][0]
    good = as_sent(docs_of(ROOT / "examples/azure-hub-spoke/egw-policy.yaml")[0])
    broken = copy.deepcopy(good)
    broken["spec"]["rules"][1]["gateway"]["selector"] = "egress-code = 'red'"
    assert "selector" in refusal(webhook.review(admission(broken, "UPDATE", good), [])["response"])


def test_deletes_objects_being_deleted_and_kinds_not_ours_are_allowed() -> None:
    bad = as_sent(docs_of(INVALID / "ippool-bad-selector.yaml")[0])
    delete = admission(bad, "DELETE")
    delete["request"]["object"] = None
    assert webhook.review(delete, [])["response"]["allowed"]
    calicos = admission(bad)
    calicos["request"]["kind"] = {"group": "crd.projectcalico.org", "version": "v1", "kind": "IPPool"}
    assert webhook.review(calicos, [])["response"]["allowed"]
    finalizing = copy.deepcopy(bad)
    finalizing["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert webhook.review(admission(finalizing, "UPDATE", bad), [])["response"]["allowed"]


@pytest.mark.parametrize(
    ("body", "uid", "why"),
    [
        (None, "", "the body must be a JSON object"),
        ([1, 2], "", "the body must be a JSON object"),
        ({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "x"}},
         "x", "expected apiVersion admission.k8s.io/v1"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, "", "request must be"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 7}},
         "", "request.uid is missing"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
          "request": {"uid": "y", "operation": "CREATE", "kind": "IPPool"}}, "y", "request.kind must"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
          "request": {"uid": "z", "operation": "CREATE", "object": "text",
                      "kind": {"group": "projectcalico.org", "version": "v3", "kind": "IPPool"}}},
         "z", "request.object must be an object"),
    ],
)
def test_a_review_it_cannot_read_is_refused_saying_why(body: Any, uid: str, why: str) -> None:
    answer = webhook.review(body, [])
    assert (answer["apiVersion"], answer["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    response = answer["response"]
    assert response["uid"] == uid and response["allowed"] is False
    assert response["status"]["code"] == 400
    assert response["status"]["message"].startswith("egressgw webhook: cannot read")
    assert why in response["status"]["message"]


def test_a_non_object_manifest_is_refused_not_crashed_on() -> None:
    review = admission(as_sent(docs_of(INVALID / "ippool-bad-selector.yaml")[0]))
    review["request"]["object"] = {"kind": "IPPool", "metadata": "x", "spec": []}
    answer = webhook.review(review, [])["response"]
    assert answer["allowed"] is False and answer["status"]["code"] == 422


# -- certificates and HTTPS ------------------------------------------------------------------------


def test_certificates_carry_what_the_api_server_requires() -> None:
    ca = certs.new_ca(NOW)
    leaf = x509.load_pem_x509_certificate(
        certs.serving_cert(ca, certs.service_names("egressgw-webhook", NS), NOW).cert_pem)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert HOST in names.get_values_for_type(x509.DNSName)
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    root = x509.load_pem_x509_certificate(ca.cert_pem)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf.verify_directly_issued_by(root)
    assert ca.not_after - NOW > timedelta(days=3000)
    with pytest.raises(certs.CertificateError):
        certs.load(certs.KeyPair(ca.cert_pem, certs.new_ca(NOW).key_pem))


def _client_tls(ca_pem: bytes) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca_pem.decode())


async def _post(port: int, body: Any, tls: ssl.SSLContext) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.post(
        f"https://127.0.0.1:{port}{install.WEBHOOK_PATH}", json=body, ssl=tls, server_hostname=HOST,
    ) as resp:
        assert resp.status == 200
        answer: dict[str, Any] = await resp.json()
        return answer


@pytest.mark.asyncio
async def test_https_round_trip_verified_against_the_generated_ca() -> None:
    ca = certs.new_ca(datetime.now(UTC))
    context = tls_context(ca, certs.service_names("egressgw-webhook", NS), datetime.now(UTC))
    server = WebhookServer(lambda: [], context, host="127.0.0.1", port=0)
    port = await server.start()
    try:
        bad = as_sent(docs_of(INVALID / "policy-bad-selector.yaml")[0])
        answer = await _post(port, admission(bad), _client_tls(ca.cert_pem))
        assert answer["response"]["allowed"] is False
        assert "spec.rules[0].gateway.selector" in answer["response"]["status"]["message"]
        async with aiohttp.ClientSession() as session, session.post(
            f"https://127.0.0.1:{port}/validate", data=b"{not json", ssl=_client_tls(ca.cert_pem),
            server_hostname=HOST,
        ) as resp:
            assert (await resp.json())["response"]["status"]["code"] == 400
        stranger = certs.new_ca(datetime.now(UTC))
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await _post(port, admission(bad), _client_tls(stranger.cert_pem))
    finally:
        await server.stop()


# -- the shared CA and the caBundle, against the API emulator ----------------------------------------


@pytest_asyncio.fixture
async def second_client(apiserver: ApiServer) -> AsyncIterator[KubeClient]:
    kube = await KubeClient.connect(url=str(apiserver.url).rstrip("/"))
    try:
        yield kube
    finally:
        await kube.close()


def _secret_ca(apiserver: ApiServer) -> bytes:
    secret = apiserver.stored("", "secrets", NS)[install.WEBHOOK_SECRET]
    return base64.b64decode(secret["data"]["tls.crt"])


@pytest.mark.asyncio
async def test_replicas_starting_together_agree_on_one_ca(
    client: KubeClient, second_client: KubeClient, apiserver: ApiServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="egressgw.kube.webhooktls")
    both_read = asyncio.Barrier(2)  # each replica finds no Secret before either creates one
    for kube in (client, second_client):
        def create(res: Any, obj: Any, _create: Any = kube.create) -> Any:
            async def after_both_read() -> Any:
                await both_read.wait()
                return await _create(res, obj)
            return after_both_read()
        kube.create = create  # type: ignore[method-assign]
    now = lambda: NOW  # noqa: E731
    a, b = await asyncio.gather(
        webhooktls.shared_ca(client, NS, install.WEBHOOK_SECRET, now),
        webhooktls.shared_ca(second_client, NS, install.WEBHOOK_SECRET, now),
    )
    assert a == b and a.cert_pem == _secret_ca(apiserver)
    assert "written by another replica" in caplog.text  # both raced to create; one lost
    assert apiserver.stored("", "secrets", NS)[install.WEBHOOK_SECRET]["type"] == "kubernetes.io/tls"
    later = await webhooktls.shared_ca(client, NS, install.WEBHOOK_SECRET, lambda: NOW + timedelta(days=1))
    assert later == a  # read, not made again


@pytest.mark.asyncio
async def test_a_broken_or_expiring_ca_is_replaced_once(
    client: KubeClient, second_client: KubeClient, apiserver: ApiServer
) -> None:
    apiserver.seed("", "secrets", {"metadata": {"name": install.WEBHOOK_SECRET, "namespace": NS},
                                   "data": {"tls.crt": "bm90IGEgY2VydA=="}})
    now = lambda: NOW  # noqa: E731
    a, b = await asyncio.gather(
        webhooktls.shared_ca(client, NS, install.WEBHOOK_SECRET, now),
        webhooktls.shared_ca(second_client, NS, install.WEBHOOK_SECRET, now),
    )
    assert a == b and a.cert_pem == _secret_ca(apiserver)
    near_expiry = lambda: a.not_after - timedelta(days=10)  # noqa: E731
    renewed = await webhooktls.shared_ca(client, NS, install.WEBHOOK_SECRET, near_expiry)
    assert renewed != a and renewed.cert_pem == _secret_ca(apiserver)


def _bundles(apiserver: ApiServer) -> list[str | None]:
    config = apiserver.stored("admissionregistration.k8s.io", "validatingwebhookconfigurations")
    return [h["clientConfig"].get("caBundle") for h in config[install.WEBHOOK_NAME]["webhooks"]]


@pytest.mark.asyncio
async def test_the_ca_is_published_in_the_webhook_configuration(
    client: KubeClient, apiserver: ApiServer
) -> None:
    ca = certs.new_ca(NOW)
    assert await webhooktls.publish_ca(client, install.WEBHOOK_NAME, ca.cert_pem) is False
    group, plural = "admissionregistration.k8s.io", "validatingwebhookconfigurations"
    apiserver.seed(group, plural, install.webhook_configuration(install.Values()))
    assert _bundles(apiserver) == [None]
    assert await webhooktls.publish_ca(client, install.WEBHOOK_NAME, ca.cert_pem)
    assert _bundles(apiserver) == [base64.b64encode(ca.cert_pem).decode()]
    revision = apiserver.revision
    assert await webhooktls.publish_ca(client, install.WEBHOOK_NAME, ca.cert_pem)
    assert apiserver.revision == revision  # already there: nothing written


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.asyncio
async def test_the_controller_serves_with_the_shared_ca_and_the_clusters_pools(
    client: KubeClient, apiserver: ApiServer
) -> None:
    for crd in crds():
        await client.create(api.CRD, crd)
    group, plural = "admissionregistration.k8s.io", "validatingwebhookconfigurations"
    apiserver.seed(group, plural, install.webhook_configuration(install.Values()))
    first, second = docs_of(INVALID / "ippool-overlap.yaml")
    apiserver.seed("projectcalico.org", "ippools", first)
    store = KubeStore(client, namespace=NS)
    port = _free_port()
    task = asyncio.create_task(run_webhook(
        client, store, namespace=NS, service=install.WEBHOOK_NAME, secret=install.WEBHOOK_SECRET,
        configuration=install.WEBHOOK_NAME, port=port, host="127.0.0.1", retry_delay=0.05))
    try:
        answer: dict[str, Any] = {}
        for _ in range(200):  # until it serves and has read the pools
            await asyncio.sleep(0.02)
            if install.WEBHOOK_SECRET not in apiserver.stored("", "secrets", NS):
                continue
            try:
                answer = await _post(port, admission(as_sent(second)), _client_tls(_secret_ca(apiserver)))
            except aiohttp.ClientConnectorError:
                continue
            if webhook.NOT_SYNCED not in answer["response"].get("warnings", []):
                break
        assert "overlaps with IPPool(tenant0-pool)" in refusal(answer["response"])
        assert _bundles(apiserver) == [base64.b64encode(_secret_ca(apiserver)).decode()]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
