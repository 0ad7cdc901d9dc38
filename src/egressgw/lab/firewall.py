"""The hub firewall's answer to a denied HTTP request, as Azure Firewall gives it:
status 470 and "Action: Deny. Reason: No rule matched. Proceeding with default action."

The firewall's nftables redirect every denied new TCP/80 connection here (see
`rulesets.firewall_ruleset`), so the client sees who refused it, not a timeout. Each
request is logged as one JSON line (source, the Host it asked for, the path).

Run inside the edge namespace: `python -m egressgw.lab.firewall --listen 10.0.0.4 --port
8470`. Prints "egressgw-firewall ready" once it listens; stops at once on SIGTERM. Stdlib
only (like `lab.echo`): it must not import anything beyond the standard library.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

READY = "egressgw-firewall ready"
STATUS = 470
BODY = "Action: Deny. Reason: No rule matched. Proceeding with default action."


class _Deny(BaseHTTPRequestHandler):
    server_version = "egressgw-firewall"
    protocol_version = "HTTP/1.1"

    def _deny(self) -> None:
        data = BODY.encode()
        # Azure Firewall's status line reads "470 status code 470".
        self.send_response(STATUS, f"status code {STATUS}")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.close_connection = True
        record = {
            "action": "Deny",
            "source": self.client_address[0],
            "host": self.headers.get("Host"),
            "path": self.path,
        }
        print(json.dumps(record), flush=True)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _deny

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one JSON line per request instead


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="egressgw.lab.firewall", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--listen", required=True, help="address to bind")
    parser.add_argument("--port", type=int, default=8470)
    args = parser.parse_args(argv)
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server = ThreadingHTTPServer((args.listen, args.port), _Deny)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"{READY} on {args.listen}:{args.port}", flush=True)
    stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
