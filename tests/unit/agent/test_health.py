"""The prober against a real HTTP server on loopback: fall, rise, and a 503 counts as bad."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address

from egressgw.agent.health import Prober, ProbeSettings

LOOPBACK = IPv4Address("127.0.0.1")


class Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


def wait_for(condition, seconds: float = 3.0) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < seconds, "timed out"
        time.sleep(0.01)
    return time.monotonic() - start


def test_fails_on_503_and_on_refusal_and_recovers() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    events: list[frozenset[IPv4Address]] = []
    prober = Prober(None, lambda: events.append(prober.failed), ProbeSettings(port=port, interval=0.05))
    prober.set_targets([LOOPBACK])
    prober.start()
    time.sleep(0.3)
    assert prober.failed == frozenset()
    Health.status = 503
    wait_for(lambda: prober.failed == {LOOPBACK})
    Health.status = 200
    wait_for(lambda: prober.failed == frozenset())
    server.shutdown()
    server.server_close()
    wait_for(lambda: prober.failed == {LOOPBACK})
    assert events == [frozenset({LOOPBACK}), frozenset(), frozenset({LOOPBACK})]
