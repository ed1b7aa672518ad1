"""Energy: counter wraparound, attribution arithmetic, precedence, and measurement through the service.

The counter source is injected here (its NVML counterpart runs in tests/energy/test_energy_gpu.py on a GPU);
Redis, the agent, the attribution and the service are the real ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import Routers, make_config

from bandit_router.config import Config, ModelSpec
from bandit_router.domain.metered import Metered
from bandit_router.domain.requests import RewardInput, RouteInput
from bandit_router.domain.reward import Source
from bandit_router.energy.attribution import BusyWindows, Flight, NotCovered, attribute
from bandit_router.energy.nvml import Cumulative
from bandit_router.energy.samples import EnergyAgent
from bandit_router.serving.router import RouterService

NODE = "gpu-node-1"


def steady(watts: float, start: float, end: float, step: float = 1.0) -> list[tuple[float, float]]:
    n = round((end - start) / step)
    return [(start + i * step, watts * i * step) for i in range(n + 1)]


def test_two_decisions_overlapping_on_one_gpu_share_the_overlap() -> None:
    samples = steady(100.0, 0.0, 10.0)
    a, b = Flight(0.0, 4.0), Flight(2.0, 6.0)
    # A alone for 2 s (200 J), then half of 2 s (100 J); B the mirror image.
    assert attribute(samples, [a, b], a) == pytest.approx(300.0)
    assert attribute(samples, [a, b], b) == pytest.approx(300.0)
    # Together they are charged exactly what the GPU drew while either was in flight.
    assert attribute(samples, [a, b], a) + attribute(samples, [a, b], b) == pytest.approx(100.0 * 6)


def test_power_changes_between_samples_are_followed() -> None:
    samples = [(0.0, 0.0), (1.0, 50.0), (2.0, 250.0), (3.0, 300.0)]
    assert attribute(samples, [Flight(0.5, 2.5)], Flight(0.5, 2.5)) == pytest.approx(25.0 + 200.0 + 25.0)


def test_idle_power_is_charged_or_not() -> None:
    samples = steady(100.0, 0.0, 10.0)
    window = Flight(1.0, 5.0)
    assert attribute(samples, [window], window, charge_idle=True, idle_watts=40.0) == pytest.approx(400.0)
    assert attribute(samples, [window], window, charge_idle=False, idle_watts=40.0) == pytest.approx(240.0)
    # Never below zero when the GPU draws less than the configured idle.
    assert attribute(samples, [window], window, charge_idle=False, idle_watts=500.0) == 0.0


def test_windows_the_samples_do_not_cover_are_refused() -> None:
    samples = steady(100.0, 10.0, 20.0)
    with pytest.raises(NotCovered):
        attribute(samples, [Flight(5.0, 15.0)], Flight(5.0, 15.0))
    with pytest.raises(NotCovered):
        attribute(samples, [Flight(12.0, 30.0)], Flight(12.0, 30.0), max_sample_age_s=2.0)
    # A short extrapolation past the newest sample is allowed, at the last interval's power.
    assert attribute(samples, [Flight(19.0, 21.0)], Flight(19.0, 21.0), max_sample_age_s=2.0) == pytest.approx(200.0)


def test_counter_wraparound_and_reset_never_go_backwards() -> None:
    wrapping = Cumulative(wrap_joules=1000.0)
    assert [wrapping.update({0: r})[0] for r in (900.0, 950.0, 20.0, 70.0)] == [0.0, 50.0, 120.0, 170.0]
    # Unknown modulus: a drop is a reset (driver reload), counted from zero.
    resetting = Cumulative()
    assert [resetting.update({0: r})[0] for r in (900.0, 950.0, 20.0)] == [0.0, 50.0, 70.0]


@dataclass
class FakeCounters:
    """Raw cumulative joules per GPU; a GPU missing from ``joules`` is not readable."""

    joules: dict[int, float] = field(default_factory=dict)

    def read(self) -> dict[int, float]:
        return dict(self.joules)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def placed(config: Config, placements: dict[str, tuple[int, ...]]) -> Config:
    models = tuple(
        ModelSpec(**{**m.__dict__, "node": NODE, "gpus": placements[m.id]}) if m.id in placements else m
        for m in config.models
    )
    return config.replace(models=models, energy={"node": "router-host", "measure": False, "max_sample_age_s": 1.5})


@pytest.fixture
async def measured(
    routers: Routers, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[RouterService, EnergyAgent, FakeCounters, Clock]]:
    config = placed(make_config(tmp_path, redis_url), {"gemma-2-9b-it": (0,), "llama-3.3-70b-instruct": (0, 1)})
    clock = Clock(1000.0)
    service = await routers(config, clock=clock)
    counters = FakeCounters({0: 5000.0, 1: 100.0})
    agent = EnergyAgent(counters, service.store.energy, NODE, 1.0, 3600.0, clock=clock)
    yield service, agent, counters, clock


async def tick(agent: EnergyAgent, counters: FakeCounters, clock: Clock, watts: dict[int, float]) -> None:
    """One second passes at the given power per GPU, then the agent publishes."""
    clock.now += 1.0
    for gpu, w in watts.items():
        counters.joules[gpu] += w
    await agent.publish_once()


async def test_overlapping_decisions_are_measured_through_the_service(
    measured: tuple[RouterService, EnergyAgent, FakeCounters, Clock],
) -> None:
    service, agent, counters, clock = measured
    await agent.publish_once()
    a = await service.route(RouteInput(query="Write a poem about rain", candidates=("gemma-2-9b-it",)))
    await tick(agent, counters, clock, {0: 100.0, 1: 0.0})
    b = await service.route(RouteInput(query="Write a poem about snow", candidates=("gemma-2-9b-it",)))
    await tick(agent, counters, clock, {0: 100.0, 1: 0.0})
    await tick(agent, counters, clock, {0: 100.0, 1: 0.0})
    first = await service.reward(RewardInput(decision_id=a.decision_id, quality=1.0))
    await tick(agent, counters, clock, {0: 100.0, 1: 0.0})
    second = await service.reward(RewardInput(decision_id=b.decision_id, quality=1.0))
    # A: 1 s alone + 2 s shared with B = 100 + 100 J; B: 2 s shared + 1 s alone after A landed = 100 + 100 J.
    assert first.energy.source is Source.MEASURED and first.energy.value == pytest.approx(200.0)
    assert second.energy.source is Source.MEASURED and second.energy.value == pytest.approx(200.0)
    assert "shared by time with up to 2 decisions in flight" in first.energy.basis
    # Reported still beats measured.
    c = await service.route(RouteInput(query="Write a poem about fog", candidates=("gemma-2-9b-it",)))
    await tick(agent, counters, clock, {0: 100.0, 1: 0.0})
    reported = await service.reward(RewardInput(decision_id=c.decision_id, quality=1.0, energy_joules=7.0))
    assert (reported.energy.source, reported.energy.value) == (Source.REPORTED, 7.0)


async def test_a_decision_on_two_gpus_is_charged_both(
    measured: tuple[RouterService, EnergyAgent, FakeCounters, Clock],
) -> None:
    service, agent, counters, clock = measured
    await agent.publish_once()
    decision = await service.route(
        RouteInput(query="Prove that sqrt(2) is irrational", candidates=("llama-3.3-70b-instruct",))
    )
    await tick(agent, counters, clock, {0: 300.0, 1: 200.0})
    await tick(agent, counters, clock, {0: 300.0, 1: 200.0})
    outcome = await service.reward(RewardInput(decision_id=decision.decision_id, quality=1.0))
    assert outcome.energy.source is Source.MEASURED
    assert outcome.energy.value == pytest.approx(2 * 300.0 + 2 * 200.0)


async def test_a_missing_gpu_falls_back_to_the_estimate_and_says_why(
    measured: tuple[RouterService, EnergyAgent, FakeCounters, Clock],
) -> None:
    service, agent, counters, clock = measured
    await agent.publish_once()
    decision = await service.route(
        RouteInput(query="Prove that sqrt(2) is irrational", candidates=("llama-3.3-70b-instruct",))
    )
    await tick(agent, counters, clock, {0: 300.0, 1: 200.0})
    del counters.joules[1]  # GPU 1 falls off the bus
    for _ in range(3):
        await tick(agent, counters, clock, {0: 300.0})
    outcome = await service.reward(RewardInput(decision_id=decision.decision_id, quality=1.0))
    assert outcome.energy.source is Source.ESTIMATED
    assert "not measured: no energy samples of GPU 1 on node 'gpu-node-1' cover the decision" in outcome.energy.basis
    # A model the catalog places on no GPU says so too.
    other = await service.route(RouteInput(query="hello", candidates=("qwen2.5-7b-instruct",)))
    unplaced = await service.reward(RewardInput(decision_id=other.decision_id, quality=1.0))
    assert unplaced.energy.source is Source.ESTIMATED and "has no GPUs in the catalog" in unplaced.energy.basis


def test_overlapping_embedding_batches_count_each_instant_of_gpu_energy_once() -> None:
    # Two embedding workers share one GPU: their batches overlap, and the GPU drew 1 W throughout.
    meter = BusyWindows(0)
    meter.add_sample(0.0, 0.0)
    meter.add_window(1.0, 3.0, 4)
    meter.add_window(2.0, 5.0, 6)
    meter.add_sample(10.0, 10.0)
    assert (meter.joules, meter.items) == (pytest.approx(4.0), 10)
    # Batches that began before the counted stretch ended are charged only past it (or not at all).
    meter.add_window(4.0, 6.0, 3)
    meter.add_window(3.0, 4.5, 1)
    meter.add_sample(11.0, 11.0)
    assert (meter.joules, meter.items, meter.unmeasured_items) == (pytest.approx(5.0), 14, 0)
    meter.add_window(3.0, 4.0, 2)
    meter.add_sample(12.0, 12.0)
    assert (meter.joules, meter.items) == (pytest.approx(5.0), 16)


def test_the_agent_logs_its_redis_url_without_the_password() -> None:
    from bandit_router.store.embedded import redacted

    assert redacted("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert "s3cret" not in redacted("rediss://:s3cret@host")
    assert redacted("unix:///tmp/redis.sock") == "unix:///tmp/redis.sock"


async def test_a_gateway_call_is_charged_until_its_answer_ended_not_until_the_late_feedback(
    measured: tuple[RouterService, EnergyAgent, FakeCounters, Clock],
) -> None:
    service, agent, counters, clock = measured
    await agent.publish_once()
    decision = await service.route(RouteInput(query="Write a poem about hail", candidates=("gemma-2-9b-it",)))
    await tick(agent, counters, clock, {0: 100.0, 1: 0.0})
    await tick(agent, counters, clock, {0: 100.0, 1: 0.0})
    # The gateway saw the answer end here; the feedback comes three busy seconds later.
    metered = Metered("gemma-2-9b-it", 10, 20, 2000.0, None, answered_at=service.now())
    await service.store.put_after_answer(decision.decision_id, metered, None, 3600.0)
    for _ in range(3):
        await tick(agent, counters, clock, {0: 500.0, 1: 0.0})
    outcome = await service.reward(RewardInput(decision_id=decision.decision_id, quality=1.0))
    assert outcome.energy.source is Source.MEASURED and outcome.energy.value == pytest.approx(200.0)
    assert "over 2.000 s from Route to the end of its answer" in outcome.energy.basis
