"""The states of the Azure walkthrough (REF-AZ README) as store edits.

`Walkthrough` holds the example's objects as `lab up` applied them (`before`: the default
pool still exported, the route-server peers without filters) and as the README's patches
leave them (`after`: the manifests themselves). The edits: `reset` (back to `before`, no
FelixConfiguration, no policy, no annotation), `disable_export`, `attach_filter`,
`enable_egress` (FelixConfiguration + namespace default -> tenant0) and `apply_policy`.
Each is one async function over the lab's `ResourceStore`. Policy destinations are
rewritten to the lab's stand-ins, as `lab up` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from egressgw import manifests
from egressgw.lab import scenarios
from egressgw.lab.running import LabHandle, edited
from egressgw.model import Resource
from egressgw.store.resources import ResourceStore

SELECTOR = "egress.projectcalico.org/namespaceSelector"
POLICY = "egress.projectcalico.org/egressGatewayPolicy"
TENANT = "tenant0-egw"
TENANT_SELECTOR = f"projectcalico.org/name == '{TENANT}'"
POLICY_NAME, POOL, FILTER = "egw-policy", "default-ipv4-ippool", "export-egress-ips"
RS_PEERS = ("azure-route-server-a", "azure-route-server-b")
NAMESPACE = ("Namespace", None, "default")
Named = dict[tuple[str, str], Resource]


@dataclass(frozen=True)
class Walkthrough:
    """The example's objects before the walkthrough's patches and after them."""

    before: Named
    after: Named

    @classmethod
    def load(cls, handle: LabHandle) -> Walkthrough:
        scenario, hosts = handle.scenario, handle.topology().internet_hosts
        raw, _ = scenarios.rewrite_destinations(manifests.load([scenario.examples]).all, hosts)
        return cls(_by_name(scenarios.initial_resources(scenario, raw)), _by_name(raw))

    async def reset(self, res: ResourceStore[Resource]) -> None:
        """The state `lab up` left: pool exported, peers unfiltered, no FelixConfiguration,
        no policy, no egress annotation on namespace default."""
        peers = [self.before[("BGPPeer", p)] for p in RS_PEERS]
        await res.apply([self.before[("IPPool", POOL)], *peers])
        await res.delete(
            [("FelixConfiguration", None, "default"), ("EgressGatewayPolicy", None, POLICY_NAME)]
        )
        await res.patch_annotations(NAMESPACE, {}, [SELECTOR, POLICY])

    async def disable_export(self, res: ResourceStore[Resource]) -> None:
        """kubectl patch ippool default-ipv4-ippool: disableBGPExport true."""
        await res.apply([self.after[("IPPool", POOL)]])

    async def attach_filter(self, res: ResourceStore[Resource]) -> None:
        """filters: [export-egress-ips] on both route-server peers."""
        for peer in RS_PEERS:
            await res.update(("BGPPeer", None, peer), edited(_with_filter))

    async def enable_egress(self, res: ResourceStore[Resource]) -> None:
        """The README's FelixConfiguration patch and namespace annotation."""
        await res.apply([self.after[("FelixConfiguration", "default")]])
        await res.patch_annotations(NAMESPACE, {SELECTOR: TENANT_SELECTOR})

    async def apply_policy(self, res: ResourceStore[Resource]) -> None:
        """egw-policy.yaml, and namespace default pointed at it."""
        await res.apply([self.after[("EgressGatewayPolicy", POLICY_NAME)]])
        await res.patch_annotations(NAMESPACE, {POLICY: POLICY_NAME})


def _by_name(resources: Sequence[Resource]) -> Named:
    return {(r.kind, r.metadata.name): r for r in resources}


def _with_filter(body: dict[str, Any]) -> None:
    body["spec"]["filters"] = [FILTER]
