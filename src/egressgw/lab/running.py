"""A running lab as its users hold it: `LabHandle` (its `LabInfo`, state root, and the
Supervisor when this process brought it up), `attach` to one another process brought up,
`with_store` / `edited` to read and change its store, and `down` to take one down.

`down` stops the lab's processes (the kubelet's gateways too), removes its namespaces and
its state directory; it is idempotent, so it also cleans up a half-built lab.

Must not: start anything (`lab.up` does), or touch a lab it was not asked about.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from egressgw.lab import netns, procs, scenarios, state
from egressgw.lab.registry import LabInfo, kubelet_root, load_info, resolve
from egressgw.lab.scenarios import Scenario
from egressgw.lab.topology import Topology
from egressgw.model import Resource
from egressgw.model.parsing import from_dict, to_dict
from egressgw.store import etcd
from egressgw.store.codec import resource_store
from egressgw.store.resources import ResourceStore

T = TypeVar("T")


@dataclass(frozen=True)
class LabHandle:
    info: LabInfo
    root: Path
    supervisor: procs.Supervisor | None = field(default=None, compare=False)

    @property
    def prefix(self) -> str:
        return self.info.prefix

    @property
    def scenario(self) -> Scenario:
        return scenarios.get(self.info.scenario)

    def topology(self) -> Topology:
        """The lab as the kubelet last saved it (nodes, pods, gateway pods)."""
        found = state.load_topology(self.prefix, self.root)
        if found is None:
            raise FileNotFoundError(f"lab {self.prefix} has no topology")
        return found

    def down(self) -> None:
        down(self.prefix, self.root, self.supervisor)


def attach(prefix: str | None = None, root: Path | None = None) -> LabHandle:
    """A handle on a lab another process brought up."""
    root = state.root_dir(root)
    return LabHandle(load_info(resolve(prefix, root), root), root)


def down(
    prefix: str | None = None,
    root: Path | None = None,
    supervisor: procs.Supervisor | None = None,
) -> str:
    """Stop the lab's processes (the kubelet's gateways too), delete its namespaces and its
    state directory; returns the prefix. Idempotent. `supervisor`: the one `up` returned in
    this process, so its children are reaped too."""
    prefix = resolve(prefix, root)
    if supervisor is not None:
        supervisor.stop_all()
    # SIGTERM lets the kubelet stop its gateways; the kill below catches any it left.
    procs.kill_recorded(state.load_processes(prefix, root))
    procs.kill_recorded(state.load_processes(prefix, kubelet_root(prefix, root)))
    netns.teardown(prefix, root)
    state.discard(prefix, root)
    return prefix


# --- the lab's store ------------------------------------------------------------------------


def with_store(
    handle: LabHandle,
    work: Callable[[ResourceStore[Resource]], Awaitable[T]],
    timeout: float = 10.0,
) -> T:
    """Run `work` against the lab's store (its own event loop and connection); `timeout`
    bounds each etcd request."""

    async def run() -> T:
        store = await etcd.connect(handle.info.etcd, timeout=timeout)
        try:
            return await work(resource_store(store))
        finally:
            await store.close()

    return asyncio.run(run())


def edited(change: Callable[[dict[str, Any]], None]) -> Callable[[Resource], Resource]:
    """A resource update that edits the object as manifest JSON (validated on the way back)."""

    def apply(res: Resource) -> Resource:
        body = to_dict(res)
        change(body)
        return from_dict(body, source="<lab>")

    return apply
