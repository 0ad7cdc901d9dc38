"""What a running lab left on disk, so that another process (`lab status`, `lab down`,
`lab exec`) can find its prefix, topology and processes.

One directory per lab, `<root>/<prefix>/` with root `$EGRESSGW_LAB_DIR` or /run/egressgw:
`topology.json` (the `Topology`), `processes.json` (the `ProcRecord`s) and the processes'
logs under `logs/`. Files are replaced atomically. This module only (de)serialises: it must
not touch the network or processes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter

from egressgw.lab.topology import Topology

ROOT_ENV = "EGRESSGW_LAB_DIR"
DEFAULT_ROOT = Path("/run/egressgw")
_TOPOLOGY = "topology.json"
_PROCESSES = "processes.json"


@dataclass(frozen=True)
class ProcRecord:
    """A process the lab started. `netns` None means the host namespace (servers bound to
    127.0.0.1 only, e.g. etcd). `start_time` (field 22 of /proc/<pid>/stat) tells the
    process apart from a later one that reuses its pid."""

    name: str
    netns: str | None
    pid: int
    start_time: int
    argv: tuple[str, ...]
    log: Path


@dataclass(frozen=True)
class LabState:
    prefix: str
    topology: Topology | None
    processes: tuple[ProcRecord, ...]


_topology_json = TypeAdapter(Topology)
_processes_json = TypeAdapter(tuple[ProcRecord, ...])


def root_dir(root: Path | None = None) -> Path:
    return root if root is not None else Path(os.environ.get(ROOT_ENV, DEFAULT_ROOT))


def lab_dir(prefix: str, root: Path | None = None) -> Path:
    return root_dir(root) / prefix


def log_dir(prefix: str, root: Path | None = None) -> Path:
    return lab_dir(prefix, root) / "logs"


def _write(path: Path, data: bytes) -> Path:
    """Replace `path` atomically: a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def save_topology(topology: Topology, root: Path | None = None) -> Path:
    path = lab_dir(topology.prefix, root) / _TOPOLOGY
    return _write(path, _topology_json.dump_json(topology, indent=1))


def load_topology(prefix: str, root: Path | None = None) -> Topology | None:
    path = lab_dir(prefix, root) / _TOPOLOGY
    return _topology_json.validate_json(path.read_bytes()) if path.exists() else None


def save_processes(prefix: str, records: tuple[ProcRecord, ...], root: Path | None = None) -> Path:
    path = lab_dir(prefix, root) / _PROCESSES
    return _write(path, _processes_json.dump_json(records, indent=1))


def load_processes(prefix: str, root: Path | None = None) -> tuple[ProcRecord, ...]:
    path = lab_dir(prefix, root) / _PROCESSES
    return _processes_json.validate_json(path.read_bytes()) if path.exists() else ()


def load(prefix: str, root: Path | None = None) -> LabState:
    return LabState(prefix, load_topology(prefix, root), load_processes(prefix, root))


def labs(root: Path | None = None) -> list[str]:
    """Prefixes of the labs that have a state directory."""
    base = root_dir(root)
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def discard(prefix: str, root: Path | None = None) -> None:
    """Remove the lab's state directory, logs included. Idempotent."""
    shutil.rmtree(lab_dir(prefix, root), ignore_errors=True)
