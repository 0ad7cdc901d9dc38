"""An independent view of the kernel for tests: iproute2 and nft in JSON mode.

It MUST NOT import egressgw, directly or indirectly (pyroute2's tests/net_tools.py rule):
a driver is never checked with the code that implements it. Standard library only; reads
through `ip -j`, `bridge -j`, `nft -j` and /proc/sys, always inside a named namespace.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def ip(netns: str, *args: str) -> Any:
    """`ip -n <netns> -j <args>`, parsed (an empty answer is an empty list)."""
    out = _run(["ip", "-n", netns, "-j", *args]).stdout.strip()
    return json.loads(out) if out else []


def rules(netns: str) -> list[dict[str, Any]]:
    return list(ip(netns, "rule", "show"))


def routes(netns: str, table: int | str = "main") -> list[dict[str, Any]]:
    """Routes of one table; an absent table has none."""
    done = _run(["ip", "-n", netns, "-j", "route", "show", "table", str(table)], check=False)
    return json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else []


def nexthops(netns: str) -> list[dict[str, Any]]:
    return list(ip(netns, "nexthop", "show"))


def buckets(netns: str, group: int) -> dict[int, int]:
    """A resilient group's bucket table: bucket index -> member nexthop id."""
    rows = ip(netns, "nexthop", "bucket", "show", "id", str(group))
    return {row["bucket"]["index"]: row["bucket"]["nhid"] for row in rows}


def link(netns: str, name: str) -> dict[str, Any] | None:
    done = _run(["ip", "-n", netns, "-j", "-d", "link", "show", "dev", name], check=False)
    return json.loads(done.stdout)[0] if done.returncode == 0 else None


def neighbours(netns: str, device: str) -> list[dict[str, Any]]:
    return list(ip(netns, "neigh", "show", "dev", device))


def fdb(netns: str, device: str) -> list[dict[str, Any]]:
    out = _run(["bridge", "-n", netns, "-j", "fdb", "show", "dev", device]).stdout.strip()
    return [e for e in json.loads(out) if "dst" in e] if out else []


def nft_table(netns: str, family: str, name: str) -> dict[str, Any] | None:
    """`nft -j list table`, as {"table", "chains", "rules", "sets", "maps"}; None if absent."""
    done = _run(
        ["ip", "netns", "exec", netns, "nft", "-j", "list", "table", family, name], check=False
    )
    if done.returncode:
        return None
    items = json.loads(done.stdout)["nftables"]
    view: dict[str, Any] = {"chains": {}, "rules": [], "sets": {}, "maps": {}}
    for item in items:
        if "table" in item:
            view["table"] = item["table"]
        elif "chain" in item:
            view["chains"][item["chain"]["name"]] = item["chain"]
        elif "rule" in item:
            view["rules"].append(item["rule"])
        elif "set" in item:
            view["sets"][item["set"]["name"]] = item["set"]
        elif "map" in item:
            view["maps"][item["map"]["name"]] = item["map"]
    return view


def nft_tables(netns: str) -> list[tuple[str, str]]:
    out = _run(["ip", "netns", "exec", netns, "nft", "-j", "list", "tables"]).stdout
    return [
        (t["table"]["family"], t["table"]["name"])
        for t in json.loads(out)["nftables"]
        if "table" in t
    ]


def sysctl(netns: str, key: str) -> str:
    """A sysctl by its /proc/sys path (slashes), read inside the namespace."""
    return _run(["ip", "netns", "exec", netns, "cat", f"/proc/sys/{key}"]).stdout.strip()


def snapshot(netns: str, tables: list[int]) -> dict[str, Any]:
    """Everything routing-related, with kernel identities (ifindex, nexthop ids)."""
    return {
        "links": ip(netns, "-d", "link", "show"),
        "rules": rules(netns),
        "nexthops": nexthops(netns),
        "routes": {t: routes(netns, t) for t in tables},
        "main": routes(netns, "main"),
        "neigh": ip(netns, "neigh", "show"),
    }


@contextmanager
def monitor(
    netns: str, what: tuple[str, ...] = ("link", "route", "rule", "nexthop", "neigh")
) -> Iterator[list[str]]:
    """Collect `ip monitor` events (and `nft monitor`'s) while the block runs."""
    events: list[str] = []
    procs = [
        subprocess.Popen(["ip", "-n", netns, "monitor", *what], stdout=subprocess.PIPE, text=True),
        subprocess.Popen(
            ["ip", "netns", "exec", netns, "nft", "monitor"], stdout=subprocess.PIPE, text=True
        ),
    ]
    time.sleep(0.3)  # let both subscribe before anything happens
    try:
        yield events
    finally:
        time.sleep(0.3)
        for proc in procs:
            proc.terminate()
            out, _ = proc.communicate(timeout=5)
            events.extend(line for line in out.splitlines() if line.strip())
