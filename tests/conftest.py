"""Shared test fixtures.

Privileged tests get a fresh network namespace each, named with a per-run prefix so
parallel runs never collide, and removed afterwards even when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
RUN_PREFIX = f"egwt{os.getpid() % 10000:04d}{uuid.uuid4().hex[:3]}"


def _is_root() -> bool:
    return os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _is_root():
        return
    skip = pytest.mark.skip(reason="needs root to create network namespaces")
    for item in items:
        if "privileged" in item.keywords or "e2e" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh, empty network namespace (loopback up) that is always removed."""
    name = f"{RUN_PREFIX}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture(scope="session")
def run_prefix() -> str:
    """The per-run prefix that every namespace a test creates must start with."""
    return RUN_PREFIX


def _leftovers() -> tuple[list[int], list[str]]:
    """Processes whose command line names this run's prefix, and this run's namespaces."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            status = (entry / "stat").read_text()
        except OSError:
            continue
        if RUN_PREFIX.encode() in cmdline and status[status.rindex(")") + 2] != "Z":
            pids.append(int(entry.name))
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return pids, [line.split()[0] for line in out.splitlines() if line.startswith(RUN_PREFIX)]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The network-safety rule, checked: a run leaves no process or namespace behind. What is
    left is removed, named, and fails the run."""
    if not _is_root():
        return
    deadline = time.monotonic() + 5  # processes being stopped as the last fixtures end
    while any(_leftovers()) and time.monotonic() < deadline:
        time.sleep(0.1)
    pids, namespaces = _leftovers()
    if not (pids or namespaces):
        return
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for name in namespaces:
        subprocess.run(["ip", "netns", "del", name], check=False)
    writer = session.config.get_terminal_writer()
    writer.line()
    writer.line(
        f"LEFT BEHIND by this run (now removed): processes {pids}, namespaces {namespaces}", red=True
    )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
