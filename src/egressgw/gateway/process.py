"""The gateway process: one per gateway pod.

It applies the plan its node's agent hands it (SNAT to its egress IP, VXLAN endpoint,
return routes) whenever the plan file changes, and serves `/readiness` on the pod IP, port
8080, as the reference's egressd does. It runs inside the pod's network namespace, or, in
the lab, beside it: `netns` names the namespace its drivers and its health socket live in.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path

from egressgw.drivers.gatewaynet import GatewayNet
from egressgw.drivers.netns import in_netns
from egressgw.gateway.upstream import Upstream
from egressgw.plan.dataplane import GatewayPlan, vxlan_mtu
from egressgw.plan.serial import failure_detection_from_json, gateway_from_json

log = logging.getLogger("egressgw.gateway")


@dataclass
class GatewayState:
    """What the health endpoint reports."""

    applied: str | None = None  # the plan text last applied without error
    error: str | None = None
    upstream: Upstream | None = None  # egressGatewayFailureDetection, when configured

    def problem(self) -> str | None:
        """Why the gateway is not ready, or None when it is."""
        if self.applied is None:
            return "no plan yet"
        if self.error is not None:
            return self.error
        return None if self.upstream is None else self.upstream.problem()

    @property
    def ready(self) -> bool:
        return self.problem() is None


def _handler(state: GatewayState) -> type[BaseHTTPRequestHandler]:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path not in ("/readiness", "/health", "/"):
                self.send_error(404)
                return
            problem = state.problem()
            body = b"ready\n" if problem is None else f"not ready: {problem}\n".encode()
            self.send_response(200 if problem is None else 503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Health


def serve_health(netns: str | None, ip: IPv4Address, port: int, state: GatewayState) -> ThreadingHTTPServer:
    """Start the health server on ip:port inside `netns` (the socket is made there)."""
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((str(ip), port))
        sock.listen(64)
        return sock

    sock = in_netns(netns, make)
    server = ThreadingHTTPServer((str(ip), port), _handler(state), bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


def follow_plan(netns: str | None, plan_file: Path, state: GatewayState, poll: float = 0.05) -> None:
    """Apply `plan_file` whenever its content changes; runs forever."""
    driver = GatewayNet(netns)
    while True:
        try:
            text = plan_file.read_text()
        except FileNotFoundError:
            text = None
        if text is not None and text != state.applied:
            _apply(driver, text, state)
        time.sleep(poll)


def fit_uplink(netns: str | None, plan: GatewayPlan) -> GatewayPlan:
    """The plan with vxlan0's MTU no larger than this pod's uplink allows (its eth0 MTU - 50):
    the node's agent knows its own underlay, not the pod's interface."""
    if plan.vxlan is None:
        return plan
    path = Path("/sys/class/net") / plan.uplink / "mtu"
    uplink = int(in_netns(netns, path.read_text).strip())
    mtu = min(plan.vxlan.mtu, vxlan_mtu(uplink))
    return replace(plan, vxlan=replace(plan.vxlan, mtu=mtu))


def _apply(driver: GatewayNet, text: str, state: GatewayState) -> None:
    try:
        stats = driver.apply(fit_uplink(driver.netns, gateway_from_json(text)))
        if state.upstream is not None:
            state.upstream.detection = failure_detection_from_json(text)
    except (ValueError, KeyError, OSError) as err:
        state.error = f"plan: {err}"
        log.error("cannot apply plan: %s", err)
        return
    state.error = "; ".join(stats.errors) or None
    state.applied = text
    log.info("plan applied: %s", stats)
