"""The install: every object valid against the Kubernetes schemas, least privilege, and the
Helm chart both up to date and rendering exactly the same objects (no helm needed: the
templates are evaluated by tests/unit/kube/helmlite.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from egressgw.cli.kube import app
from egressgw.kube import chart, install
from tests.unit.kube import helmlite

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "egressgw"
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "beside-calico-oss": {"calico": {"oss": True}, "bgp": {"enabled": False}},
    "no-crds-no-namespace": {"crds": {"install": False}, "createNamespace": False},
    "no-webhook": {"webhook": {"enabled": False}},
    "native-etcd-custom": {
        "mode": "native", "datastore": "etcd", "etcd": {"endpoints": "https://10.0.0.5:2379"},
        "namespace": "egw", "image": {"repository": "registry.example/egw", "tag": "1.2",
                                      "pullPolicy": "Always"},
        "vxlan": {"vni": 5000, "port": 4791}, "controller": {"replicas": 3},
        "probes": {"periodSeconds": 7, "failureThreshold": 5}, "aks": True,
        "aws": {"secondaryIpResource": True}, "logLevel": "debug",
        "webhook": {"port": 10443, "failurePolicy": "Ignore"},
    },
}


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _by_kind(values: install.Values) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {_key(m): m for m in install.manifests(values)}


@pytest.mark.parametrize("name", VARIANTS)
def test_every_object_is_valid_for_kubernetes(name: str) -> None:
    for obj in install.manifests(install.Values.model_validate(VARIANTS[name])):
        kubernetes_validate.validate(obj, "1.31", strict=True)


def test_agent_is_host_network_with_only_the_capabilities_it_needs() -> None:
    objs = _by_kind(install.Values())
    agent = objs[("DaemonSet", "egressgw-system", "egressgw-agent")]["spec"]["template"]["spec"]
    assert agent["hostNetwork"] is True
    (container,) = agent["containers"]
    security = container["securityContext"]
    assert security["capabilities"] == {"add": ["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"], "drop": ["ALL"]}
    assert "privileged" not in security and security["allowPrivilegeEscalation"] is False
    assert container["readinessProbe"]["httpGet"] == {"path": "/readiness", "port": 9099}
    controller = objs[("Deployment", "egressgw-system", "egressgw-controller")]["spec"]["template"]["spec"]
    assert controller["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert controller["containers"][0]["securityContext"]["runAsNonRoot"] is True


def test_rbac_is_least_privilege() -> None:
    objs = _by_kind(install.Values())
    agent_rules = objs[("ClusterRole", "", "egressgw-agent")]["rules"]
    writes = {v for r in agent_rules for v in r["verbs"]} - {"get", "list", "watch"}
    assert writes == {"create", "patch"}  # events only
    assert all(r["resources"] == ["events"] for r in agent_rules if "create" in r["verbs"])
    controller_rules = objs[("ClusterRole", "", "egressgw-controller")]["rules"]
    written = {res for r in controller_rules if set(r["verbs"]) - {"get", "list", "watch"}
               for res in r["resources"]}
    assert written == {"egressgateways/status", "deployments", "events",
                       "validatingwebhookconfigurations"}
    (hook,) = [r for r in controller_rules if r["resources"] == ["validatingwebhookconfigurations"]]
    assert hook["verbs"] == ["get", "update"] and hook["resourceNames"] == ["egressgw-webhook"]
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in agent_rules + controller_rules)
    role = objs[("Role", "egressgw-system", "egressgw-controller")]["rules"]
    assert {n for r in role for n in r.get("resourceNames", [])} == {
        "egressgw-controller", "egressgw-state", "egressgw-webhook-ca"}
    # Kubernetes cannot restrict `create` by name: every other verb on secrets is by name.
    secrets = [r for r in role if r["resources"] == ["secrets"]]
    assert all(r.get("resourceNames") == ["egressgw-webhook-ca"] for r in secrets if r["verbs"] != ["create"])
    assert not any(r["resources"] == ["secrets"] for r in controller_rules)


def _controller_container(objs: dict[tuple[str, str, str], dict[str, Any]]) -> dict[str, Any]:
    deployment = objs[("Deployment", "egressgw-system", "egressgw-controller")]
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_webhook_reaches_the_controller_replicas_for_our_kinds_only() -> None:
    objs = _by_kind(install.Values())
    (hook,) = objs[("ValidatingWebhookConfiguration", "", "egressgw-webhook")]["webhooks"]
    assert (hook["sideEffects"], hook["admissionReviewVersions"], hook["timeoutSeconds"]) == ("None", ["v1"], 5)
    assert hook["failurePolicy"] == "Fail" and "caBundle" not in hook["clientConfig"]
    service = objs[("Service", "egressgw-system", "egressgw-webhook")]
    assert hook["clientConfig"]["service"] == {"name": "egressgw-webhook", "namespace": "egressgw-system",
                                               "path": "/validate", "port": 443}
    deployment = objs[("Deployment", "egressgw-system", "egressgw-controller")]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    container = _controller_container(objs)
    assert container["ports"] == [{"name": "webhook", "containerPort": 9443, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "webhook", "scheme": "HTTPS"}
    assert all(r["operations"] == ["CREATE", "UPDATE"] for r in hook["rules"])
    covered = {(g, p) for r in hook["rules"] for g in r["apiGroups"] for p in r["resources"]}
    crds = {(o["spec"]["group"], o["spec"]["names"]["plural"]) for o in objs.values()
            if o["kind"] == "CustomResourceDefinition"}
    assert covered == crds


def test_beside_calico_oss_the_webhook_leaves_calicos_kinds_to_calico() -> None:
    objs = _by_kind(install.Values.model_validate({"calico": {"oss": True}, "crds": {"install": False}}))
    (hook,) = objs[("ValidatingWebhookConfiguration", "", "egressgw-webhook")]["webhooks"]
    covered = sorted(p for r in hook["rules"] for p in r["resources"])
    assert covered == ["egressgatewaypolicies", "egressgateways"]


def test_without_the_webhook_nothing_of_it_is_installed() -> None:
    objs = _by_kind(install.Values.model_validate({"webhook": {"enabled": False}}))
    assert not {k for k in objs if k[0] in ("Service", "ValidatingWebhookConfiguration")}
    assert "ports" not in _controller_container(objs)
    role = objs[("Role", "egressgw-system", "egressgw-controller")]["rules"]
    assert not any("secrets" in r["resources"] for r in role)
    assert objs[("ConfigMap", "egressgw-system", "egressgw-config")]["data"]["EGRESSGW_WEBHOOK_ENABLED"] == "false"


def test_beside_calico_oss_installs_no_crd_calico_owns() -> None:
    objs = install.manifests(install.Values.model_validate({"calico": {"oss": True}}))
    crds = sorted(o["metadata"]["name"] for o in objs if o["kind"] == "CustomResourceDefinition")
    assert crds == ["egressgatewaypolicies.projectcalico.org", "egressgateways.operator.tigera.io"]
    agent = next(o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "egressgw-agent")
    groups = {g for r in agent["rules"] for g in r["apiGroups"]}
    assert "crd.projectcalico.org" in groups


def test_committed_chart_is_what_install_generates() -> None:
    expected = chart.chart_files()
    on_disk = {str(p.relative_to(CHART)): p.read_text() for p in CHART.rglob("*") if p.is_file()}
    assert sorted(on_disk) == sorted(expected), "run: egressgw kube chart --out charts/egressgw"
    stale = [name for name, text in expected.items() if on_disk[name] != text]
    assert not stale, f"stale chart files {stale}; run: egressgw kube chart --out charts/egressgw"


@pytest.mark.parametrize("name", VARIANTS)
def test_chart_renders_exactly_the_install(name: str) -> None:
    values = install.Values.model_validate(VARIANTS[name])
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    _deep_update(chart_values, VARIANTS[name])
    assert install.Values.model_validate(chart_values) == values
    rendered = "\n".join(
        helmlite.render(p.read_text(), chart_values) for p in sorted((CHART / "templates").rglob("*.yaml"))
    )
    objs = [d for d in yaml.safe_load_all(rendered) if d]
    assert sorted(objs, key=_key) == sorted(install.manifests(values), key=_key)


def _deep_update(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict):
            _deep_update(target.setdefault(key, {}), value)
        else:
            target[key] = value


def test_install_manifests_command_reads_a_values_file(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("mode: native\nimage:\n  tag: '9.9'\n")
    result = CliRunner().invoke(app, ["install-manifests", "--values", str(values)])
    assert result.exit_code == 0, result.output
    objs = list(yaml.safe_load_all(result.output))
    config = next(o for o in objs if o["kind"] == "ConfigMap")
    assert config["data"]["EGRESSGW_MODE"] == "native"
    assert config["data"]["EGRESSGW_IMAGE"].endswith(":9.9")
    values.write_text("mode: vxlan-typo\n")
    assert CliRunner().invoke(app, ["install-manifests", "--values", str(values)]).exit_code == 2
