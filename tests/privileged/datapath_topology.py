"""A tiny egress topology of namespaces for datapath tests and the dataplane benchmark.

    pod1 10.244.1.10 ─veth─ cali1 ┐
    pod2 10.244.1.11 ─veth─ cali2 ┴ node  eth0 172.18.0.11 ─┐
                                        gw    eth0 172.18.0.50 ─┤ br0 172.18.0.1  vpc (router)
    internet  203.0.113.10, 198.51.100.10, 192.0.2.10 ─veth─────┘ 203.0.113.1 ...

The node and the gateway pod share the L2 segment of the vpc bridge, so the gateway IP is
on-link for the node (native mode) and reachable as a VTEP (VXLAN mode). The vpc router
routes the node's pod CIDR back to it. All names start with the run prefix; `close()`
deletes every namespace, and the context manager always calls it. Built with `ip` only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from types import TracebackType

POD1, POD2 = IPv4Address("10.244.1.10"), IPv4Address("10.244.1.11")
NODE_IP, GW_IP, ROUTER = IPv4Address("172.18.0.11"), IPv4Address("172.18.0.50"), "172.18.0.1"
VIA_GATEWAY, DIRECT, DROPPED = (
    IPv4Address(a) for a in ("203.0.113.10", "198.51.100.10", "192.0.2.10")
)
ECHO_PORT = 7007

ECHO_SERVER = r"""
import socket, threading
def serve(conn):
    with conn:
        while conn.recv(64):
            conn.sendall(conn.getpeername()[0].encode())
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", PORT)); s.listen(64); print("ready", flush=True)
while True:
    conn, _ = s.accept(); threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

# One line out per line in: each input line is sent and the server's answer printed.
ECHO_CLIENT = r"""
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as s:
        for line in sys.stdin:
            s.sendall(b"?")
            print(s.recv(64).decode() or "error: closed", flush=True)
except OSError as err:
    print(f"error: {err.__class__.__name__}: {err}", flush=True)
"""


@dataclass
class Connection:
    proc: subprocess.Popen[str]

    def ask(self) -> str:
        """Send a probe on the same connection; what the server saw as our source."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("1\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@dataclass
class Topology:
    prefix: str
    names: list[str] = field(default_factory=list)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def ip(self, role: str, *args: str) -> None:
        sh("ip", "-n", self.ns(role), *args)

    def exec(self, role: str, *argv: str) -> str:
        return sh("ip", "netns", "exec", self.ns(role), *argv)

    def build(self) -> Topology:
        for role in ("pod1", "pod2", "node", "vpc", "gw", "inet"):
            sh("ip", "netns", "add", self.ns(role))
            self.names.append(self.ns(role))
            self.ip(role, "link", "set", "lo", "up")
        self._pods()
        self._vpc()
        return self

    def _pods(self) -> None:
        for index, (pod, address) in enumerate((("pod1", POD1), ("pod2", POD2)), start=1):
            self.ip(
                pod,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                f"cali{index}",
                "netns",
                self.ns("node"),
            )
            self.ip(pod, "addr", "add", f"{address}/32", "dev", "eth0")
            self.ip(pod, "link", "set", "eth0", "up")
            self.ip(pod, "route", "add", "169.254.1.1", "dev", "eth0")
            self.ip(pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
            self.ip("node", "link", "set", f"cali{index}", "up")
            self.ip("node", "route", "add", str(address), "dev", f"cali{index}")
            self.exec("node", "sysctl", "-qw", f"net.ipv4.conf.cali{index}.proxy_arp=1")

    def _vpc(self) -> None:
        self.ip("vpc", "link", "add", "br0", "type", "bridge")
        self.ip("vpc", "addr", "add", f"{ROUTER}/24", "dev", "br0")
        self.ip("vpc", "link", "set", "br0", "up")
        for role, address in (("node", NODE_IP), ("gw", GW_IP)):
            self.ip(
                role,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                role,
                "netns",
                self.ns("vpc"),
            )
            self.ip("vpc", "link", "set", role, "master", "br0", "up")
            self.ip(role, "addr", "add", f"{address}/24", "dev", "eth0")
            self.ip(role, "link", "set", "eth0", "up")
            self.ip(role, "route", "add", "default", "via", ROUTER)
        self.ip(
            "inet",
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "inet",
            "netns",
            self.ns("vpc"),
        )
        self.ip("inet", "link", "set", "eth0", "up")
        self.ip("vpc", "link", "set", "inet", "up")
        for address in (VIA_GATEWAY, DIRECT, DROPPED):
            self.ip("inet", "addr", "add", f"{address}/24", "dev", "eth0")
            self.ip("vpc", "addr", "add", f"{str(address).rsplit('.', 1)[0]}.1/24", "dev", "inet")
        self.ip("inet", "route", "add", "default", "via", "203.0.113.1")
        self.ip("vpc", "route", "add", "10.244.1.0/24", "via", str(NODE_IP))
        self.exec("vpc", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # The node forwards, and its RPF is strict: replies from the tunnel must pass anyway.
        self.exec("node", "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=1")

    def start_echo(self) -> None:
        code = ECHO_SERVER.replace("PORT", str(ECHO_PORT))
        argv = ["ip", "netns", "exec", self.ns("inet"), sys.executable, "-c", code]
        server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.servers.append(server)
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"

    def echo(self, pod: str, target: IPv4Address) -> str:
        """What the echo server saw as our source, or "error: ..." if we got no answer."""
        argv = [sys.executable, "-c", ECHO_CLIENT, str(target), str(ECHO_PORT)]
        return subprocess.run(["ip", "netns", "exec", self.ns(pod), *argv], input="1\n",
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip

    def connect(self, pod: str, target: IPv4Address) -> Connection:
        """A long-lived connection to the echo server (ask it, as often as wanted)."""
        argv = [
            "ip",
            "netns",
            "exec",
            self.ns(pod),
            sys.executable,
            "-c",
            ECHO_CLIENT,
            str(target),
            str(ECHO_PORT),
        ]
        return Connection(
            subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        )

    def iperf(self, pod: str, target: IPv4Address, seconds: int = 3) -> float:
        """Single-stream TCP throughput from `pod` to `target`, in Gbit/s."""
        argv = ["ip", "netns", "exec", self.ns("inet"), "iperf3", "-s", "-1", "-B", str(target)]
        server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            out = self.exec(pod, "iperf3", "-J", "-c", str(target), "-t", str(seconds))
        finally:
            server.wait(timeout=10)
        return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9

    def close(self) -> None:
        for server in self.servers:
            server.kill()
            server.wait()
        for name in reversed(self.names):
            subprocess.run(["ip", "netns", "del", name], check=False)
        self.names.clear()

    def __enter__(self) -> Topology:
        try:
            return self.build()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
