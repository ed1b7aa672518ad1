"""A replay in virtual time: the same seed gives the same report, to the digit, and a short log is no longer
routed almost entirely by the first policy (the router learning as seldom as a fast replay served it, while the
baselines learned after every query)."""

from __future__ import annotations

import dataclasses

from streams import two_kinds

from bandit_router.config import Config
from bandit_router.embedding.model import Embedder
from bandit_router.offline.replay import report
from bandit_router.offline.replay.run import BANDIT, replay
from bandit_router.offline.replay.settings import ReplaySettings


def live(config: Config) -> Config:
    """The test configuration with the live learner's default cadence (the tests' own snapshots far more often)."""
    return config.replace(policy={"snapshot_every_events": 64, "snapshot_interval_s": 1.0})


async def test_a_replay_repeats_to_the_digit(config: Config, embedder: Embedder) -> None:
    records = two_kinds(120, seed=2)
    settings = ReplaySettings(energy_weight=0.0, cost_weight=0.0, seed=4)
    first = await replay(records, live(config), settings, embedder, show_progress=False)
    second = await replay(records, live(config), settings, embedder, show_progress=False)
    assert first == second
    assert report.markdown(first, "t") == report.markdown(second, "t")
    cadence = first["cadence"]
    assert cadence["time"] == "4 queries/s" and cadence["answer_s"] == 2.0
    # One snapshot a second (the live learner's interval) over the 30 s that 120 queries take at 4/s, and each
    # served: the policy's version counts them.
    assert 25 <= cadence["snapshots"] <= 33
    assert first["bandit_policy_version"] == f"v{cadence['snapshots']}"
    assert "in virtual time, queries at 4 queries/s" in report.markdown(first, "t")


async def test_a_short_log_at_a_live_rate_ranks_the_router_by_its_choices(config: Config, embedder: Embedder) -> None:
    # The 200-query log: two kinds of query, a specialist for each. At a live rate the router serves a
    # new policy every second, as it would live, and the baselines learn on the same schedule.
    records = two_kinds(200, seed=0)
    result = await replay(
        records, live(config), ReplaySettings(energy_weight=0.0, cost_weight=0.0, seed=0), embedder, show_progress=False
    )
    policies = result["policies"]
    bandit = policies[BANDIT]["mean_reward"]
    linucb = next(p["mean_reward"] for n, p in policies.items() if n.startswith("LinUCB"))
    best = next(p["mean_reward"] for n, p in policies.items() if n.startswith("best single"))
    assert bandit >= linucb, (bandit, linucb)
    assert bandit > best + 0.2, (bandit, best)
    # At a rate no live traffic has, no policy learns before the stream ends: all alike route by their priors.
    instant = await replay(
        records,
        live(config),
        dataclasses.replace(ReplaySettings(energy_weight=0.0, cost_weight=0.0, seed=0), rate=1e6),
        embedder,
        show_progress=False,
    )
    assert instant["cadence"]["snapshots"] <= 5
    assert instant["policies"][BANDIT]["mean_reward"] < bandit - 0.2
