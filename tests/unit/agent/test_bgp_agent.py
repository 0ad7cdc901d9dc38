"""The agent's BIRD watchdog over the fake speaker: a dead speaker is restarted with the newest
plan, and one that keeps failing is retried after growing delays, never in a tight loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, ip_address, ip_network

import pytest

from egressgw.agent import bgp as agent_bgp
from egressgw.agent.bgp import BgpAgent, restart_delay
from egressgw.drivers.bird import FakeBgpSpeaker
from egressgw.plan.bgp import NodeBgpPlan, OriginatedPrefix


def plan(*blocks: str) -> NodeBgpPlan:
    return NodeBgpPlan(
        node="node-a",
        router_id=IPv4Address("10.1.0.4"),
        local_as=63400,
        listen_address=ip_address("10.1.0.4"),
        originated=tuple(OriginatedPrefix(ip_network(b)) for b in blocks),
    )


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.fixture
def speaker() -> FakeBgpSpeaker:
    return FakeBgpSpeaker()


@pytest.fixture
def agent(speaker: FakeBgpSpeaker, monkeypatch: pytest.MonkeyPatch) -> Iterator[BgpAgent]:
    monkeypatch.setattr(agent_bgp, "WATCH_SECONDS", 0.01)
    watched = BgpAgent("node-a", speaker)
    yield watched
    watched.close()


def test_restart_delay_grows_and_is_capped() -> None:
    assert [restart_delay(n) for n in range(8)] == [0, 1, 2, 4, 8, 16, 30, 30]


def test_no_watchdog_before_the_first_start(agent: BgpAgent, speaker: FakeBgpSpeaker) -> None:
    speaker.crash()
    agent.apply_plan(plan("10.244.0.0/26"))  # the speaker refuses: not started
    assert not agent.started
    time.sleep(0.05)
    assert speaker.restarts == []


def test_a_dead_speaker_is_restarted_at_once_with_the_newest_plan(
    agent: BgpAgent, speaker: FakeBgpSpeaker
) -> None:
    agent.apply_plan(plan("10.244.0.0/26"))
    newest = plan("10.244.0.0/26", "10.99.0.2/31")
    agent.apply_plan(newest)
    speaker.crash()
    eventually(lambda: agent.restarts == 1)
    assert speaker.restarts == [newest]
    assert speaker.plan == newest


def test_a_plan_applied_while_dead_is_what_the_restart_runs(
    agent: BgpAgent, speaker: FakeBgpSpeaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_bgp, "restart_delay", lambda runs: 0.2)
    agent.apply_plan(plan("10.244.0.0/26"))
    speaker.crash()
    newest = plan("10.244.0.64/26")
    agent.apply_plan(newest)  # fails (logged), remembered
    eventually(lambda: agent.restarts == 1)
    assert speaker.restarts == [newest]


def test_a_speaker_failing_at_start_is_retried_with_growing_delays(
    agent: BgpAgent, speaker: FakeBgpSpeaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []

    def delay(short_runs: int) -> float:
        asked.append(short_runs)
        return 0.01 * short_runs

    monkeypatch.setattr(agent_bgp, "restart_delay", delay)
    agent.apply_plan(plan("10.244.0.0/26"))
    speaker.fail_starts = 3
    speaker.crash()
    eventually(lambda: agent.restarts == 1)
    # The first death follows a good run; each failed start is a short run, counted up.
    assert asked == [0, 1, 2, 3]
    assert len(speaker.restarts) == 4
