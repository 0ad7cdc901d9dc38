"""Shared test fixtures.

Privileged tests get a fresh network namespace each, named with a per-run prefix so
parallel runs never collide, and removed afterwards even when the test fails.
"""

from __future__ import annotations

import os
import subprocess
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
