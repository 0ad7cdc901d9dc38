"""The nftables rulesets of the lab's own namespaces, as text: natOutgoing on each node, and
the cloud edge (AWS: internet gateway + NAT gateways; Azure: the hub firewall).

Pure: a function of the topology. `netns.build` loads them. The table is `ip
egressgw-lab`, never the egress dataplane's `egressgw`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address

from egressgw.lab.hub import DENY_PORT, AzureEdge
from egressgw.lab.topology import Node, Topology

TABLE = "egressgw-lab"


def _elements(pairs: Mapping[IPv4Address, IPv4Address]) -> str:
    items = ", ".join(f"{k} : {v}" for k, v in sorted(pairs.items()))
    return f" elements = {{ {items} }};" if items else ""


def _set(items: Iterable[object]) -> str:
    listed = ", ".join(map(str, items))
    return f" elements = {{ {listed} }};" if listed else ""


def node_ruleset(t: Topology, node: Node) -> str:
    """natOutgoing of the pod pool: pod traffic leaving eth0 for outside the cluster takes the
    node's IP, unless the egress dataplane marked it for a gateway (`nat_skip_mark`)."""
    cluster = ", ".join(map(str, (t.pod_pool, *t.vpc_cidrs)))
    skip = f" meta mark & {t.nat_skip_mark:#x} == 0" if t.nat_skip_mark else ""
    return f"""table ip {TABLE} {{
  set cluster {{ type ipv4_addr; flags interval; elements = {{ {cluster} }}; }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "eth0" ip saddr {t.pod_pool} ip daddr != @cluster{skip} snat to {node.ip}
  }}
}}
"""


def edge_ruleset(t: Topology) -> str:
    """AWS: an internet gateway (1:1 NAT of each associated Elastic IP, maps `eip_in` and
    `eip_out`) and a NAT gateway per zone for every other source of the zone's subnets.
    Traffic from the VPC to an EIP comes back into the VPC NATed as if it had left (AWS
    hairpin). Azure: the hub firewall (`firewall_ruleset`)."""
    if isinstance(t.edge, AzureEdge):
        return firewall_ruleset(t.edge)
    eips = {g.elastic_ip: g.ip for g in t.gateways if g.elastic_ip is not None}
    zones = "".join(
        f"    ip saddr {{ {', '.join(map(str, (z.subnet, *z.gateway_subnets)))} }} snat to {t.nat_address(z.name)}\n"
        for z in t.zones
    )
    return f"""table ip {TABLE} {{
  map eip_in {{ type ipv4_addr : ipv4_addr;{_elements(eips)} }}
  map eip_out {{ type ipv4_addr : ipv4_addr;{_elements({v: k for k, v in eips.items()})} }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    dnat to ip daddr map @eip_in
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "internet" jump public
    iifname "vpc" oifname "vpc" ct status dnat jump public
  }}
  chain public {{
    snat to ip saddr map @eip_out
{zones}  }}
}}
"""


def firewall_ruleset(edge: AzureEdge) -> str:
    """Azure Firewall's application rule of REF-AZ: new TCP connections from the VPC side
    (`vpc`) whose source is allowed, to an allowed destination and port, go out SNATed to
    the public address; a denied one to port 80 is redirected to the deny responder
    (HTTP 470), any other denied one is rejected. The dynamic sets `seen_allowed` and
    `seen_denied` record each decision as source . destination . port: what the firewall
    saw, readable with `nft -j list set`."""
    flow = "ip saddr . ip daddr . tcp dport"
    allowed = "ip saddr @allowed ip daddr @allowed_destinations tcp dport @allowed_ports"
    destinations = edge.allowed_destinations or ("0.0.0.0/0",)
    return f"""table ip {TABLE} {{
  set allowed {{ type ipv4_addr; flags interval;{_set(edge.allowed_sources)} }}
  set allowed_destinations {{ type ipv4_addr; flags interval;{_set(destinations)} }}
  set allowed_ports {{ type inet_service;{_set(edge.allowed_ports)} }}
  set seen_allowed {{ type ipv4_addr . ipv4_addr . inet_service; flags dynamic; size 65536; }}
  set seen_denied {{ type ipv4_addr . ipv4_addr . inet_service; flags dynamic; size 65536; }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname != "vpc" return
    fib daddr type local return
    {allowed} add @seen_allowed {{ {flow} }} return
    tcp dport 80 add @seen_denied {{ {flow} }} redirect to :{DENY_PORT}
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    ct state established,related accept
    iifname "vpc" oifname "internet" {allowed} accept
    iifname "vpc" oifname "internet" meta l4proto tcp add @seen_denied {{ {flow} }} reject with tcp reset
    iifname "vpc" oifname "internet" reject with icmp type admin-prohibited
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "internet" snat to {edge.public_address}
  }}
}}
"""
