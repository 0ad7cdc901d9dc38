"""The nftables driver: keeps the node table `inet egressgw` equal to a plan, one atomic
`nft -j -f -` transaction per change.

The first apply (and the first after `invalidate()` or a failed transaction) lists the
table and diffs against it, so a restarted agent adopts what is there and an unchanged plan
runs no transaction at all. Later applies diff against what this driver last wrote, because
listing 10,000 elements costs more than the 200 ms an update may take; the agent calls
`invalidate()` now and then to catch edits made behind its back.

Must not: touch any table but ours, build nft text (JSON only, rendered by plan.nft), or
flush on exit.
"""

from __future__ import annotations

import json
from typing import Protocol

from egressgw.drivers import netns as ns
from egressgw.plan import nft as render
from egressgw.plan import ownership
from egressgw.plan.dataplane import ApplyStats, NodePlan, RoutingSettings
from egressgw.plan.nft import Json, NftState


class NftError(RuntimeError):
    """nft refused a transaction or a listing."""


class NftDriver(Protocol):
    """A client node's nftables dataplane."""

    def apply(self, plan: NodePlan) -> ApplyStats: ...

    def read(self, routing: RoutingSettings = ...) -> NftState | None: ...

    def invalidate(self) -> None: ...


class Nft:
    """`nft -j` inside one namespace (None: this process's)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def run(self, doc: Json) -> None:
        """Commit `doc` as one transaction (nothing happens if any command fails)."""
        if not doc["nftables"]:
            return
        done = ns.run(self.netns, ["nft", "-j", "-f", "-"], render.encode(doc))
        if done.returncode:
            raise NftError(done.stderr.strip() or f"nft exited {done.returncode}")

    def list_table(self, name: str) -> Json | None:
        """`nft -j list table inet <name>`, or None if there is no such table."""
        done = ns.run(self.netns, ["nft", "-j", "list", "table", ownership.NFT_FAMILY, name])
        if done.returncode:
            if "No such file or directory" in done.stderr:
                return None
            raise NftError(done.stderr.strip())
        listing: Json = json.loads(done.stdout)
        return listing


class NodeNftables:
    """NftDriver for `inet egressgw` in `netns`."""

    def __init__(self, netns: str | None = None) -> None:
        self.nft = Nft(netns)
        self._written: NftState | None = None  # what the kernel holds, if we know it

    def invalidate(self) -> None:
        """Forget what was written: the next apply lists the table first."""
        self._written = None

    def read(self, routing: RoutingSettings = RoutingSettings()) -> NftState | None:  # noqa: B008
        """Our table as the kernel lists it, or None if it does not exist."""
        listing = self.nft.list_table(ownership.NODE_NFT_TABLE)
        return None if listing is None else render.parse_node_table(listing, routing)

    def apply(self, plan: NodePlan) -> ApplyStats:
        """One transaction taking the table to `plan`; none if it already matches."""
        try:
            return self._apply(plan)
        except NftError as first:
            self.invalidate()  # our picture was wrong or the kernel said no: look again
            try:
                return self._apply(plan)
            except NftError as err:
                return ApplyStats(errors=(f"nft: {first}", f"nft after re-reading: {err}"))

    def _apply(self, plan: NodePlan) -> ApplyStats:
        current = self._written if self._written is not None else self.read(plan.routing)
        wanted = render.node_state(plan)
        self.nft.run(render.reconcile_node(current, plan, wanted))
        self._written = wanted
        return render.changes(current, wanted)

    def remove(self) -> None:
        """Delete our table (explicit teardown; never called on exit)."""
        self.nft.run(render.delete_table(ownership.NODE_NFT_TABLE))
        self._written = None
