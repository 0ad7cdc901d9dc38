"""The long-running processes: `egressgw controller`, `egressgw agent`, `egressgw gateway`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from egressgw.agent import node as agent_node
from egressgw.controller import gateways as controller_gateways
from egressgw.gateway import process as gateway_process
from egressgw.gateway import upstream as gateway_upstream
from egressgw.plan.dataplane import Transport
from egressgw.store.base import Store
from egressgw.store.etcd import connect

log = logging.getLogger(__name__)

Etcd = Annotated[str | None, typer.Option("--etcd", help="etcd endpoint, HOST:PORT (datastore etcd).")]


class Datastore(StrEnum):
    """Where cluster state lives."""

    ETCD = "etcd"
    KUBERNETES = "kubernetes"


DatastoreOpt = Annotated[Datastore, typer.Option("--datastore")]


async def _store(datastore: Datastore, etcd: str | None) -> Store:
    if datastore is Datastore.KUBERNETES:
        from egressgw.cli.kube import store_from_env  # kr8s only where it is used

        return await store_from_env()
    if not etcd:
        raise typer.BadParameter("--etcd HOST:PORT is needed with --datastore etcd")
    return await connect(etcd)


async def until_signalled(work: Awaitable[None]) -> None:
    """Run `work` until SIGTERM (the kubelet stopping the pod) or SIGINT cancels it, so its
    cleanup runs (an elector releases its Lease) and the process exits 0. Without handlers
    Python dies at once on SIGTERM, and as PID 1 of its container (no init in the image) it
    ignores SIGTERM entirely until the kubelet's SIGKILL a grace period later.

    Plain `signal.signal` handlers, not `loop.add_signal_handler`: the latter routes signals
    through a wakeup fd that children forked without exec (pyroute2's netns helpers) share,
    so the SIGTERM that pyroute2 sends its own helper would stop the agent too."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        _on_signal(sig, lambda: loop.call_soon_threadsafe(task.cancel))
    with contextlib.suppress(asyncio.CancelledError):
        await work


def _on_signal(sig: signal.Signals, action: Callable[[], object]) -> None:
    """Run `action` in this process when `sig` arrives; a child forked without exec that
    inherits the handler dies of the signal as if none were set."""
    owner = os.getpid()

    def handler(number: int, _frame: FrameType | None) -> None:
        if os.getpid() != owner:
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
            return
        action()

    signal.signal(sig, handler)


def _serve_health(port: int, ready: Callable[[], bool]) -> None:
    """/liveness (always 200 while the process runs) and /readiness on 0.0.0.0:port."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/liveness" or (self.path == "/readiness" and ready())
            self.send_response(200 if ok else 503)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("0.0.0.0", port), Health)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
LogLevel = Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING, ERROR.")]


def _logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )


def controller(
    etcd: Etcd = None,
    subnet_zone: Annotated[list[str] | None, typer.Option("--subnet-zone", help="AWS SUBNET=ZONE; repeatable.")] = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Run the controller: gateway pods for every EgressGateway (placement, IPAM, Elastic IPs)."""
    _logging(log_level, "controller")
    zones = dict(item.split("=", 1) for item in subnet_zone or [])

    async def main() -> None:
        store = await connect(etcd or "")
        await controller_gateways.run(controller_gateways.Controller(store, zones), store)

    asyncio.run(until_signalled(main()))


def agent(
    node: Annotated[str, typer.Option("--node", help="This node's name.")],
    gateway_dir: Annotated[Path, typer.Option("--gateway-dir", help="Where local gateway pods' plans are written.")],
    netns: Annotated[str | None, typer.Option("--netns", help="The node's network namespace (default: this one).")] = None,
    transport: Annotated[Transport, typer.Option("--transport")] = Transport.VXLAN,
    underlay_mtu: Annotated[int, typer.Option("--underlay-mtu")] = 1500,
    bgp_dir: Annotated[Path | None, typer.Option("--bgp-dir", help="Run BIRD for this node, its files here.")] = None,
    datastore: DatastoreOpt = Datastore.ETCD,
    etcd: Etcd = None,
    health_port: Annotated[int, typer.Option("--health-port", help="Serve /liveness and /readiness (0: off).")] = 0,
    log_level: LogLevel = "INFO",
) -> None:
    """Run a node agent: keep this node's egress dataplane equal to the cluster state."""
    _logging(log_level, f"agent[{node}]")
    config = agent_node.AgentConfig(node, netns, transport, gateway_dir, underlay_mtu)
    the_agent = agent_node.Agent.real(config, bgp_dir)
    if health_port:
        _serve_health(health_port, lambda: the_agent.last is not None)

    async def main() -> None:
        await agent_node.run(the_agent, await _store(datastore, etcd))

    # Stopping leaves the dataplane as it is (nothing is flushed): the next agent adopts it.
    asyncio.run(until_signalled(main()))


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
    # SIGTERM starts the pod's grace period: client nodes stop sending new connections (they
    # see the pod terminating) and the live ones must keep flowing, so the gateway keeps
    # serving, readiness included, until the grace period's SIGKILL.
    _on_signal(signal.SIGTERM, lambda: log.info(
        "SIGTERM: draining, serving established connections until the grace period ends"))
    follower.join()
