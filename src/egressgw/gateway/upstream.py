"""The gateway's own upstream checks: `egressGatewayFailureDetection` (reference §2.2.4).

ICMP: ping each IP every `intervalSeconds`; HTTP: GET each URL (a fresh connection, any HTTP
response counts). A kind is satisfied while some target answered within the last
`timeoutSeconds`; when both kinds are configured both must be satisfied. An unsatisfied
gateway reports not ready, so the client nodes' probers take it out within a second.
"""

from __future__ import annotations

import functools
import http.client
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from egressgw.drivers.netns import in_netns, run

log = logging.getLogger("egressgw.gateway.upstream")


@dataclass
class Upstream:
    """Tracks when each configured probe kind last succeeded."""

    netns: str | None
    detection: dict[str, Any] | None = None
    last_ok: dict[str, float] = field(default_factory=dict)  # kind -> monotonic time
    started: float = field(default_factory=time.monotonic)

    def problem(self) -> str | None:
        """Why the gateway is not ready, or None."""
        now = time.monotonic()
        for kind in ("icmpProbe", "httpProbe"):
            spec = (self.detection or {}).get(kind)
            if spec is None:
                continue
            timeout = float(spec.get("timeoutSeconds", 15 if kind == "icmpProbe" else 30))
            since = self.last_ok.get(kind, self.started)
            if kind not in self.last_ok and now - self.started < timeout:
                continue  # still within the first timeout: not judged yet
            if now - since > timeout:
                return f"{kind}: no target answered within {timeout:g}s"
        return None

    def loop(self) -> None:
        """Probe forever (run in a daemon thread)."""
        next_due: dict[str, float] = {}
        while True:
            spec = self.detection or {}
            for kind, check in (("icmpProbe", self._icmp), ("httpProbe", self._http)):
                probe = spec.get(kind)
                if probe is None or time.monotonic() < next_due.get(kind, 0.0):
                    continue
                interval = float(probe.get("intervalSeconds", 5 if kind == "icmpProbe" else 10))
                next_due[kind] = time.monotonic() + max(interval, 0.2)
                threading.Thread(target=self._one, args=(kind, check, probe, interval), daemon=True).start()
            time.sleep(0.1)

    def _one(self, kind: str, check: Callable[[Any, float], bool], probe: Any, interval: float) -> None:
        if check(probe, max(interval, 0.5)):
            self.last_ok[kind] = time.monotonic()

    def _icmp(self, probe: Any, wait: float) -> bool:
        for ip in probe.get("ips", []):
            done = run(self.netns, ["ping", "-n", "-c1", "-W", str(max(1, int(wait))), str(ip)])
            if done.returncode == 0:
                return True
        return False

    def _http(self, probe: Any, wait: float) -> bool:
        urls = [str(u) for u in probe.get("urls", [])]
        return any(in_netns(self.netns, functools.partial(_get, url, wait)) for url in urls)


def _get(url: str, timeout: float) -> bool:
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers={"Connection": "close"})
        conn.getresponse().read(0)
        return True  # any HTTP answer counts, whatever its status
    except OSError:
        return False
    finally:
        conn.close()
