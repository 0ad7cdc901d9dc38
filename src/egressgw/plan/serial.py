"""GatewayPlan to and from JSON: how an agent hands a gateway pod its plan (a file the
gateway watches, like the reference's policy-sync socket). Pure."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from egressgw.plan.dataplane import GatewayPlan, GatewayVxlan, ReturnRoute


def gateway_to_json(plan: GatewayPlan, failure_detection: dict[str, Any] | None = None) -> str:
    """The plan (and the EgressGateway's `egressGatewayFailureDetection`) as sorted JSON."""
    body: dict[str, Any] = {
        "failureDetection": failure_detection,
        "address": str(plan.address),
        "egressIP": str(plan.egress_ip),
        "uplink": plan.uplink,
        "native": plan.native,
        "vxlan": None if plan.vxlan is None else
        {"mtu": plan.vxlan.mtu, "vni": plan.vxlan.vni, "port": plan.vxlan.port},
        "returnRoutes": [{"destination": str(r.destination), "node": str(r.node)}
                         for r in plan.return_routes],
    }
    return json.dumps(body, sort_keys=True, indent=1)


def failure_detection_from_json(text: str) -> dict[str, Any] | None:
    """The `egressGatewayFailureDetection` the plan file carries, as written in the manifest."""
    found = json.loads(text).get("failureDetection")
    return found if isinstance(found, dict) else None


def gateway_from_json(text: str) -> GatewayPlan:
    """A plan back from `gateway_to_json` (raises ValueError/KeyError on bad input)."""
    body = json.loads(text)
    vx = body.get("vxlan")
    return GatewayPlan(
        address=IPv4Address(body["address"]),
        egress_ip=IPv4Address(body["egressIP"]),
        uplink=body.get("uplink", "eth0"),
        native=bool(body.get("native", False)),
        vxlan=None if vx is None else GatewayVxlan(mtu=vx["mtu"], vni=vx["vni"], port=vx["port"]),
        return_routes=tuple(
            ReturnRoute(IPv4Network(r["destination"]), IPv4Address(r["node"]))
            for r in body.get("returnRoutes", [])
        ),
    )
