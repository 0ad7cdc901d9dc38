"""Run BIRD 2 for one node and keep its configuration equal to the node's BGP plan.

Holds: the BgpSpeaker Protocol the agent talks to, BirdDaemon (the real BIRD inside a network
namespace, with its config, control socket, pid file and log under one state directory), and
FakeBgpSpeaker, a stateful stand-in for unit tests. Readbacks (`protocols()`, `routes()`) come
from BIRD itself through birdc. Liveness: `wait_exit` blocks on a pidfd of our BIRD (woken the
moment it exits) and says why it is gone; `restart` starts it again in graceful-restart
recovery (`bird -R`), so its peers keep its routes (stale) and it keeps the kernel's.

Must not: restart BIRD to change its configuration (a restart drops every session; `birdc
configure` keeps each session whose protocol is unchanged), kill a process it did not start
or adopt from its own pid file, decide when to restart (the agent does), or decide BGP policy
(calc.bgp and plan.bird do).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Protocol

from egressgw.plan.bgp import IPAddress, IPNetwork, NodeBgpPlan
from egressgw.plan.bird import local_protocol, protocol_name, render

BIRD = "/usr/sbin/bird"
BIRDC = "/usr/sbin/birdc"


class BirdError(RuntimeError):
    """BIRD refused a configuration or did not answer."""


@dataclass(frozen=True)
class BirdProtocol:
    """One line of `show protocols`."""

    name: str
    proto: str  # BGP, Static, Kernel, Device, Direct
    state: str  # up, start, down
    since: str  # when the state last changed (ms resolution with our timeformat)
    info: str  # for BGP: Established, Active, Connect, ...

    @property
    def established(self) -> bool:
        return self.proto == "BGP" and self.info.startswith("Established")


@dataclass(frozen=True)
class BirdRoute:
    """One route of `show route all`, as BIRD holds it."""

    network: IPNetwork
    protocol: str
    kind: str  # unicast, blackhole, unreachable, ...
    primary: bool
    next_hops: tuple[IPAddress, ...] = ()
    learned_from: IPAddress | None = None
    as_path: tuple[int, ...] = ()


class BgpSpeaker(Protocol):
    """What the agent needs from a BGP daemon."""

    def start(self, plan: NodeBgpPlan) -> None: ...
    def apply(self, plan: NodeBgpPlan) -> bool: ...
    def wait_exit(self, timeout: float) -> str | None: ...
    def restart(self, plan: NodeBgpPlan) -> None: ...
    def protocols(self) -> list[BirdProtocol]: ...
    def routes(self) -> list[BirdRoute]: ...


class BirdDaemon:
    """BIRD 2 in network namespace `netns` (None: the caller's), state kept in `state_dir`."""

    def __init__(self, netns: str | None, state_dir: Path, *, timeout: float = 10.0) -> None:
        self.netns = netns
        self.state_dir = state_dir
        self.timeout = timeout
        self.config = state_dir / "bird.conf"
        self.socket = state_dir / "bird.ctl"
        self.pidfile = state_dir / "bird.pid"
        self.log = state_dir / "bird.log"
        self._child: subprocess.Popen[bytes] | None = None
        self._pidfd: tuple[int, int] | None = None  # (pid, fd) of the BIRD wait_exit watches

    # ------------------------------------------------------------ lifecycle

    def start(self, plan: NodeBgpPlan) -> None:
        """Start BIRD with `plan`, or adopt the BIRD already serving our socket and apply it."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.running():
            self.apply(plan)
            return
        self._write(render(plan))
        self._spawn()
        self._wait_until_up()

    def restart(self, plan: NodeBgpPlan) -> None:
        """Start BIRD again after it died (or lost its socket), with `plan`, in graceful-restart
        recovery (`-R`): it tells its peers it restarted, so they keep its routes (stale) until
        it re-advertises them, and it leaves the kernel's routes alone until it has converged."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.stop()  # reaps the dead child, ends a BIRD without a socket, removes stale files
        self._write(render(plan))
        self._spawn(recovery=True)
        self._wait_until_up()

    def running(self) -> bool:
        if not self.socket.exists():
            return False
        result = self._birdc("show", "status", check=False)
        return "Daemon is up" in result

    def pid(self) -> int | None:
        """The pid of our BIRD while it runs: the child we spawned, or the one our pid file
        names (checked against our socket path)."""
        if self._child is not None and self._child.poll() is None:
            return self._child.pid
        return self._pid()

    def wait_exit(self, timeout: float) -> str | None:
        """Wait up to `timeout` s for our BIRD to exit. Returns why it is gone (exited, its
        control socket vanished, none running), or None while it runs. Woken by a pidfd the
        moment the process exits, so a death is seen without polling."""
        pid = self.pid()
        if pid is None:
            return self._exit_reason()
        if self._wait_pid(pid, timeout):
            return self._exit_reason()
        return None if self.socket.exists() else f"its control socket {self.socket} is gone"

    def stop(self) -> None:
        """Terminate our BIRD: the child we spawned, or the one our pid file names (checked
        against our socket path, so a recycled pid is never signalled)."""
        child = self._child if self._child is not None and self._child.poll() is None else None
        pid = self._pid() or (None if child is None else child.pid)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            self._wait_for_exit(pid)
        if self._child is not None:
            self._child.wait(timeout=self.timeout)
            self._child = None
        self._close_pidfd()
        for path in (self.socket, self.pidfile):
            path.unlink(missing_ok=True)

    # ------------------------------------------------------------ configuration

    def apply(self, plan: NodeBgpPlan) -> bool:
        """Make BIRD run `plan`. Returns False when the rendered config is already in place."""
        text = render(plan)
        if self.config.exists() and self.config.read_text() == text:
            return False
        self._write(text)
        self._reconfigure()
        return True

    def _write(self, text: str) -> None:
        """Check the text with BIRD's parser, then replace the config in one rename."""
        tmp = self.config.with_suffix(".conf.tmp")
        tmp.write_text(text)
        check = subprocess.run([BIRD, "-p", "-c", str(tmp)], capture_output=True, text=True)
        if check.returncode != 0:
            tmp.unlink()
            raise BirdError(f"BIRD rejects the rendered config: {check.stderr.strip()}")
        os.replace(tmp, self.config)

    def _reconfigure(self) -> None:
        reply = self._birdc("configure")
        if "Reconfigured" in reply or "Reconfiguration in progress" in reply:
            return
        if "queueing" in reply:  # a previous reconfiguration is still running; ours follows
            return
        raise BirdError(f"birdc configure: {reply.strip()}")

    # ------------------------------------------------------------ readback

    def protocols(self) -> list[BirdProtocol]:
        return parse_protocols(self._birdc("show", "protocols"))

    def routes(self) -> list[BirdRoute]:
        return parse_routes(self._birdc("show", "route", "all"))

    def exported(self, protocol: str) -> list[BirdRoute]:
        """The routes BIRD currently sends to one peer (after its export filter)."""
        return parse_routes(self._birdc("show", "route", "all", "export", protocol))

    # ------------------------------------------------------------ process plumbing

    def _spawn(self, *, recovery: bool = False) -> None:
        command = [BIRD, "-f", "-c", str(self.config), "-s", str(self.socket)]
        command += ["-P", str(self.pidfile), *(["-R"] if recovery else [])]
        if self.netns is not None:
            command = ["ip", "netns", "exec", self.netns, *command]
        with self.log.open("ab") as log:
            # A session of its own: BIRD outlives an agent restart and is then adopted.
            self._child = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._child is not None and self._child.poll() is not None:
                raise BirdError(f"BIRD exited at start; see {self.log}")
            if self.running():
                return
            time.sleep(0.05)
        raise BirdError(f"BIRD did not answer on {self.socket} within {self.timeout}s")

    def _pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, ValueError):
            return None
        # A zombie's cmdline is empty: an exited BIRD is not ours to signal or wait for.
        return pid if str(self.socket).encode() in cmdline else None

    def _wait_pid(self, pid: int, timeout: float) -> bool:
        """True once `pid` has exited (within `timeout`), on a pidfd kept while it lives."""
        if self._pidfd is None or self._pidfd[0] != pid:
            self._close_pidfd()
            try:
                self._pidfd = (pid, os.pidfd_open(pid))
            except ProcessLookupError:
                return True
        ready, _, _ = select.select([self._pidfd[1]], [], [], timeout)
        if ready:
            self._close_pidfd()
        return bool(ready)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd[1])
            self._pidfd = None

    def _exit_reason(self) -> str:
        """Why no BIRD of ours runs; the exit status only when it was our child."""
        child = self._child
        if child is None or child.poll() is None:
            return "no BIRD serves our control socket"
        self._child = None  # reaped by poll()
        code = child.returncode
        how = f"killed by signal {-code}" if code < 0 else f"exited with {code}"
        return f"BIRD (pid {child.pid}) {how}"

    def _wait_for_exit(self, pid: int) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._child is not None and self._child.poll() is not None:
                return
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.05)
        raise BirdError(f"BIRD (pid {pid}) did not exit within {self.timeout}s")

    def _birdc(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            [BIRDC, "-s", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=self.timeout,
        )
        if check and (result.returncode != 0 or "Unable to connect" in result.stdout):
            raise BirdError(f"birdc {' '.join(args)}: {result.stdout}{result.stderr}".strip())
        return result.stdout


# ---------------------------------------------------------------- birdc output parsing

_ROUTE_HEAD = re.compile(
    r"^(?P<net>\S+)?\s+(?P<kind>\w+) \[(?P<proto>\S+) [^\]]*?(?: from (?P<src>\S+))?\]"
    r"(?P<primary> \*)?"
)


def parse_protocols(text: str) -> list[BirdProtocol]:
    """`show protocols` lines, assuming our `timeformat protocol iso long ms` (date + time)."""
    protocols: list[BirdProtocol] = []
    for line in text.splitlines():
        fields = line.split(None, 6)
        if len(fields) < 6 or fields[0] in ("BIRD", "Name"):
            continue
        name, proto, _table, state, day, clock = fields[:6]
        info = fields[6].strip() if len(fields) > 6 else ""
        protocols.append(BirdProtocol(name, proto, state, f"{day} {clock}", info))
    return protocols


def parse_routes(text: str) -> list[BirdRoute]:
    """`show route all` output: a head line per route, then indented attribute lines."""
    builders: list[_RouteBuilder] = []
    network: str | None = None
    for line in text.splitlines():
        head = _ROUTE_HEAD.match(line)
        if head and not line.startswith("\t"):
            network = head["net"] or network  # alternative routes leave the network blank
            builders.append(
                _RouteBuilder(
                    str(network),
                    head["kind"],
                    head["proto"],
                    head["primary"] is not None,
                    head["src"],
                )
            )
        elif builders:
            builders[-1].detail(line.strip())
    return [b.build() for b in builders]


@dataclass
class _RouteBuilder:
    network: str
    kind: str
    protocol: str
    primary: bool
    source: str | None
    next_hops: list[IPAddress] = field(default_factory=list)
    as_path: tuple[int, ...] = ()
    route_type: str = ""

    def detail(self, line: str) -> None:
        if line.startswith("Type:"):
            self.route_type = line.split()[1]
        elif line.startswith("via "):
            self.next_hops.append(ip_address(line.split()[1]))
        elif line.startswith("BGP.as_path:"):
            self.as_path = tuple(int(asn) for asn in re.findall(r"\d+", line.split(":", 1)[1]))

    def _learned_from(self) -> IPAddress | None:
        # BIRD prints "from X" only when X differs from the gateway.
        if self.source is not None:
            return ip_address(self.source)
        return self.next_hops[0] if self.route_type == "BGP" and self.next_hops else None

    def build(self) -> BirdRoute:
        return BirdRoute(
            network=ip_network(self.network),
            protocol=self.protocol,
            kind=self.kind,
            primary=self.primary,
            next_hops=tuple(self.next_hops),
            learned_from=self._learned_from(),
            as_path=self.as_path,
        )


# ---------------------------------------------------------------- fake


@dataclass
class FakeBgpSpeaker:
    """Remembers the plans it was given; reports every peer established and its own prefixes.
    `crash()` plays a BIRD that dies; `fail_starts` restarts fail before one succeeds."""

    applied: list[NodeBgpPlan] = field(default_factory=list)
    restarts: list[NodeBgpPlan] = field(default_factory=list)  # the plan of each restart
    fail_starts: int = 0
    _dead: threading.Event = field(default_factory=threading.Event)

    @property
    def plan(self) -> NodeBgpPlan | None:
        return self.applied[-1] if self.applied else None

    def start(self, plan: NodeBgpPlan) -> None:
        self.apply(plan)

    def apply(self, plan: NodeBgpPlan) -> bool:
        if self._dead.is_set():
            raise BirdError("birdc configure: Unable to connect to server control socket")
        if self.plan == plan:
            return False
        self.applied.append(plan)
        return True

    def crash(self) -> None:
        self._dead.set()

    def wait_exit(self, timeout: float) -> str | None:
        return "crashed" if self._dead.wait(timeout) else None

    def restart(self, plan: NodeBgpPlan) -> None:
        self.restarts.append(plan)
        if self.fail_starts > 0:
            self.fail_starts -= 1
            raise BirdError("BIRD exited at start")
        self._dead.clear()
        self.applied.append(plan)

    def protocols(self) -> list[BirdProtocol]:
        peers = () if self.plan is None else self.plan.peers
        return [BirdProtocol(protocol_name(p), "BGP", "up", "", "Established") for p in peers]

    def routes(self) -> list[BirdRoute]:
        originated = () if self.plan is None else self.plan.originated
        return [
            BirdRoute(p.prefix, local_protocol(p.prefix.version), "blackhole", True)
            for p in originated
        ]
