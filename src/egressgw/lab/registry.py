"""The registry of labs: what each running lab is (`LabInfo`, its `lab.json`), how to find
one from its prefix, and the paths under a lab's directory that its processes share.

Each lab has a directory `<root>/<prefix>/` (see `state`), which is also the registry:
`lab.json` there says how to reach the lab's store and what it runs, so `lab down`,
`status`, `apply` or the kubelet find it from the prefix alone, or with no prefix when
only one lab exists.

Files only: must not start or stop processes, nor touch namespaces or the network (the
kubelet, a lab process itself, reads its `LabInfo` from here).
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter

from egressgw.lab import state
from egressgw.lab.scenarios import Transport
from egressgw.lab.topology import GatewayPod

LAB_FILE = "lab.json"


@dataclass(frozen=True)
class LabInfo:
    """What a running lab is, as `lab.json` records it."""

    prefix: str
    scenario: str
    transport: Transport
    etcd: str  # "127.0.0.1:PORT"
    gateway_argv: tuple[str, ...]
    stand_ins: tuple[str, ...] = ()  # "8.8.8.8 is played by 203.0.113.8 (google-dns)"
    rewrites: tuple[str, ...] = ()  # the policy destinations rewritten to stand-ins


_info_json = TypeAdapter(LabInfo)


def save_info(info: LabInfo, root: Path | None = None) -> None:
    path = state.lab_dir(info.prefix, root) / LAB_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_info_json.dump_json(info, indent=1))


def load_info(prefix: str, root: Path | None = None) -> LabInfo:
    path = state.lab_dir(prefix, root) / LAB_FILE
    if not path.exists():
        raise LookupError(f"no lab {prefix} (no {path})")
    return _info_json.validate_json(path.read_bytes())


def labs(root: Path | None = None) -> list[str]:
    """Prefixes of the labs that have been brought up and not yet taken down."""
    return [p for p in state.labs(root) if (state.lab_dir(p, root) / LAB_FILE).exists()]


def resolve(prefix: str | None, root: Path | None = None) -> str:
    """`prefix`, or the only lab there is (LookupError if none or several)."""
    if prefix is not None:
        return prefix
    found = labs(root)
    if len(found) != 1:
        which = ", ".join(found) if found else "none is running"
        raise LookupError(f"name the lab with --prefix: {which}")
    return found[0]


def new_prefix() -> str:
    return f"egl{secrets.token_hex(3)[:5]}"


# --- paths under a lab's directory ----------------------------------------------------------


def gateway_dir(prefix: str, node: str, root: Path | None = None) -> Path:
    """Where the node's agent writes the plans of the gateway pods on that node."""
    return state.lab_dir(prefix, root) / "nodes" / node / "gateways"


def plan_file(prefix: str, pod: GatewayPod, root: Path | None = None) -> Path:
    return gateway_dir(prefix, pod.node, root) / f"{pod.namespace}.{pod.name}.json"


def kubelet_root(prefix: str, root: Path | None = None) -> Path:
    """The state root of the kubelet's own Supervisor (the gateway processes), so its
    `processes.json` does not overwrite the one `up` keeps."""
    return state.lab_dir(prefix, root) / "kubelet"


def failed_logs(prefix: str, root: Path | None = None) -> Path:
    """Where the logs of a lab that failed to come up are kept (its state dir is removed)."""
    return state.root_dir(root) / f"{prefix}.failed"


def keep_logs(prefix: str, root: Path | None = None) -> None:
    """Copy every log of the lab (the kubelet's gateways' too) to `failed_logs`."""
    target = failed_logs(prefix, root)
    for logs in state.log_dir(prefix, root), state.log_dir(prefix, kubelet_root(prefix, root)):
        if logs.is_dir():
            shutil.copytree(logs, target, dirs_exist_ok=True)
