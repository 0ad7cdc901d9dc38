"""Every container command in the install and in a gateway Deployment is one the image runs.

The manifests and the CLI are written apart; nothing but this test stops a renamed option
or a misspelt `$(VAR)` from shipping. Kubernetes leaves an undefined `$(VAR)` in the
argument as it is, so each reference must resolve from the container's own environment
(its `env` and `envFrom` ConfigMaps), and the resolved argv must parse with the very
`egressgw` command the image's entry point runs: option names, choices and types.
The Dockerfile must install the programs those commands call.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer._click import ClickException, Command  # typer ships its own click

from egressgw.cli.main import app
from egressgw.kube import install, render
from tests.unit.kube.test_install import VARIANTS
from tests.unit.kube.test_render import AWS_POOLS, AZURE_POOLS, EGW1, TENANT0

ROOT = Path(__file__).resolve().parents[3]
REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
# What the downward API gives a pod, and what a node's kubelet sets: stand-ins of the right form.
FIELD_VALUES = {
    "spec.nodeName": "node-1",
    "metadata.name": "egw-1-abcde",
    "metadata.namespace": "default",
    "status.podIP": "10.10.10.1",
    "status.podIPs": "10.10.10.1",
    "status.hostIP": "10.0.0.1",
}


def _containers(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    config_maps = {
        o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"
    }
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec")
        if spec is None:
            continue
        for container in spec.get("initContainers", []) + spec["containers"]:
            where = f"{obj['kind']}/{obj['metadata']['name']}/{container['name']}"
            yield where, container, _environment(container, config_maps)


def _environment(container: dict[str, Any], config_maps: dict[str, dict[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            env[var["name"]] = FIELD_VALUES[var["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def _resolve(argv: list[str], env: dict[str, str], where: str) -> list[str]:
    undefined = {m for arg in argv for m in REFERENCE.findall(arg)} - env.keys()
    assert not undefined, f"{where}: $({', '.join(sorted(undefined))}) is not in its environment"
    return [REFERENCE.sub(lambda m: env[m.group(1)], arg) for arg in argv]


def _parse(argv: list[str]) -> Command:
    """Parse `argv` as the entry point would, down to the command it names, without running it."""
    command: Any = typer.main.get_command(app)
    ctx = command.make_context("egressgw", list(argv))
    while hasattr(command, "resolve_command"):  # a group: descend into the named command
        name, sub, rest = command.resolve_command(ctx, ctx._protected_args + ctx.args)
        assert sub is not None and name is not None
        command = sub
        ctx = sub.make_context(name, rest, parent=ctx)
    return command


def _objects(name: str) -> list[dict[str, Any]]:
    values = install.Values.model_validate(VARIANTS[name])
    gateway_config = render.GatewayConfig(image=values.image.repository)
    gateways = [render.deployment(TENANT0, AZURE_POOLS, gateway_config),
                render.deployment(EGW1, AWS_POOLS, gateway_config)]
    return install.manifests(values) + gateways


@pytest.mark.parametrize("name", VARIANTS)
def test_every_egressgw_command_resolves_and_parses(name: str) -> None:
    parsed = []
    for where, container, env in _containers(_objects(name)):
        argv = _resolve(container.get("command", []) + container.get("args", []), env, where)
        if argv[:1] != ["egressgw"]:
            continue
        try:
            parsed.append(_parse(argv[1:]).name)
        except ClickException as error:
            pytest.fail(f"{where}: `{' '.join(argv)}`: {error.format_message()}")
    assert {"agent", "controller", "gateway"} <= set(parsed)


def test_a_wrong_option_is_caught() -> None:
    # The test above can fail: the same parsing refuses what the CLI does not have.
    with pytest.raises(ClickException, match="--no-such-option"):
        _parse(["gateway", "--no-such-option", "x"])
    with pytest.raises(AssertionError, match="NOPE"):
        _resolve(["egressgw", "agent", "--node", "$(NOPE)"], {}, "here")


def test_the_image_installs_what_the_commands_call() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = set(re.findall(r"apt-get install[^\n]*?((?:\s+[a-z0-9][a-z0-9.+-]+)+)", dockerfile)[0].split())
    # nft (nftables driver), ip (iproute2 for the gateway's tunnel), bird/birdc (BGP),
    # conntrack (gateway flow records), ping (ICMP failure detection).
    assert {"nftables", "iproute2", "bird2", "conntrack", "iputils-ping"} <= installs
    assert "pip install" in dockerfile and 'CMD ["egressgw"' in dockerfile
