"""A private etcd server for the lab and the tests.

Holds `EtcdServer`: it starts the etcd 3.4 binary on 127.0.0.1 only, with free client and
peer ports, its own data directory and a log file under a fresh temporary directory, waits
until `/health` answers, and always stops it again (its whole process group), on exit and on
a failed start. It must never bind anything but 127.0.0.1, never read ETCD_* settings from
the environment, and never touch an etcd it did not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

ETCD_BINARY = Path("/usr/bin/etcd")
HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


class EtcdStartError(RuntimeError):
    """etcd did not become healthy; the message ends with the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # Runs in the child before exec: if the test runner is SIGKILLed, etcd goes too.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class EtcdServer:
    """One etcd member on 127.0.0.1; use as a (sync or async) context manager.

    Start and stop from the thread that owns the server for its whole life: the child is
    killed when that thread ends (PR_SET_PDEATHSIG), which is what makes a crashed runner
    leave no etcd behind.
    """

    def __init__(
        self,
        *,
        binary: Path = ETCD_BINARY,
        base_dir: Path | None = None,
        startup_timeout: float = 30.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.extra_args = extra_args
        self._base_dir = base_dir
        self._workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.client_port = 0
        self.peer_port = 0

    # -- addresses and files ------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """Client address as "127.0.0.1:PORT" (what EtcdStore connects to)."""
        if not self.client_port:
            raise RuntimeError("etcd is not running")
        return f"{HOST}:{self.client_port}"

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("etcd is not running")
        return self._workdir

    @property
    def log_path(self) -> Path:
        return self.workdir / "etcd.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn etcd and block until it is healthy (or raise EtcdStartError, stopped)."""
        self._spawn()
        try:
            deadline = time.monotonic() + self.startup_timeout
            while not self._probe():
                time.sleep(0.05)
                self._check_alive(deadline)
        except BaseException:
            self.stop()
            raise

    async def astart(self) -> None:
        """Like start(), but waits for health without blocking the event loop."""
        self._spawn()
        try:
            deadline = time.monotonic() + self.startup_timeout
            while not await asyncio.to_thread(self._probe):
                await asyncio.sleep(0.05)
                self._check_alive(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop etcd and its process group, then remove the data directory. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate_group(proc)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self.client_port = self.peer_port = 0

    def __enter__(self) -> EtcdServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EtcdServer:
        await self.astart()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------

    def _spawn(self) -> None:
        if self._proc is not None:
            raise RuntimeError("etcd is already running")
        if not self.binary.exists():
            raise EtcdStartError(f"{self.binary} not found")
        self._workdir = Path(tempfile.mkdtemp(prefix="egressgw-etcd-", dir=self._base_dir))
        self.client_port = free_port()
        self.peer_port = free_port()
        while self.peer_port == self.client_port:
            self.peer_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group, so stop() can kill it whole
                preexec_fn=_die_with_parent,
            )

    def _command(self) -> list[str]:
        client = f"http://{HOST}:{self.client_port}"
        peer = f"http://{HOST}:{self.peer_port}"
        return [
            str(self.binary),
            "--name=default",
            f"--data-dir={self.workdir / 'data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token=egressgw-{self.client_port}",
            *self.extra_args,
        ]

    def _probe(self) -> bool:
        url = f"http://{HOST}:{self.client_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                body = json.loads(resp.read())
        except (OSError, urllib.error.URLError, ValueError):
            return False
        return bool(body.get("health") == "true")

    def _check_alive(self, deadline: float) -> None:
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            raise EtcdStartError(f"etcd exited with {code}:\n{self._log_tail()}")
        if time.monotonic() > deadline:
            raise EtcdStartError(
                f"etcd not healthy after {self.startup_timeout}s:\n{self._log_tail()}"
            )

    def _log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


def _terminate_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the child's process group, SIGKILL it if it lingers, and reap the child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.wait()
