"""Fast gateway failure detection from the client node.

The agent probes every gateway its node routes through: an HTTP GET of /readiness on the
gateway pod's health port, from inside the node's namespace, so the probe crosses the same
underlay path as the tunnelled traffic. A gateway fails after `fall` consecutive bad probes
(refused, timed out, or not 200: a gateway whose own upstream probes fail reports 503) and
comes back only after `rise` consecutive good ones. Probes start every interval even while
earlier ones still wait. With the defaults (every 100 ms, 200 ms timeout, 3 and 3) a gateway
that refuses is out in 0.2-0.3 s and a silent one (dead node, cut path) in 0.4-0.5 s, where
the reference takes 30-60 s.
A gateway never probed yet counts as healthy, as in the reference.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from egressgw.drivers.netns import in_netns

log = logging.getLogger("egressgw.agent.health")


@dataclass
class ProbeSettings:
    """How often and how strictly gateways are probed."""

    port: int = 8080
    interval: float = 0.1
    timeout: float = 0.2
    fall: int = 3
    rise: int = 3


@dataclass
class _Track:
    bad: int = 0
    good: int = 0
    failed: bool = False


@dataclass
class Prober:
    """Probes a changing set of gateways from a thread living in `netns`."""

    netns: str | None
    notify: Callable[[], None]  # called (from the prober's thread) when `failed` changes
    settings: ProbeSettings = field(default_factory=ProbeSettings)
    _targets: frozenset[IPv4Address] = frozenset()
    _tracks: dict[IPv4Address, _Track] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def failed(self) -> frozenset[IPv4Address]:
        """The gateways currently failed."""
        with self._lock:
            return frozenset(ip for ip, t in self._tracks.items() if t.failed)

    def set_targets(self, targets: Iterable[IPv4Address]) -> None:
        """Probe exactly these gateways from now on (failed ones stay tracked until healthy)."""
        with self._lock:
            self._targets = frozenset(targets) | {ip for ip, t in self._tracks.items() if t.failed}

    def start(self) -> threading.Thread:
        """Run the probe loop in a daemon thread inside the node's namespace."""
        thread = threading.Thread(
            target=in_netns, args=(self.netns, lambda: asyncio.run(self._loop())),
            name="prober", daemon=True,
        )
        thread.start()
        return thread

    async def _loop(self) -> None:
        # A round starts every interval whether or not the previous one has finished: a
        # silent gateway makes each probe wait out its timeout, and rounds run one after
        # the other would stretch `fall` probes to `fall` timeouts (0.6 s, not 0.4 s).
        rounds: set[asyncio.Task[None]] = set()
        while True:
            started = time.monotonic()
            task = asyncio.create_task(self._round())
            rounds.add(task)
            task.add_done_callback(rounds.discard)
            await asyncio.sleep(max(0.0, self.settings.interval - (time.monotonic() - started)))

    async def _round(self) -> None:
        with self._lock:
            targets = sorted(self._targets)
        results = await asyncio.gather(*(self._probe(ip) for ip in targets))
        if self._record(dict(zip(targets, results, strict=True))):
            self.notify()

    def _record(self, results: dict[IPv4Address, bool]) -> bool:
        changed = False
        with self._lock:
            for ip in list(self._tracks):
                if ip not in results and not self._tracks[ip].failed:
                    del self._tracks[ip]
            for ip, ok in results.items():
                track = self._tracks.setdefault(ip, _Track())
                track.good, track.bad = (track.good + 1, 0) if ok else (0, track.bad + 1)
                if not track.failed and track.bad >= self.settings.fall:
                    track.failed, changed = True, True
                    log.warning("gateway %s failed (%d bad probes)", ip, track.bad)
                elif track.failed and track.good >= self.settings.rise:
                    track.failed, changed = False, True
                    log.warning("gateway %s healthy again", ip)
                    if ip not in self._targets:
                        del self._tracks[ip]
        return changed

    async def _probe(self, ip: IPv4Address) -> bool:
        s = self.settings
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(str(ip), s.port), s.timeout)
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(b"GET /readiness HTTP/1.0\r\n\r\n")
            status = await asyncio.wait_for(reader.readline(), s.timeout)
            return status.split(b" ")[1:2] == [b"200"]
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
