"""The long-running processes: `egressgw controller`, `egressgw agent`, `egressgw gateway`."""

from __future__ import annotations

import asyncio
import logging
import threading
from ipaddress import IPv4Address
from pathlib import Path
from typing import Annotated

import typer

from egressgw.agent import node as agent_node
from egressgw.controller import gateways as controller_gateways
from egressgw.gateway import process as gateway_process
from egressgw.gateway import upstream as gateway_upstream
from egressgw.plan.dataplane import Transport
from egressgw.store.etcd import connect

Etcd = Annotated[str, typer.Option("--etcd", help="etcd endpoint, HOST:PORT.")]
LogLevel = Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING, ERROR.")]


def _logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )


def controller(
    etcd: Etcd,
    subnet_zone: Annotated[list[str] | None, typer.Option("--subnet-zone", help="AWS SUBNET=ZONE; repeatable.")] = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Run the controller: gateway pods for every EgressGateway (placement, IPAM, Elastic IPs)."""
    _logging(log_level, "controller")
    zones = dict(item.split("=", 1) for item in subnet_zone or [])

    async def main() -> None:
        store = await connect(etcd)
        await controller_gateways.run(controller_gateways.Controller(store, zones), store)

    asyncio.run(main())


def agent(
    etcd: Etcd,
    node: Annotated[str, typer.Option("--node", help="This node's name.")],
    gateway_dir: Annotated[Path, typer.Option("--gateway-dir", help="Where local gateway pods' plans are written.")],
    netns: Annotated[str | None, typer.Option("--netns", help="The node's network namespace (default: this one).")] = None,
    transport: Annotated[Transport, typer.Option("--transport")] = Transport.VXLAN,
    underlay_mtu: Annotated[int, typer.Option("--underlay-mtu")] = 1500,
    bgp_dir: Annotated[Path | None, typer.Option("--bgp-dir", help="Run BIRD for this node, its files here.")] = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Run a node agent: keep this node's egress dataplane equal to the cluster state."""
    _logging(log_level, f"agent[{node}]")
    config = agent_node.AgentConfig(node, netns, transport, gateway_dir, underlay_mtu)

    async def main() -> None:
        store = await connect(etcd)
        await agent_node.run(agent_node.Agent.real(config, bgp_dir), store)

    asyncio.run(main())


def gateway(
    pod: Annotated[str, typer.Option("--pod", help="NAMESPACE/NAME of this gateway pod.")],
    ip: Annotated[str, typer.Option("--ip", help="The pod IP (health endpoint address).")],
    plan_file: Annotated[Path, typer.Option("--plan-file", help="The plan the node agent writes.")],
    netns: Annotated[str | None, typer.Option("--netns", help="The pod's network namespace (default: this one).")] = None,
    health_port: Annotated[int, typer.Option("--health-port")] = 8080,
    log_level: LogLevel = "INFO",
) -> None:
    """Run a gateway: apply its plan (SNAT, VXLAN, return routes) and serve /readiness."""
    _logging(log_level, f"gateway[{pod}]")
    upstream = gateway_upstream.Upstream(netns)
    state = gateway_process.GatewayState(upstream=upstream)
    threading.Thread(target=upstream.loop, name="upstream", daemon=True).start()
    gateway_process.serve_health(netns, IPv4Address(ip), health_port, state)
    follower = threading.Thread(
        target=gateway_process.follow_plan, args=(netns, plan_file, state), daemon=True
    )
    follower.start()
    follower.join()
