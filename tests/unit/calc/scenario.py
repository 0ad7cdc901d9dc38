"""A small cluster written as YAML, for the decision tests. Pure helpers; no I/O."""

from __future__ import annotations

import json
import textwrap

from egressgw.calc import cluster, snapshot
from egressgw.model import parsing
from egressgw.model.resourceset import ResourceSet

BASE = """
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {egressIPSupport: EnabledPerNamespaceOrPerPod}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: default-ipv4-ippool}
spec: {cidr: 10.244.0.0/16, natOutgoing: true}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: egress-red}
spec: {cidr: 10.10.10.0/29, blockSize: 31, nodeSelector: "!all()"}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: egress-blue}
spec: {cidr: 10.10.20.0/29, blockSize: 32, nodeSelector: "!all()"}
---
apiVersion: v1
kind: Node
metadata: {name: node-a, labels: {topology.kubernetes.io/zone: a}}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-b, labels: {topology.kubernetes.io/zone: b}}
status: {addresses: [{type: InternalIP, address: 10.0.0.2}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: default}
---
apiVersion: v1
kind: Namespace
metadata: {name: egw, labels: {team: egress}}
---
apiVersion: operator.tigera.io/v1
kind: EgressGateway
metadata: {name: red, namespace: default}
spec:
  replicas: 2
  ipPools: [{name: egress-red}]
  template:
    metadata: {labels: {egress-code: red}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule,
         labelSelector: {matchLabels: {egress-code: red}}}
---
apiVersion: operator.tigera.io/v1
kind: EgressGateway
metadata: {name: blue, namespace: egw}
spec:
  replicas: 2
  ipPools: [{name: egress-blue}]
  template:
    metadata: {labels: {egress-code: blue}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default, labels: {app: client}}
spec: {nodeName: node-a}
status: {podIP: 10.244.0.5}
"""


def resource_set(*overrides: str, base: str = BASE) -> ResourceSet:
    """BASE, with each YAML document in `overrides` added or replacing its namesake."""
    rs = ResourceSet.build(parsing.parse_documents(textwrap.dedent(base), "scenario.yaml"))
    for doc in overrides:
        for res in parsing.parse_documents(textwrap.dedent(doc), "override.yaml"):
            rs = rs.with_resource(res)
    return rs


def view(*overrides: str, base: str = BASE) -> cluster.ClusterView:
    """The decision's view, with gateway pods derived as on a fresh cluster."""
    v, _, problems = snapshot.view_of_manifests(resource_set(*overrides, base=base))
    assert not problems, problems
    return v


def namespace(name: str, annotations: dict[str, str], labels: dict[str, str] | None = None) -> str:
    """A Namespace document with annotations."""
    return json.dumps({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": name, "labels": labels or {}, "annotations": annotations}})


def client(annotations: dict[str, str], node: str = "node-a", ns: str = "default") -> str:
    """The client Pod document with annotations."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "client", "namespace": ns, "labels": {"app": "client"},
                     "annotations": annotations},
        "spec": {"nodeName": node}, "status": {"podIP": "10.244.0.5"},
    })


def felix(support: str) -> str:
    """A FelixConfiguration default document."""
    return json.dumps({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
                       "metadata": {"name": "default"}, "spec": {"egressIPSupport": support}})
