"""The model's validation rules restated for the API server: patterns, bounds, CEL rules.

Pure data. The pydantic models check values with Python functions, which a JSON schema
cannot carry; `crds` merges these keywords into the schema it derives from the models, at
the path given (`spec.rules[].gateway.selector`; `[]` is a list's items). A keyword whose
value is None is removed. Rules use Kubernetes' CEL libraries (strings, lists, ip, cidr,
available to CRD validation since Kubernetes 1.31). tests/unit/kube/test_crds.py checks
that every example passes and every invalid manifest the schema can judge fails, so these
rules and the models cannot drift apart unnoticed. What a schema cannot judge (selector
grammar, references between objects) is listed in docs/kubernetes.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Keywords = dict[str, Any]

_UINT16 = "(0|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_PORT = "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_DURATION = r"^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$"


def rule(expression: str, message: str, **extra: str) -> Keywords:
    return {"rule": expression, "message": message, **extra}


def cel(*rules: Keywords, **keywords: Any) -> Keywords:
    return {"x-kubernetes-validations": list(rules), **keywords}


CIDR = cel(
    rule("isCIDR(self)", "must be a valid subnet (address/prefix-length)"),
    rule("!isCIDR(self) || cidr(self) == cidr(self).masked()", "must be strictly masked"),
    maxLength=64,
)
CIDR_OR_IP = cel(
    rule(
        "isCIDR(self) ? cidr(self) == cidr(self).masked() : isIP(self)",
        "must be an IP address or a strictly masked subnet",
    ),
    maxLength=64,
)
IP = cel(rule("isIP(self)", "must be an IP address"), maxLength=64)
IPV4 = cel(rule("isIP(self) && ip(self).family() == 4", "must be an IPv4 address"), maxLength=15)
SELECTOR = cel(
    rule("!self.contains('global(')", "global() is not allowed in this selector"),
    maxLength=1024,
)
REQUIRED_SELECTOR = {**SELECTOR, "pattern": r"\S"}
ANY_SELECTOR: Keywords = {"maxLength": 1024}
DNS_SUBDOMAIN: Keywords = {"pattern": _DNS_SUBDOMAIN, "maxLength": 253}
DURATION: Keywords = {"pattern": _DURATION, "maxLength": 64}
COMMUNITY = cel(
    rule(
        "self.split(':').size() != 2 || self.split(':').all(p, size(p) <= 5 && int(p) <= 65535)",
        "is not a BGP community: each part of aa:nn must be 0-65535",
    ),
    rule(
        "self.split(':').size() != 3"
        " || self.split(':').all(p, size(p) <= 10 && int(p) <= 4294967295)",
        "is not a BGP community: each part of aa:nn:mm must be 0-4294967295",
    ),
    pattern="^(0|[1-9][0-9]*):(0|[1-9][0-9]*)(:(0|[1-9][0-9]*))?$",
    maxLength=32,
)
PEER_IP = cel(
    rule(
        "isIP(self)"
        f" || (self.matches('^[0-9.]+:{_PORT}$')"
        " && isIP(self.substring(0, self.lastIndexOf(':'))))"
        f" || (self.matches('^\\\\[[0-9a-fA-F:.]+\\\\]:{_PORT}$')"
        " && isIP(self.substring(1, self.lastIndexOf(']'))))",
        "must be an IP, IPv4:port or [IPv6]:port; the port must be between 1 and 65535",
    ),
    maxLength=64,
)


def _family(version: int) -> Keywords:
    return cel(
        rule(
            f"!has(self.cidr) || !isCIDR(self.cidr) || cidr(self.cidr).ip().family() == {version}",
            f"is not an IPv{version} CIDR",
            fieldPath=".cidr",
        ),
        rule(
            "has(self.cidr) == has(self.matchOperator)",
            "cidr and matchOperator must both be set or both be empty",
            fieldPath=".matchOperator",
        ),
        rule("!has(self.prefixLength) || has(self.cidr)", "prefixLength requires cidr"),
        rule(
            "!has(self.operations) || self.action == 'Accept'",
            "operations are only allowed with action Accept",
            fieldPath=".operations",
        ),
    )


def _filter_rules(direction: str, version: int) -> dict[str, Keywords]:
    base = f"spec.{direction}V{version}[]"
    limit = 32 if version == 4 else 128
    return {
        base: _family(version),
        f"{base}.cidr": CIDR,
        f"{base}.interface": {"pattern": r"^(\*|[a-zA-Z0-9_.*-]{1,15})$"},
        f"{base}.prefixLength.min": {"minimum": 0, "maximum": limit},
        f"{base}.prefixLength.max": {"minimum": 0, "maximum": limit},
        f"{base}.communities.values[]": COMMUNITY,
        f"{base}.operations[]": cel(rule(
            "[has(self.addCommunity), has(self.prependASPath), has(self.setPriority)]"
            ".filter(x, x).size() == 1",
            "an operation must have exactly one of addCommunity, prependASPath, setPriority",
        )),
        f"{base}.operations[].addCommunity.value": COMMUNITY,
    }


_POOL_FAMILY = "cidr(self.cidr).ip().family()"
_ENABLED = "has(self.{0}) && self.{0} != 'Never'"
_LB = "has(self.allowedUses) && 'LoadBalancer' in self.allowedUses"

IP_POOL: dict[str, Keywords] = {
    "spec": cel(
        rule(
            "!has(self.blockSize) || self.blockSize == 0 || !isCIDR(self.cidr) || ("
            f"{_POOL_FAMILY} == 4 ? self.blockSize >= 20 && self.blockSize <= 32"
            " : self.blockSize >= 116 && self.blockSize <= 128)",
            "blockSize must be between 20 and 32 for IPv4 pools,"
            " and between 116 and 128 for IPv6 pools",
            fieldPath=".blockSize",
        ),
        rule(
            "(has(self.disabled) && self.disabled) || !isCIDR(self.cidr)"
            " || cidr(self.cidr).prefixLength() <= ((has(self.blockSize) && self.blockSize != 0)"
            f" ? self.blockSize : ({_POOL_FAMILY} == 4 ? 26 : 122))",
            "IP pool size is too small for use with Calico IPAM: the pool is smaller than"
            " one block (use a larger pool, a larger blockSize prefix, or set disabled: true)",
            fieldPath=".cidr",
        ),
        rule(
            "!isCIDR(self.cidr) || !(cidr(self.cidr).containsIP('169.254.0.0')"
            " || cidr('169.254.0.0/16').containsIP(cidr(self.cidr).ip())"
            " || cidr(self.cidr).containsIP('fe80::')"
            " || cidr('fe80::/10').containsIP(cidr(self.cidr).ip()))",
            "IP pool CIDR must not overlap the link-local range",
            fieldPath=".cidr",
        ),
        rule(
            f"!({_ENABLED.format('ipipMode')} && isCIDR(self.cidr) && {_POOL_FAMILY} == 6)",
            "IPIP is not supported on an IPv6 pool",
            fieldPath=".ipipMode",
        ),
        rule(
            f"!({_ENABLED.format('ipipMode')} && {_ENABLED.format('vxlanMode')})",
            "ipipMode and vxlanMode cannot both be enabled",
            fieldPath=".vxlanMode",
        ),
        rule(
            "!(has(self.namespaceSelector) && size(self.namespaceSelector) > 0"
            " && has(self.allowedUses) && 'Tunnel' in self.allowedUses)",
            "namespaceSelector may not be set when allowedUses has Tunnel",
            fieldPath=".namespaceSelector",
        ),
        rule(
            f"!({_LB}) || !('Workload' in self.allowedUses || 'Tunnel' in self.allowedUses)",
            "LoadBalancer cannot be combined with Workload or Tunnel",
            fieldPath=".allowedUses",
        ),
        rule(
            f"!({_LB}) || !({_ENABLED.format('ipipMode')} || {_ENABLED.format('vxlanMode')})",
            "IP Pool with AllowedUse LoadBalancer cannot use IPIP or VXLAN",
            fieldPath=".allowedUses",
        ),
        rule(
            f"!({_LB}) || !(has(self.disableBGPExport) && self.disableBGPExport)",
            "IP Pool with AllowedUse LoadBalancer cannot disable BGP export",
            fieldPath=".disableBGPExport",
        ),
        rule(
            f"!({_LB}) || !has(self.nodeSelector) || self.nodeSelector == 'all()'",
            "IP Pool with AllowedUse LoadBalancer must have nodeSelector set to all()",
            fieldPath=".nodeSelector",
        ),
    ),
    "spec.cidr": CIDR,
    "spec.nodeSelector": SELECTOR,
    "spec.namespaceSelector": SELECTOR,
    "spec.allowedUses": {"x-kubernetes-list-type": "set"},
}

_PEER_V6 = "(self.peerIP.startsWith('[') || self.peerIP.indexOf(':') != self.peerIP.lastIndexOf(':'))"

BGP_PEER: dict[str, Keywords] = {
    "spec": cel(
        rule("!(has(self.node) && has(self.nodeSelector))",
             "node and nodeSelector cannot both be set", fieldPath=".nodeSelector"),
        rule("!(has(self.peerIP) && has(self.peerSelector))",
             "peerIP and peerSelector cannot both be set", fieldPath=".peerSelector"),
        rule("!(has(self.peerSelector) && has(self.asNumber))",
             "asNumber must be empty when peerSelector is set", fieldPath=".asNumber"),
        rule("!has(self.localWorkloadSelector) || has(self.asNumber)",
             "asNumber is required when localWorkloadSelector is set", fieldPath=".asNumber"),
        rule("!has(self.localWorkloadSelector) || !(has(self.peerIP) || has(self.peerSelector))",
             "localWorkloadSelector cannot be set together with peerIP or peerSelector",
             fieldPath=".localWorkloadSelector"),
        rule("!has(self.reachableBy) || has(self.peerIP)",
             "reachableBy requires peerIP", fieldPath=".reachableBy"),
        rule("!has(self.reachableBy) || !has(self.peerIP) || !isIP(self.reachableBy)"
             f" || ((ip(self.reachableBy).family() == 6) == {_PEER_V6})",
             "ReachableBy and PeerIP address family mismatched", fieldPath=".reachableBy"),
        rule("!(has(self.keepOriginalNextHop) && self.keepOriginalNextHop"
             " && has(self.nextHopMode))",
             "keepOriginalNextHop and nextHopMode cannot both be set; use nextHopMode: Keep",
             fieldPath=".keepOriginalNextHop"),
    ),
    "spec.node": DNS_SUBDOMAIN,
    "spec.nodeSelector": ANY_SELECTOR,
    "spec.peerSelector": ANY_SELECTOR,
    "spec.localWorkloadSelector": ANY_SELECTOR,
    "spec.peerIP": PEER_IP,
    "spec.reachableBy": IP,
    "spec.filters[]": DNS_SUBDOMAIN,
    "spec.maxRestartTime": DURATION,
    "spec.keepaliveTime": DURATION,
}

_DESTINATION = (
    "(has({0}.destination) && has({0}.destination.cidr)"
    " ? ({0}.destination.cidr.contains('/') ? {0}.destination.cidr"
    " : {0}.destination.cidr + '/32') : '0.0.0.0/0')"
)

EGRESS_GATEWAY_POLICY: dict[str, Keywords] = {
    "spec": cel(
        rule("self.rules.exists(r, has(r.destination) || has(r.gateway))",
             "no rule has a destination or a gateway", fieldPath=".rules"),
        rule(
            "self.rules.all(r, self.rules.exists_one(o, "
            f"{_DESTINATION.format('o')} == {_DESTINATION.format('r')}))",
            "rules match by longest prefix, so each destination may appear only once",
            fieldPath=".rules",
        ),
    ),
    # maxItems bounds the cost of the quadratic duplicate check for the CEL cost budget.
    "spec.rules": {"minItems": 1, "maxItems": 256},
    "spec.rules[].destination.cidr": cel(
        rule(
            "isCIDR(self) ? (cidr(self).ip().family() == 4 && cidr(self) == cidr(self).masked())"
            " : (isIP(self) && ip(self).family() == 4)",
            "egress gateway policy destinations must be IPv4 (a strictly masked CIDR or an IP)",
        ),
        maxLength=18,
    ),
    "spec.rules[].gateway.selector": REQUIRED_SELECTOR,
    "spec.rules[].gateway.namespaceSelector": REQUIRED_SELECTOR,
    "spec.rules[].description": {"maxLength": 1024},
}


def _probe(name: str) -> Keywords:
    return cel(rule(
        "self.timeoutSeconds >= self.intervalSeconds",
        f"{name} probe timeout must be greater than interval",
        fieldPath=".timeoutSeconds",
    ))


EGRESS_GATEWAY: dict[str, Keywords] = {
    "spec.ipPools": {"minItems": 1, "maxItems": 64},
    "spec.ipPools[]": cel(rule("has(self.name) || has(self.cidr)",
                               "either name or cidr must be specified")),
    "spec.ipPools[].cidr": CIDR,
    "spec.egressGatewayFailureDetection": cel(rule(
        "has(self.icmpProbe) || has(self.httpProbe)",
        "either ICMP or HTTP probe must be configured",
    )),
    "spec.egressGatewayFailureDetection.icmpProbe": _probe("ICMP"),
    "spec.egressGatewayFailureDetection.icmpProbe.ips": {"minItems": 1},
    "spec.egressGatewayFailureDetection.icmpProbe.ips[]": IPV4,
    "spec.egressGatewayFailureDetection.httpProbe": _probe("HTTP"),
    "spec.egressGatewayFailureDetection.httpProbe.urls": {"minItems": 1},
    "spec.aws": cel(rule(
        "!has(self.elasticIPs) || size(self.elasticIPs) == 0 || self.nativeIP == 'Enabled'",
        "NativeIP must be enabled when elastic IPs are used",
        fieldPath=".elasticIPs",
    )),
    "spec.aws.elasticIPs[]": IPV4,
}

FELIX_CONFIGURATION: dict[str, Keywords] = {
    # Calico's CRD takes any case here (the model normalises it).
    "spec.egressIPSupport": {
        "enum": None,
        "pattern": "(?i)^(Disabled|EnabledPerNamespace|EnabledPerNamespaceOrPerPod)?$",
    },
    "spec.routeTableRanges[]": cel(rule("self.min <= self.max",
                                        "min must not be greater than max")),
    "spec.egressGatewayPollInterval": DURATION,
    "spec.flowLogsFlushInterval": DURATION,
}

BGP_CONFIGURATION: dict[str, Keywords] = {
    "spec.serviceClusterIPs[].cidr": CIDR,
    "spec.serviceExternalIPs[].cidr": CIDR,
    "spec.serviceLoadBalancerIPs[].cidr": CIDR,
    "spec.communities[].value": COMMUNITY,
    "spec.prefixAdvertisements[].cidr": CIDR,
}

RULES: Mapping[str, dict[str, Keywords]] = {
    "EgressGateway": EGRESS_GATEWAY,
    "EgressGatewayPolicy": EGRESS_GATEWAY_POLICY,
    "IPPool": IP_POOL,
    "IPReservation": {"spec.reservedCIDRs[]": CIDR_OR_IP},
    "BGPConfiguration": BGP_CONFIGURATION,
    "BGPPeer": BGP_PEER,
    "BGPFilter": {
        path: keywords
        for direction in ("export", "import")
        for version in (4, 6)
        for path, keywords in _filter_rules(direction, version).items()
    },
    "FelixConfiguration": FELIX_CONFIGURATION,
    "GlobalNetworkSet": {"spec.nets[]": CIDR_OR_IP},
}

DEFAULTED_KINDS = frozenset({"EgressGateway"})
"""Kinds whose scalar defaults the API server fills in, as the reference operator's CRD
does (replicas, logSeverity, probe timings); Calico's own kinds keep absent fields absent."""


def _column(name: str, path: str, kind: str = "string", priority: int = 0) -> Keywords:
    column: Keywords = {"name": name, "type": kind, "jsonPath": path}
    if priority:
        column["priority"] = priority
    return column


_AGE = _column("Age", ".metadata.creationTimestamp", "date")

COLUMNS: Mapping[str, list[Keywords]] = {
    "EgressGateway": [
        _column("Replicas", ".spec.replicas", "integer"),
        _column("State", ".status.state"),
        _column("Ready", ".status.conditions[?(@.type=='Ready')].status"),
        _AGE,
    ],
    "EgressGatewayPolicy": [_AGE],
    "IPPool": [
        _column("CIDR", ".spec.cidr"),
        _column("Block", ".spec.blockSize", "integer"),
        _column("Selector", ".spec.nodeSelector", priority=1),
        _AGE,
    ],
    "BGPPeer": [
        _column("PeerIP", ".spec.peerIP"),
        _column("AS", ".spec.asNumber"),
        _column("Selector", ".spec.nodeSelector", priority=1),
        _AGE,
    ],
}
