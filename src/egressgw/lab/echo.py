"""The lab's `ifconfig.me`: tells each client the source address it saw.

- HTTP `GET /`     -> the client's address, one line of plain text (like `curl ifconfig.me`);
- HTTP `GET /json` -> {"remote": ip, "port": p, "local": the address it was reached on};
- TCP echo port    -> on connect, writes "<ip> <port>\\n" and closes;
- UDP echo port    -> answers every datagram with "<ip> <port>\\n".

Run inside a namespace: `python -m egressgw.lab.echo --listen 203.0.113.8 --listen ...`
(no --listen: every address of the namespace). Prints "egressgw-echo ready ..." once it
listens; stops at once on SIGTERM or SIGINT. Stdlib only and threaded: it must not import anything
beyond the standard library, so it starts fast and runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import signal
import socketserver
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

READY = "egressgw-echo ready"


class _HttpServer(ThreadingHTTPServer):
    request_queue_size = 1024
    quiet = False


class _Http(BaseHTTPRequestHandler):
    server_version = "egressgw-echo"
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def do_GET(self) -> None:
        remote, port = self.client_address[:2]
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._reply(f"{remote}\n", "text/plain")
        elif path == "/json":
            local = self.connection.getsockname()[0]
            body = json.dumps({"remote": remote, "port": port, "local": local})
            self._reply(body + "\n", "application/json")
        else:
            self.send_error(404)

    def _reply(self, body: str, content_type: str) -> None:
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)


def _peer_line(address: tuple[str, int]) -> bytes:
    return f"{address[0]} {address[1]}\n".encode()


class _TcpEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(_peer_line(self.client_address))


class _UdpEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        _data, sock = self.request
        sock.sendto(_peer_line(self.client_address), self.client_address)


class _TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024


class _UdpServer(socketserver.UDPServer):
    allow_reuse_address = True


def serve(
    listen: Sequence[str], http_port: int, echo_port: int, quiet: bool = False
) -> list[socketserver.BaseServer]:
    """Bind every service on every address and serve each in a daemon thread."""
    servers: list[socketserver.BaseServer] = []
    for addr in listen:
        if http_port:
            http = _HttpServer((addr, http_port), _Http)
            http.quiet = quiet
            servers.append(http)
        if echo_port:
            servers.append(_TcpServer((addr, echo_port), _TcpEcho))
            servers.append(_UdpServer((addr, echo_port), _UdpEcho))
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    return servers


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="egressgw.lab.echo", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", action="append", help="address to bind (repeatable)")
    parser.add_argument("--http-port", type=int, default=80, help="0 disables HTTP")
    parser.add_argument("--echo-port", type=int, default=7, help="TCP+UDP echo; 0 disables")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    listen = args.listen or ["0.0.0.0"]
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    serve(listen, args.http_port, args.echo_port, args.quiet)
    print(f"{READY} http={args.http_port} echo={args.echo_port} on {' '.join(listen)}", flush=True)
    stop.wait()
    # Every server runs in a daemon thread: returning ends them all at once, where an orderly
    # shutdown() would wait out each server's 0.5 s poll interval in turn.
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
