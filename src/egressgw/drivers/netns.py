"""Doing things inside a network namespace without moving the caller: a function
(`in_netns`), a command (`run`), and sysctls (`read_sysctls`, `write_sysctls`).

`in_netns` runs its function in a fresh thread that has entered the namespace; /proc/sys/net
and processes that thread spawns belong to it. `netns=None` means the caller's own namespace
(the agent on a real node runs in the host's).

Must not: create or delete namespaces, or change the calling thread's namespace.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

NETNS_DIR = Path("/run/netns")
# In a container the host's /proc/sys/net may be mounted elsewhere (writable).
PROC_SYS = Path(os.environ.get("EGRESSGW_PROC_SYS", "/proc/sys"))
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


def in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """`fn()`, run in a thread inside `netns` (or directly when netns is None)."""
    if netns is None:
        return fn()
    box: list[tuple[bool, Any]] = []

    def body() -> None:
        try:
            _enter(netns)
            box.append((True, fn()))
        except BaseException as err:  # handed to the caller below
            box.append((False, err))

    thread = threading.Thread(target=body, name=f"netns:{netns}")
    thread.start()
    thread.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _enter(netns: str) -> None:
    fd = os.open(NETNS_DIR / netns, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({netns}) failed")
        if os.stat("/proc/thread-self/ns/net").st_ino != os.fstat(fd).st_ino:
            raise RuntimeError(f"thread did not enter {netns}")
    finally:
        os.close(fd)


def run(
    netns: str | None, argv: list[str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion inside `netns`; the caller checks the return code."""
    return in_netns(
        netns, lambda: subprocess.run(argv, input=stdin, capture_output=True, text=True)
    )


def read_sysctls(netns: str | None, keys: Iterable[str]) -> dict[str, str | None]:
    """Current values by /proc/sys-relative key (None: no such sysctl, e.g. no device yet)."""

    def read() -> dict[str, str | None]:
        values: dict[str, str | None] = {}
        for key in keys:
            try:
                values[key] = (PROC_SYS / key).read_text().strip()
            except FileNotFoundError:
                values[key] = None
        return values

    return in_netns(netns, read)


def write_sysctls(netns: str | None, values: Mapping[str, str]) -> None:
    def write() -> None:
        for key, value in values.items():
            (PROC_SYS / key).write_text(value)

    in_netns(netns, write)
