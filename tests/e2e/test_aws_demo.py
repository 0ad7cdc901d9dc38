"""The AWS reference scenario end to end: the real controller, kubelet, agents and gateways
on a lab of namespaces, checked by what the lab's ifconfig.me saw.

The lab comes up once for the module and always goes down. The oracle is `curl` run inside
netshoot's namespace against the echo services, which answer with the source address they
saw; the expected addresses come from the example manifests (each gateway's one Elastic IP)
and the documented layout (us-east-1a's NAT gateway is 198.51.100.1), read here without
egressgw. egressgw is used only to drive: bring the lab up, change annotations, run the demo.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from egressgw.lab import demo, scenarios, up
from egressgw.lab.running import LabHandle
from egressgw.store.codec import resource_store
from egressgw.store.etcd import connect

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "aws-public-ip"
SELECTOR = "egress.projectcalico.org/selector"
POLICY = "egress.projectcalico.org/egressGatewayPolicy"
IFCONFIG_ME, GOOGLE_DNS, LEVEL3 = "203.0.113.100", "203.0.113.8", "203.0.113.4"
NAT_US_EAST_1A = "198.51.100.1"
STEP_TIMEOUT = 5.0
BUILT: dict[str, float] = {}


# --- oracles --------------------------------------------------------------------------------


def elastic_ips() -> dict[str, str]:
    """Each EgressGateway's Elastic IP, as the example manifests list them."""
    docs = yaml.safe_load_all((EXAMPLES / "gateways.yaml").read_text())
    return {d["metadata"]["name"]: d["spec"]["aws"]["elasticIPs"][0] for d in docs if d}


def seen_by(ns: str, address: str) -> str | None:
    """The source address the echo service at `address` saw, asked from `ns`."""
    done = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "curl",
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "1",
            f"http://{address}/",
        ],
        capture_output=True,
        text=True,
        timeout=5,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def eventually_seen(ns: str, address: str, expected: str) -> str | None:
    """What the echo service saw once it saw `expected`, or last, after STEP_TIMEOUT."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while (seen := seen_by(ns, address)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


def namespaces_with(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"{prefix}-")]


# --- the lab --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(run_prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    prefix = f"{run_prefix}a"
    root = tmp_path_factory.mktemp("lab")
    started = time.monotonic()
    handle = up.up(scenarios.AWS, prefix, root=root)
    BUILT["seconds"] = time.monotonic() - started
    try:
        yield handle
    finally:
        handle.down()
        assert namespaces_with(prefix) == []


@pytest.fixture
def netshoot(lab: LabHandle) -> str:
    """netshoot's namespace, with neither netshoot nor its namespace annotated."""
    annotate(lab)
    ns = f"{lab.prefix}-pod-default-netshoot"
    addrs = json.loads(
        subprocess.run(
            ["ip", "-j", "-n", ns, "addr", "show", "eth0"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )[0]["addr_info"]
    # node-1's pod CIDR: netshoot runs in us-east-1a, whose NAT gateway is 198.51.100.1.
    assert [a["local"] for a in addrs] == ["10.244.0.1"]
    return ns


def annotate(lab: LabHandle, selector: str | None = None, policy: str | None = None) -> None:
    """Set netshoot's selector and namespace default's policy annotations (None: remove)."""

    async def run() -> None:
        store = await connect(lab.info.etcd)
        res = resource_store(store)
        try:
            for key, name, value in (
                (("Pod", "default", "netshoot"), SELECTOR, selector),
                (("Namespace", None, "default"), POLICY, policy),
            ):
                if value is None:
                    await res.patch_annotations(key, {}, [name])
                else:
                    await res.patch_annotations(key, {name: value})
        finally:
            await store.close()

    asyncio.run(run())


# --- behaviour ------------------------------------------------------------------------------


def test_the_lab_comes_up_quickly(lab: LabHandle) -> None:
    assert BUILT["seconds"] < 30


def test_pod_selector_leaves_through_each_gateways_elastic_ip(
    lab: LabHandle, netshoot: str
) -> None:
    eips = elastic_ips()
    for n in (1, 2, 3):
        annotate(lab, selector=f"egress-gateway == 'egw-{n}'")
        assert eventually_seen(netshoot, IFCONFIG_ME, eips[f"egw-{n}"]) == eips[f"egw-{n}"]


def test_namespace_policy_picks_the_gateway_by_destination(
    lab: LabHandle, netshoot: str
) -> None:
    eips = elastic_ips()
    annotate(lab, policy="egress-gateway-policy")
    seen = {
        dest: eventually_seen(netshoot, dest, eips[gw])
        for dest, gw in ((GOOGLE_DNS, "egw-5"), (LEVEL3, "egw-6"), (IFCONFIG_ME, "egw-4"))
    }
    assert seen == {GOOGLE_DNS: eips["egw-5"], LEVEL3: eips["egw-6"], IFCONFIG_ME: eips["egw-4"]}


def test_removing_the_annotations_restores_direct_egress(lab: LabHandle, netshoot: str) -> None:
    annotate(lab, selector="egress-gateway == 'egw-2'", policy="egress-gateway-policy")
    assert eventually_seen(netshoot, GOOGLE_DNS, elastic_ips()["egw-5"]) == elastic_ips()["egw-5"]
    annotate(lab)
    seen = {
        d: eventually_seen(netshoot, d, NAT_US_EAST_1A) for d in (GOOGLE_DNS, LEVEL3, IFCONFIG_ME)
    }
    assert seen == dict.fromkeys((GOOGLE_DNS, LEVEL3, IFCONFIG_ME), NAT_US_EAST_1A)


def test_the_demo_reports_what_the_echo_service_saw(lab: LabHandle, netshoot: str) -> None:
    eips = elastic_ips()
    result = demo.aws_demo(lab)
    expected = [
        ("selector", IFCONFIG_ME, eips["egw-1"]),
        ("selector", IFCONFIG_ME, eips["egw-2"]),
        ("selector", IFCONFIG_ME, eips["egw-3"]),
        ("policy", GOOGLE_DNS, eips["egw-5"]),
        ("policy", LEVEL3, eips["egw-6"]),
        ("policy", IFCONFIG_ME, eips["egw-4"]),
        ("reset", GOOGLE_DNS, NAT_US_EAST_1A),
        ("reset", LEVEL3, NAT_US_EAST_1A),
        ("reset", IFCONFIG_ME, NAT_US_EAST_1A),
    ]
    report = result.as_dict()["steps"]
    assert [(s["step"], s["destination"], s["seen"]) for s in report] == expected
    assert [s["via"] for s in report][:6] == ["egw-1", "egw-2", "egw-3", "egw-5", "egw-6", "egw-4"]
    assert [s["expected"] for s in report] == [[e] for _, _, e in expected]
    assert result.ok
    # The demo leaves the annotations as it found them: direct egress.
    assert seen_by(netshoot, IFCONFIG_ME) == NAT_US_EAST_1A
