"""The dashboard's monitor: divergences with known answers, expiry, alerts and bucketed views."""

from __future__ import annotations

import math

import pytest

from bandit_router.config import DashboardConfig
from bandit_router.dashboard.monitor import Monitor, divergence, entropy
from bandit_router.features import Choice


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def event(model: str, reward: float, created_at: float) -> dict[str, object]:
    return {
        "model": model,
        "task": "t",
        "reward": reward,
        "quality": reward,
        "cost_usd": 0.001,
        "cost_source": "computed",
        "energy_joules": 2.0,
        "energy_source": "estimated",
        "created_at": created_at,
        "pmf": [["a", 0.5], ["b", 0.5]],
        "index": 0 if model == "a" else 1,
        "probability": 0.5,
    }


def test_divergences_and_entropy_with_known_answers() -> None:
    assert divergence([[1.0, 0.0]], [[0.0, 1.0]])[0] == pytest.approx(1.0)
    assert divergence([[0.5, 0.5]], [[0.5, 0.5]]) == pytest.approx((0.0, 0.0))
    tv, kl = divergence([[0.5, 0.5]], [[0.25, 0.75]])
    assert tv == pytest.approx(0.25)
    assert kl == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75))
    assert entropy([0.25] * 4) == pytest.approx(math.log(4))


def test_expired_decisions_leave_the_pending_count() -> None:
    clock = Clock()
    monitor = Monitor(DashboardConfig(), clock)
    for i in range(3):
        monitor.on_route(f"d{i}", "a", "t", [("a", 0.5), ("b", 0.5)], 0.5, Choice.of("|T x", ["|A a", "|A b"]))
    clock.now += 5
    monitor.on_reward("d0", event("a", 1.0, clock.now - 5))
    assert (len(monitor.outstanding), monitor.expired) == (2, 0)
    for decision_id in ("d1", "d2", "d1"):  # the sweep reports each once; a repeat is not counted again
        monitor.on_expired(decision_id)
    assert (len(monitor.outstanding), monitor.expired) == (0, 2)
    health = monitor.health(learner_lag=0, expired=7)
    assert (health["pending"], health["expired"]) == (0, 7)
    assert health["reward_delay_s"]["p50"] == pytest.approx(5.0)


def test_a_reward_shift_raises_an_alert() -> None:
    clock = Clock()
    monitor = Monitor(DashboardConfig(shift_window=20, reward_shift_alert=0.2), clock)
    for i in range(20):
        monitor.on_reward(f"d{i}", event("a", 0.9, clock.now))
    assert monitor.alerts() == []
    for i in range(20, 40):
        monitor.on_reward(f"d{i}", event("b", 0.5, clock.now))
    (alert,) = monitor.alerts()
    assert "last 20 rewards is 0.500, 0.900 the 20 before" in alert


def test_views_bucket_what_happened_in_the_window() -> None:
    clock = Clock()
    monitor = Monitor(DashboardConfig(), clock)
    for i in range(10):
        clock.now += 1
        model = "a" if i < 5 else "b"
        monitor.on_route(f"d{i}", model, "t", [("a", 0.5), ("b", 0.5)], 0.5, Choice.of("|T x", ["|A a", "|A b"]))
        monitor.on_reward(f"d{i}", event(model, 1.0 if model == "a" else 0.0, clock.now))
    everything = monitor.shares(0)
    assert sum(everything["decisions"]) == 10
    recent = monitor.shares(2.5)  # the last three decisions (one a second), all b
    assert sum(recent["decisions"]) == 3 and set(recent["share"]) == {"b"}
    view = monitor.rewards_view(0)
    assert sum(view["rewards"]) == 10 and sum(sum(v) for v in view["energy_joules_by_source"].values()) == 20.0
    ope = monitor.ope(0)
    # Logged uniformly: always a earns 1 and always b 0, exactly, under SNIPS.
    assert ope["policies"]["always a"]["snips"]["value"] == pytest.approx(1.0)
    assert ope["policies"]["always b"]["snips"]["value"] == pytest.approx(0.0)
    assert ope["policies"]["live policy"]["ips"]["value"] == pytest.approx(0.5)
