"""Running things inside the lab's namespaces: a function (`in_netns`, and with it `sysctl`
and `nft`), a command to completion (`exec_in`), or a long-lived process (`Supervisor`),
which logs under the lab's state directory, is tracked in `processes.json` and is stopped by
process group; and finding and killing whatever else runs in a namespace.

Each process is started in a new session, so its pid is also its process-group id and a stop
reaches its children. `guarded` runs a cleanup on normal exit, on an exception, and on
SIGINT, SIGTERM or SIGHUP. This module must not create or delete namespaces (netns.py does)
and must not touch the host network: `in_netns` runs its function in a thread that has
entered the namespace, and checks that it has, so the caller's thread never moves.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from ipaddress import IPv4Address
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

from egressgw.drivers.netns import in_netns as in_netns  # re-exported for lab modules
from egressgw.drivers.netns import write_sysctls
from egressgw.lab import state
from egressgw.lab.state import ProcRecord

NETNS_DIR = Path("/run/netns")
T = TypeVar("T")
_POLL = 0.02


def sysctl(netns: str, settings: Mapping[str, int]) -> None:
    """Write /proc/sys/<key> = value inside `netns`; keys use slashes (net/ipv4/ip_forward)."""

    write_sysctls(netns, {key: str(value) for key, value in settings.items()})


def nft(netns: str, script: str) -> None:
    """Apply an nft script in `netns` as one transaction."""
    _nft(netns, ["-f", "-"], script)


def nft_json(netns: str, *args: str) -> Any:
    """`nft -j <args>` in `netns`, parsed."""
    return json.loads(_nft(netns, ["-j", *args]))


def _nft(netns: str, args: list[str], script: str | None = None) -> str:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nft", *args], input=script, capture_output=True, text=True)

    done = in_netns(netns, run)
    if done.returncode:
        raise RuntimeError(f"nft {' '.join(args)} in {netns} failed: {done.stderr.strip()}")
    return done.stdout


def python_argv(module: str, *args: str) -> list[str]:
    """Run `module` with this interpreter (the venv's), so the lab's code is importable."""
    return [sys.executable, "-m", module, *args]


def netns_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def exec_in(
    netns: str | None, argv: Sequence[str], timeout: float = 10.0, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `argv` to completion in `netns` and capture its output; never raises on exit code."""
    return subprocess.run(
        netns_argv(netns, argv), input=input, capture_output=True, text=True, timeout=timeout
    )


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat, or None if the process is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[19])


def alive(record: ProcRecord) -> bool:
    return start_time(record.pid) == record.start_time


def _wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until no pid is a live process; return the ones still alive at the deadline."""
    left = list(pids)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        time.sleep(_POLL)
        left = [p for p in left if start_time(p) is not None]
    return left


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _exited(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` for our child `pid` to exit, without reaping it."""
    deadline = time.monotonic() + timeout
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
    try:
        while os.waitid(os.P_PID, pid, flags) is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(_POLL)
    except ChildProcessError:  # already reaped
        pass
    return True


def kill_recorded(records: Iterable[ProcRecord], timeout: float = 3.0) -> None:
    """SIGTERM each recorded process group that is still the recorded process, then SIGKILL
    what is left after `timeout`. Works from any process (no child handles needed)."""
    live = [r.pid for r in records if alive(r)]
    for pid in live:
        _signal_group(pid, signal.SIGTERM)
    for pid in _wait_gone(live, timeout):
        _signal_group(pid, signal.SIGKILL)
    _wait_gone(live, timeout)


def pids_in_netns(netns: str) -> list[int]:
    """Every process whose network namespace is `netns` (as `ip netns pids` finds them)."""
    try:
        target = os.stat(NETNS_DIR / netns)
    except FileNotFoundError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_ino, st.st_dev) == (target.st_ino, target.st_dev):
            found.append(int(entry))
    return found


def kill_netns(netns: str, timeout: float = 3.0) -> None:
    """SIGKILL every process in `netns` and wait for them to die."""
    pids = pids_in_netns(netns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _wait_gone(pids, timeout)


class Supervisor:
    """Starts and stops the processes of one lab and keeps `processes.json` current. Only
    one Supervisor per lab (the process that runs it); others read the records."""

    def __init__(self, prefix: str, root: Path | None = None) -> None:
        self.prefix = prefix
        self.root = root
        self._children: dict[str, tuple[ProcRecord, subprocess.Popen[bytes]]] = {}
        self._grace: dict[str, float] = {}  # seconds from SIGTERM to SIGKILL, by name
        self._lock = threading.Lock()

    @property
    def records(self) -> tuple[ProcRecord, ...]:
        return tuple(rec for rec, _ in self._children.values())

    def start(
        self,
        name: str,
        argv: Sequence[str],
        netns: str | None,
        env: Mapping[str, str] | None = None,
        ready: str | None = None,
        timeout: float = 10.0,
        grace: float = 3.0,
    ) -> ProcRecord:
        """Start `argv` in `netns` (None: host namespace) with output to logs/<name>.log.
        With `ready`, wait until that text appears in the log (raises if the process dies
        or `timeout` passes first). Stopping it sends SIGTERM and, `grace` seconds later,
        SIGKILL."""
        if name in self._children:
            raise ValueError(f"process {name} already running")
        log = state.log_dir(self.prefix, self.root) / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                netns_argv(netns, argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        record = ProcRecord(name, netns, proc.pid, start_time(proc.pid) or 0, tuple(argv), log)
        with self._lock:
            self._children[name] = (record, proc)
            self._grace[name] = grace
            self._save()
        if ready is not None:
            self._wait_ready(name, ready, timeout)
        return record

    def _wait_ready(self, name: str, marker: str, timeout: float) -> None:
        record, proc = self._children[name]
        deadline = time.monotonic() + timeout
        while marker not in record.log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop(name)
                tail = record.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} did not become ready:\n{tail}")
            time.sleep(_POLL)

    def stop(self, name: str) -> None:
        """SIGTERM the process group, SIGKILL it after its grace, reap it. Idempotent."""
        with self._lock:
            entry = self._children.pop(name, None)
            grace = self._grace.pop(name, 0.0)
        if entry is None:
            return
        proc = entry[1]
        _signal_group(proc.pid, signal.SIGTERM)
        if not _exited(proc.pid, grace):
            _signal_group(proc.pid, signal.SIGKILL)
        # The leader is a zombie until reaped, so its group id cannot have been reused yet.
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        # Only now off the record: if this process is killed while stopping it, whoever
        # cleans up after us (kill_recorded) still finds it.
        with self._lock:
            self._save()

    def stop_all(self) -> None:
        """Stop everything, the last started first (servers outlive their clients)."""
        for name in reversed(list(self._children)):
            self.stop(name)

    def _save(self) -> None:
        state.save_processes(self.prefix, self.records, self.root)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop_all()


def start_echo(
    sup: Supervisor,
    netns: str,
    addresses: Sequence[IPv4Address] = (),
    name: str = "echo",
    http_port: int = 80,
    echo_port: int = 7,
) -> ProcRecord:
    """Start the echo service in `netns` on `addresses` (all addresses when empty) and wait
    until it listens."""
    listen = [f"--listen={a}" for a in addresses]
    ports = [f"--http-port={http_port}", f"--echo-port={echo_port}"]
    argv = python_argv("egressgw.lab.echo", *listen, *ports)
    return sup.start(name, argv, netns, ready="egressgw-echo ready")


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _exit_on_signal(owner: int) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        if os.getpid() != owner:
            # A forked child (pyroute2 forks to open sockets in namespaces) inherits this
            # handler; it must die quietly, never unwind into the owner's cleanup.
            os._exit(128 + signum)
        raise SystemExit(128 + signum)

    return handler


@contextlib.contextmanager
def guarded(cleanup: Callable[[], None]) -> Iterator[None]:
    """Run `cleanup` however the block ends: normally, by an exception, or by SIGINT, SIGTERM
    or SIGHUP (turned into SystemExit so `finally` clauses run). Further signals are ignored
    while cleanup runs, so a second Ctrl-C cannot leave half a lab. Only the process that
    entered the block cleans up, never a forked child of it. Signal handlers can only be
    installed from the main thread; elsewhere only exceptions are covered."""
    owner = os.getpid()
    main = threading.current_thread() is threading.main_thread()
    handler = _exit_on_signal(owner)
    previous = {s: signal.signal(s, handler) for s in _SIGNALS} if main else {}
    try:
        yield
    finally:
        if os.getpid() != owner:
            os._exit(1)
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        try:
            cleanup()
        finally:
            for sig, handler_ in previous.items():
                signal.signal(sig, handler_)
