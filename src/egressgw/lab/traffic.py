"""A client that watches its own traffic: the HA demo's, benchmark's and tests' instrument.

`Traffic` runs inside a pod's network namespace (a thread that entered it, running asyncio;
every socket is made there) against the lab's echo service, which answers each request with
the source address (and port) it saw:

- a stream of short connections: a fresh HTTP GET every `every` seconds, each recording when
  it started, whether it was answered within `timeout`, and the source the echo saw;
- long-lived flows, opened until each expected source address carries `per_source` of them:
  TCP (HTTP keep-alive, GET /json every `long_every`, answered with "ip:port") and UDP (a
  datagram every `long_every`, each answered with "ip port"). A flow records every source it
  was seen with, how many messages went unanswered, the longest silence, and how it broke.

Times are `time.monotonic()`, comparable with the caller's. This module only observes: it
must not change the lab, and it reads nothing of egressgw's own state.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from egressgw.lab import procs

_BROKEN = (OSError, TimeoutError, ValueError, KeyError, IndexError, asyncio.IncompleteReadError)
_LENGTH = re.compile(rb"Content-Length: *(\d+)", re.I)
Runner = Callable[[], Any]  # a coroutine function: one flow's loop
Closer = Callable[[], object]


@dataclass(frozen=True)
class TrafficSettings:
    every: float = 0.02  # a new short connection this often
    timeout: float = 0.5  # a short connection not answered by then has failed
    long_every: float = 0.05  # each long flow exchanges a message this often
    long_timeout: float = 1.0  # a long TCP flow whose answer takes longer is broken
    http_port: int = 80
    echo_port: int = 7


@dataclass(frozen=True)
class Attempt:
    """One short connection, started at `start`."""

    start: float
    ok: bool
    seen: IPv4Address | None
    ms: float
    port: int = 0  # the local port, once connected

    @property
    def end(self) -> float:
        return self.start + self.ms / 1000


@dataclass
class _FlowState:
    """A long flow while it runs (the event loop's thread alone writes it)."""

    proto: str
    port: int = 0
    sent: int = 0
    answered: int = 0
    sources: list[tuple[float, str]] = field(default_factory=list)
    error: tuple[float, str] | None = None
    last: float = 0.0
    max_gap: float = 0.0

    def answer(self, now: float, source: str) -> None:
        if not self.sources or self.sources[-1][1] != source:
            self.sources.append((now, source))
        if self.answered:
            self.max_gap = max(self.max_gap, now - self.last)
        self.answered, self.last = self.answered + 1, now

    def frozen(self) -> Flow:
        return Flow(self.proto, self.port, self.sent, self.answered, tuple(self.sources),
                    self.error, self.last, self.max_gap)  # fmt: skip


@dataclass(frozen=True)
class Flow:
    """A long flow as it went: `sources` are the "ip:port" the echo saw, each from when."""

    proto: str
    port: int
    sent: int
    answered: int
    sources: tuple[tuple[float, str], ...]
    error: tuple[float, str] | None
    last: float  # when the last answer came
    max_gap: float  # the longest time between two answers

    @property
    def address(self) -> IPv4Address | None:
        """The source address it started with."""
        return _address(self.sources[0][1]) if self.sources else None

    @property
    def lost(self) -> int:
        return self.sent - self.answered

    @property
    def disturbed(self) -> bool:
        """Broken, moved to another source, or a message left unanswered."""
        return self.error is not None or len(self.sources) > 1 or self.lost > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "proto": self.proto,
            "port": self.port,
            "address": str(self.address),
            "sent": self.sent,
            "answered": self.answered,
            "lost": self.lost,
            "sources": [s for _, s in self.sources],
            "error": None if self.error is None else self.error[1],
            "max_gap_ms": round(self.max_gap * 1000),
            "disturbed": self.disturbed,
        }


@dataclass(frozen=True)
class TrafficRecord:
    attempts: tuple[Attempt, ...]  # by start time
    flows: tuple[Flow, ...]


def _address(source: str) -> IPv4Address:
    return IPv4Address(source.split(":")[0])


async def attempt(target: IPv4Address, port: int = 80, timeout: float = 0.5) -> Attempt:
    """One fresh HTTP/1.0 GET / (the echo answers with our source address)."""
    start, writer, seen, local = time.monotonic(), None, None, 0
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(str(target), port)
            local = writer.get_extra_info("sockname")[1]
            writer.write(b"GET / HTTP/1.0\r\nHost: echo\r\n\r\n")
            reply = await reader.read()
        seen = IPv4Address(reply.split(b"\r\n\r\n", 1)[1].strip().decode())
    except _BROKEN:
        pass
    finally:
        if writer is not None:
            writer.close()
    return Attempt(start, seen is not None, seen, (time.monotonic() - start) * 1000, local)


def sample(netns: str, target: IPv4Address, count: int, port: int = 80) -> list[IPv4Address | None]:
    """The sources the echo saw for `count` fresh connections from `netns`, one by one."""

    async def run() -> list[IPv4Address | None]:
        return [(await attempt(target, port)).seen for _ in range(count)]

    return procs.in_netns(netns, lambda: asyncio.run(run()))


async def _get_json(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
    """One keep-alive GET /json: the "ip:port" the echo saw."""
    writer.write(b"GET /json HTTP/1.1\r\nHost: echo\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = _LENGTH.search(head)
    if length is None:
        raise ValueError("no Content-Length")
    body = json.loads(await reader.readexactly(int(length.group(1))))
    return f"{body['remote']}:{body['port']}"


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, flow: _FlowState) -> None:
        self.flow = flow

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        ip, port = data.decode().split()
        self.flow.answer(time.monotonic(), f"{ip}:{port}")

    def error_received(self, exc: Exception) -> None:
        self.flow.error = self.flow.error or (time.monotonic(), f"icmp: {exc}")


class Traffic:
    """Short connections and long flows from inside `netns` to the echo at `target`."""

    def __init__(
        self, netns: str, target: IPv4Address, settings: TrafficSettings = TrafficSettings()
    ) -> None:
        self.netns, self.target, self.s = netns, target, settings
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._attempts: list[Attempt] = []
        self._flows: list[_FlowState] = []
        self._thread: threading.Thread | None = None

    def start(
        self, expect: Sequence[IPv4Address] = (), per_source: int = 2, timeout: float = 10.0
    ) -> tuple[Flow, ...]:
        """Open `per_source` TCP and UDP flows through each source in `expect` (just
        `per_source` of each when empty), start the stream, and return the flows."""
        args = (tuple(expect), per_source)
        self._thread = threading.Thread(target=self._run, args=args, name="traffic", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise TimeoutError(f"traffic from {self.netns} did not start in {timeout:g}s")
        if self._error is not None:
            self._thread.join()
            raise self._error
        return tuple(f.frozen() for f in self._flows)

    def stop(self) -> TrafficRecord:
        """Stop, wait for the answers in flight, and return what was seen. Idempotent."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(30)
        attempts = tuple(sorted(self._attempts, key=lambda a: a.start))
        return TrafficRecord(attempts, tuple(f.frozen() for f in self._flows))

    def __enter__(self) -> Traffic:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self, expect: tuple[IPv4Address, ...], per: int) -> None:
        try:
            procs.in_netns(self.netns, lambda: asyncio.run(self._main(expect, per)))
        except BaseException as err:  # start() raises it
            self._error = err
        finally:
            self._ready.set()

    async def _main(self, expect: tuple[IPv4Address, ...], per: int) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        closers: list[Closer] = []
        try:
            runners = await self._open("tcp", expect, per, closers)
            runners += await self._open("udp", expect, per, closers)
            self._ready.set()
            tasks = [asyncio.create_task(run()) for run in [self._stream, *runners]]
            await self._stop.wait()
            await asyncio.gather(*tasks)
            await asyncio.sleep(self.s.timeout)  # answers to the last datagrams
        finally:
            for close in closers:
                close()

    async def _open(
        self, proto: str, expect: tuple[IPv4Address, ...], per: int, closers: list[Closer]
    ) -> list[Runner]:
        """Open flows until each expected address carries `per` of them."""
        need: Counter[IPv4Address | None] = Counter(dict.fromkeys(expect or (None,), per))
        runners: list[Runner] = []
        for _ in range(12 * per * len(need)):
            if not +need:
                return runners
            opened = await (self._open_tcp() if proto == "tcp" else self._open_udp())
            if opened is None:
                continue
            flow, runner, close = opened
            key = _address(flow.sources[0][1]) if expect else None
            if need[key] > 0:
                need[key] -= 1
                self._flows.append(flow)
                runners.append(runner)
                closers.append(close)
            else:
                close()
        raise RuntimeError(f"could not open {proto} flows through {', '.join(map(str, expect))}")

    async def _open_tcp(self) -> tuple[_FlowState, Runner, Closer] | None:
        writer = None
        try:
            async with asyncio.timeout(self.s.long_timeout):
                reader, writer = await asyncio.open_connection(str(self.target), self.s.http_port)
                source = await _get_json(reader, writer)
        except _BROKEN:
            if writer is not None:
                writer.close()
            return None
        flow = _FlowState("tcp", writer.get_extra_info("sockname")[1], sent=1)
        flow.answer(time.monotonic(), source)
        return flow, lambda: self._tcp_flow(flow, reader, writer), writer.close

    async def _tcp_flow(
        self, flow: _FlowState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        assert self._stop is not None
        due = time.monotonic()
        while not self._stop.is_set():
            due += self.s.long_every
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            flow.sent += 1
            try:
                async with asyncio.timeout(self.s.long_timeout):
                    source = await _get_json(reader, writer)
            except _BROKEN as err:
                flow.error = (time.monotonic(), type(err).__name__)
                return
            flow.answer(time.monotonic(), source)

    async def _open_udp(self) -> tuple[_FlowState, Runner, Closer] | None:
        assert self._loop is not None
        flow = _FlowState("udp", sent=1)
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Udp(flow), remote_addr=(str(self.target), self.s.echo_port)
        )
        flow.port = transport.get_extra_info("sockname")[1]
        transport.sendto(b"hello")
        deadline = time.monotonic() + self.s.long_timeout
        while not flow.answered and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if not flow.answered:
            transport.close()
            return None
        return flow, lambda: self._udp_flow(flow, transport), transport.close

    async def _udp_flow(self, flow: _FlowState, transport: asyncio.DatagramTransport) -> None:
        assert self._stop is not None
        due = time.monotonic()
        while not self._stop.is_set():
            due += self.s.long_every
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            transport.sendto(b"ping")
            flow.sent += 1

    async def _stream(self) -> None:
        assert self._stop is not None
        tasks, due = [], time.monotonic()
        while not self._stop.is_set():
            tasks.append(
                asyncio.create_task(attempt(self.target, self.s.http_port, self.s.timeout))
            )
            due += self.s.every
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        self._attempts.extend(await asyncio.gather(*tasks))
