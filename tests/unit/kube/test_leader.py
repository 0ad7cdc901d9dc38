"""Leader election on a Lease in the emulator, in virtual time (an injected clock)."""

from __future__ import annotations

import asyncio

import pytest

from egressgw.kube.client import KubeClient
from egressgw.kube.leader import LeaderElector
from tests.unit.kube.emulator import ApiServer

NS = "egressgw"


class Clock:
    """Virtual time: `sleep` moves it on and lets other tasks run."""

    def __init__(self) -> None:
        self.now = 1_767_225_600.0  # 2026-01-01

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        for _ in range(20):  # let the other candidate's HTTP round trips complete
            await asyncio.sleep(0.001)


def elector(client: KubeClient, clock: Clock, identity: str) -> LeaderElector:
    return LeaderElector(client, namespace=NS, name="egressgw-controller", identity=identity,
                         lease_seconds=15, renew_deadline=10, retry=2, clock=clock, sleep=clock.sleep)


def lease(apiserver: ApiServer) -> dict[str, object]:
    spec: dict[str, object] = apiserver.stored("coordination.k8s.io", "leases", NS)["egressgw-controller"]["spec"]
    return spec


@pytest.mark.asyncio
async def test_one_leader_and_takeover_after_the_lease_expires(
    client: KubeClient, apiserver: ApiServer
) -> None:
    clock = Clock()
    a, b = elector(client, clock, "a"), elector(client, clock, "b")
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()  # b sees a's record for the first time
    clock.now += 10
    assert not await b.try_acquire_or_renew()  # a stopped renewing, but not long enough ago
    clock.now += 6
    assert await b.try_acquire_or_renew()
    assert not await a.try_acquire_or_renew()  # a comes back: the lease is b's now
    spec = lease(apiserver)
    assert (spec["holderIdentity"], spec["leaseTransitions"], spec["leaseDurationSeconds"]) == ("b", 1, 15)


@pytest.mark.asyncio
async def test_renewing_keeps_the_lease(client: KubeClient, apiserver: ApiServer) -> None:
    clock = Clock()
    a, b = elector(client, clock, "a"), elector(client, clock, "b")
    assert await a.try_acquire_or_renew()
    for _ in range(10):
        clock.now += 5
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
    assert lease(apiserver)["holderIdentity"] == "a"


@pytest.mark.asyncio
async def test_release_hands_over_at_once(client: KubeClient, apiserver: ApiServer) -> None:
    clock = Clock()
    a, b = elector(client, clock, "a"), elector(client, clock, "b")
    assert await a.try_acquire_or_renew()
    await a.release()
    assert await b.try_acquire_or_renew()


@pytest.mark.asyncio
async def test_work_runs_only_while_leading(client: KubeClient, apiserver: ApiServer) -> None:
    clock = Clock()
    a, b = elector(client, clock, "a"), elector(client, clock, "b")
    log: list[str] = []

    def work(name: str) -> object:
        async def body() -> None:
            log.append(f"{name} starts")
            try:
                await asyncio.Event().wait()
            finally:
                log.append(f"{name} stops")
        return body

    first = asyncio.create_task(a.run(work("a")))  # type: ignore[arg-type]
    await clock.sleep(0)
    second = asyncio.create_task(b.run(work("b")))  # type: ignore[arg-type]
    await clock.sleep(6)
    assert log == ["a starts"]

    async def partitioned() -> bool:
        return False

    a.try_acquire_or_renew = partitioned  # type: ignore[method-assign]  # a loses the API
    for _ in range(20):
        await clock.sleep(2)
        if "b starts" in log:
            break
    assert log[:3] == ["a starts", "a stops", "b starts"]  # never two leaders at once
    for task in (first, second):
        task.cancel()
    await asyncio.gather(first, second, return_exceptions=True)
    assert lease(apiserver)["holderIdentity"] in (None, "b")
