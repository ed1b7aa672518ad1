"""The dashboard's monitor: divergences with known answers, expiry, alerts and bucketed views."""

from __future__ import annotations

import math

import pytest

from bandit_router.config import DashboardConfig
from bandit_router.domain.records import LearningEvent
from bandit_router.observability import alerts, estimates, views
from bandit_router.observability.monitor import Monitor
from bandit_router.observability.samples import divergence, entropy
from bandit_router.policy.vwlines import Choice


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def event(model: str, reward: float, created_at: float) -> LearningEvent:
    return LearningEvent.from_json(
        {
            "decision_id": "d",
            "shared": "|T t",
            "actions": ["|A a", "|A b"],
            "energy_weight": 0.0,
            "cost_weight": 0.0,
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
    )


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
    health = views.health(monitor, learner_lag=0, expired=7)
    assert (health["pending"], health["expired"]) == (0, 7)
    assert health["reward_delay_s"]["p50"] == pytest.approx(5.0)


def test_a_reward_shift_raises_an_alert() -> None:
    clock = Clock()
    monitor = Monitor(DashboardConfig(shift_window=20, reward_shift_alert=0.2), clock)
    for i in range(20):
        monitor.on_reward(f"d{i}", event("a", 0.9, clock.now))
    assert alerts.alerts(monitor) == []
    for i in range(20, 40):
        monitor.on_reward(f"d{i}", event("b", 0.5, clock.now))
    (alert,) = alerts.alerts(monitor)
    assert alert["kind"] == "reward" and "last 20 rewards is 0.500, 0.900 the 20 before" in alert["text"]


class FixedPolicy:
    """A policy that gives every probe the same pmf (the real Policy's drift is checked in the browser test)."""

    def __init__(self, pmf: list[float], learned: int) -> None:
        self._pmf, self.learned = pmf, learned

    def pmf(self, choice: Choice) -> list[float]:
        return self._pmf


def test_a_drift_alert_names_the_models_that_gained_and_lost_and_when() -> None:
    clock = Clock()
    monitor = Monitor(DashboardConfig(shift_window=10, drift_alert_tv=0.25), clock)
    choice = Choice.of("|T x", ["|A a", "|A b", "|A c"])
    for i in range(5):
        monitor.on_route(f"d{i}", "a", "t", [("a", 0.8), ("b", 0.1), ("c", 0.1)], 0.8, choice)
    monitor.on_policy(FixedPolicy([0.8, 0.1, 0.1], 50), "v3")  # type: ignore[arg-type]
    assert alerts.alerts(monitor) == []
    clock.now = 7200.0  # 02:00:00 UTC
    monitor.on_policy(FixedPolicy([0.2, 0.3, 0.5], 60), "v4")  # type: ignore[arg-type]
    (alert,) = alerts.alerts(monitor)
    assert alert["kind"] == "drift" and (alert["version"], alert["previous"]) == ("v4", "v3")
    assert alert["text"] == (
        "02:00:00 UTC: policy v4 moved 0.60 in total variation from the one before it on the probes (alert above "
        "0.25); gained c +0.40, b +0.20; lost a -0.60"
    )
    assert alert["change"] == pytest.approx({"a": -0.6, "b": 0.2, "c": 0.4})
    assert alert["before"] == pytest.approx({"a": 0.8, "b": 0.1, "c": 0.1})
    assert alert["after"] == pytest.approx({"a": 0.2, "b": 0.3, "c": 0.5})
    clock.now += DashboardConfig().alert_hold_s + 1
    assert alerts.alerts(monitor) == []


def test_empty_buckets_are_gaps_and_the_bucket_width_is_given() -> None:
    clock = Clock()
    monitor = Monitor(DashboardConfig(), clock)
    choice = Choice.of("|T x", ["|A a", "|A b"])
    for i in range(3):
        monitor.on_route(f"d{i}", "a", "t", [("a", 0.5), ("b", 0.5)], 0.5, choice)
        monitor.on_reward(f"d{i}", event("a", 1.0, clock.now))
    clock.now += 30.0  # then nothing for 30 s
    shares = views.shares(monitor, 0)
    assert shares["bucket_s"] == pytest.approx(1.0)
    assert shares["share"]["a"][0] == 1.0 and shares["share"]["a"][-1] is None
    rewards = views.rewards_view(monitor, 0)
    assert rewards["bucket_s"] == pytest.approx(1.0)
    assert rewards["mean_reward"][-1] is None and rewards["rewards"][-1] == 0
    # A source with no energy in a bucket is no bar there, not a zero-height one.
    assert rewards["energy_joules_by_source"]["estimated"][0] == 6.0
    assert rewards["energy_joules_by_source"]["measured"] == [None] * len(rewards["t"])
    assert views.exploration(monitor, 0)["mean_entropy"][-1] is None


def test_views_bucket_what_happened_in_the_window() -> None:
    clock = Clock()
    monitor = Monitor(DashboardConfig(), clock)
    for i in range(10):
        clock.now += 1
        model = "a" if i < 5 else "b"
        monitor.on_route(f"d{i}", model, "t", [("a", 0.5), ("b", 0.5)], 0.5, Choice.of("|T x", ["|A a", "|A b"]))
        monitor.on_reward(f"d{i}", event(model, 1.0 if model == "a" else 0.0, clock.now))
    everything = views.shares(monitor, 0)
    assert sum(everything["decisions"]) == 10
    recent = views.shares(monitor, 2.5)  # the last three decisions (one a second), all b
    assert sum(recent["decisions"]) == 3 and set(recent["share"]) == {"b"}
    view = views.rewards_view(monitor, 0)
    assert (
        sum(view["rewards"]) == 10
        and sum(x or 0.0 for v in view["energy_joules_by_source"].values() for x in v) == 20.0
    )
    ope = estimates.ope(monitor, 0)
    # Logged uniformly: always a earns 1 and always b 0, exactly, under SNIPS.
    assert ope["policies"]["always a"]["snips"]["value"] == pytest.approx(1.0)
    assert ope["policies"]["always b"]["snips"]["value"] == pytest.approx(0.0)
    assert ope["policies"]["live policy"]["ips"]["value"] == pytest.approx(0.5)
