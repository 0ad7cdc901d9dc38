"""egressgw: egress gateways for Kubernetes, API-compatible with Calico Enterprise."""

__version__ = "0.1.0"
