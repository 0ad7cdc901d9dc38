"""Which IP pools a pod may draw from automatically (no pool named by annotation).

Pure. Calico's rules: a pool serves automatic assignment when it is enabled, its
`assignmentMode` is Automatic, its `allowedUses` include Workload, and its `nodeSelector`
matches the pod's node. Naming a pool by annotation (as gateway pods do) bypasses the
node selector, which is why egress pools use `nodeSelector: "!all()"`.
"""

from __future__ import annotations

from collections.abc import Sequence

from egressgw.calc import ipam
from egressgw.model import IPPool, Node
from egressgw.selector import parse


def automatic(pools: Sequence[IPPool], node: Node, version: int = 4) -> list[ipam.Pool]:
    """The pools a pod on `node` gets an address from when it names none, sorted by name."""
    usable = [
        p for p in pools
        if p.spec.cidr.version == version
        and not p.spec.disabled
        and p.spec.assignment_mode == "Automatic"
        and "Workload" in p.spec.effective_allowed_uses
        and parse(p.spec.node_selector).matches(node.metadata.labels)
    ]
    usable.sort(key=lambda p: p.metadata.name)
    return [ipam.Pool(p.metadata.name, p.spec.cidr, p.spec.effective_block_size) for p in usable]
