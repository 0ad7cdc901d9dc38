"""The prober against a real HTTP server on loopback: fall, rise, and a 503 counts as bad."""

from __future__ import annotations

import socket
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


def test_a_silent_gateway_fails_after_fall_probes_not_fall_timeouts() -> None:
    """A gateway that accepts but never answers (a hung process; a dead one behaves alike
    with its SYNs unanswered): probes start every interval whatever the earlier ones wait
    for, so 3 bad probes take 2 intervals + 1 timeout (0.4 s), not 3 timeouts (0.6 s)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # never accepted: the kernel completes the handshake, nobody answers
    port = silent.getsockname()[1]
    prober = Prober(None, lambda: None, ProbeSettings(port=port))
    prober.set_targets([LOOPBACK])
    prober.start()
    try:
        took = wait_for(lambda: prober.failed == {LOOPBACK})
    finally:
        silent.close()
    assert took < 0.55
