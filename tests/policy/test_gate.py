"""The quality gate: which snapshots it serves, what it logs, and that a restart serves what it promoted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import Routers, make_config

from bandit_router.config import Config, PolicyConfig, load_config
from bandit_router.domain.pricing import catalog_cost
from bandit_router.domain.requests import MAX_WEIGHT, RewardInput, RouteInput
from bandit_router.embedding.model import Embedder
from bandit_router.policy.gate import Gate, Logged
from bandit_router.policy.vw import Policy
from bandit_router.policy.vwlines import Choice
from bandit_router.store.redis_store import Store
from bandit_router.store.snapshots import SnapshotFiles

SHARED = "|T query"
ACTIONS = ("|A model_a", "|A model_b")


def trained(good: int, events: int = 200) -> Policy:
    """A policy that has learned action ``good`` answers with quality 1 and the other with 0."""
    config = load_config(env={})
    policy = Policy(config.policy, config.features, 8)
    for i in range(events):
        policy.learn_quality(SHARED, ACTIONS[i % 2], float(i % 2 == good))
    return policy


def window(good: int, events: int = 200) -> list[Logged]:
    """Logged uniformly at random: action ``good`` got reward 1, the other 0."""
    return [Logged(Choice.of(SHARED, ACTIONS), i % 2, 0.5, float(i % 2 == good)) for i in range(events)]


@pytest.mark.parametrize(
    ("settings", "events", "promoted", "reason"),
    [
        ({"gate_window": 0}, 200, True, "gate off"),
        ({"gate_min_events": 300}, 200, True, "window holds 200 < 300 events"),
        (
            {},
            200,
            False,
            r"SNIPS 0\.0\d+ vs (0\.9\d+|1\.0+) serving, lower by (0\.9\d+|1\.0+) ± 0\.\d+ \(1.96 s.e., 200 events, "
            r"support 100%, ESS \d+\): beyond tolerance 0.01$",
        ),
        ({"gate_tolerance": 1.0}, 200, True, "within tolerance 1"),
    ],
)
def test_gate_verdicts(settings: dict[str, float], events: int, promoted: bool, reason: str) -> None:
    gate = Gate(PolicyConfig(**settings))  # type: ignore[arg-type]
    for logged in window(good=0, events=events):
        gate.observe(logged)
    # The candidate learned that b is the good model; the window says a is.
    verdict = gate.judge(7, trained(good=1), trained(good=0))
    assert verdict.promoted is promoted
    assert verdict.version == 7
    assert re.search(reason, verdict.reason), verdict.reason
    if verdict.candidate is not None:
        assert verdict.to_json()["candidate"]["snips"] == verdict.candidate.value


def test_a_candidate_the_window_cannot_speak_for_as_a_whole_says_so_and_is_judged_where_it_can() -> None:
    # The logger ruled b out (probability 0) on nine decisions in ten: nothing logged there says how b answers. The
    # candidate that now takes b is "not estimable" on the window, and judged on the tenth that gave b a chance,
    # where b answered 0: held back, as a candidate that learned a burst of corrupted rewards must be.
    gate = Gate(PolicyConfig())
    for i in range(200):
        explored = i % 10 == 0
        logging = (0.5, 0.5) if explored else (1.0, 0.0)
        index = int(explored and i % 20 == 0)
        gate.observe(Logged(Choice.of(SHARED, ACTIONS), index, logging[index], float(index == 0), logging=logging))
    verdict = gate.judge(3, trained(good=1), trained(good=0))
    assert re.match(r"not estimable \(support 10%, ESS \d+\), judged on the decisions that support it: SNIPS ",
                    verdict.reason)  # fmt: skip
    assert not verdict.promoted
    assert verdict.support is not None and verdict.support.share == pytest.approx(0.1)
    assert verdict.to_json()["estimable"] is False and verdict.to_json()["support"] == pytest.approx(0.1)
    # Where the logger gave b a quarter of its mass throughout, the window speaks for the candidate as a whole.
    logged = Gate(PolicyConfig())
    for i in range(200):
        explored = i % 4 == 0
        logged.observe(Logged(Choice.of(SHARED, ACTIONS), int(explored), 0.25 if explored else 0.75,
                              float(not explored), logging=(0.75, 0.25)))  # fmt: skip
    judged = logged.judge(3, trained(good=1), trained(good=0))
    assert not judged.promoted and judged.reason.startswith("SNIPS") and "support 100%" in judged.reason
    assert judged.to_json()["estimable"] is True


def test_gate_promotes_the_better_candidate() -> None:
    gate = Gate(PolicyConfig())
    for logged in window(good=1):
        gate.observe(logged)
    verdict = gate.judge(2, trained(good=1), trained(good=0))
    assert verdict.promoted and verdict.candidate is not None and verdict.serving is not None
    assert verdict.candidate.value > 0.9 > 0.1 > verdict.serving.value


async def test_restart_serves_the_promoted_snapshot_not_the_held_back_checkpoint(
    tmp_path: Path, redis_url: str, embedder: Embedder, routers: Routers
) -> None:
    config: Config = make_config(tmp_path, redis_url)
    dimension = embedder.dimension
    served = Policy(config.policy, config.features, dimension).snapshot(3, "5-0")
    checkpoint = Policy(config.policy, config.features, dimension).snapshot(9, "12-0")
    files = SnapshotFiles.of(config)
    files.write(checkpoint.encode(), checkpoint.version)
    files.write_served(served.encode())
    service = await routers(config)
    try:
        assert service.policy_version == "v3"
        assert service.learner is not None and service.learner.policy.version == 9
        # Redis alone is enough too: the disk copy is a fallback.
        store = Store(service.store.client, config.redis.key_prefix)
        await store.save_served(served.encode(), served.version)
        await store.save_snapshot(checkpoint.encode(), checkpoint.version)
    finally:
        await service.close()
    for path in (config.server.data_path / "snapshots").iterdir():
        path.unlink()
    service = await routers(config)
    try:
        assert service.policy_version == "v3"
        assert service.learner is not None and service.learner.policy.version == 9
    finally:
        await service.close()


def test_a_tie_is_a_promotion() -> None:
    # The case that stalled learning with a plain "not below" rule: equal estimates, one a hair lower.
    gate = Gate(PolicyConfig())
    for logged in window(good=0):
        gate.observe(logged)
    verdict = gate.judge(3, trained(good=0, events=200), trained(good=0, events=202))
    assert verdict.promoted, verdict.reason


def test_the_serving_policy_is_scored_on_the_window_as_it_now_is() -> None:
    # The gate caches the serving policy's probabilities between snapshots; once the window has slid
    # past every cached decision, the estimate must be the one a fresh gate computes on that window.
    config = PolicyConfig(gate_window=16, gate_min_events=8)
    serving, candidate = trained(good=0), trained(good=1)
    sliding = Gate(config)
    for _ in range(16):
        sliding.observe(Logged(Choice.of(SHARED, ACTIONS), 0, 0.5, 1.0))
    sliding.judge(1, candidate, serving)
    # Half the new decisions took the other action, so a probability kept for an evicted decision is
    # wrong for them. Each is made after the last eviction, as in the learner, so it may reuse the
    # memory (and the id()) of one evicted.
    fresh = Gate(config)
    for i in range(16):
        logged = Logged(Choice.of(SHARED, ACTIONS), i % 2, 0.5, float(i % 2))
        sliding.observe(logged)
        fresh.observe(logged)
    del logged
    kept, recomputed = sliding.judge(2, candidate, serving), fresh.judge(2, candidate, serving)
    assert kept.serving is not None and recomputed.serving is not None
    assert kept.serving.value == pytest.approx(recomputed.serving.value)
    assert kept.promoted is recomputed.promoted


async def test_one_tenants_extreme_reports_do_not_decide_the_gate(
    tmp_path: Path, redis_url: str, routers: Routers
) -> None:
    """Beta asks for the largest weights and reports every cost just inside the plausibility bound, so its rewards
    are hugely negative; alpha reports plainly. The gate judges quality, which both report within [0, 1]: its
    estimates stay there, and equal qualities (0.8 from both) never hold a policy back."""
    config = make_config(tmp_path, redis_url, policy={"snapshot_every_events": 16, "gate_min_events": 16})
    service = await routers(config)
    ratio = service.config.limits.max_report_ratio
    extreme = 0.99 * ratio * max(catalog_cost(m, 20, 200) for m in service.config.models)
    for i in range(96):
        tenant = "beta" if i % 2 else "alpha"
        weight = MAX_WEIGHT if tenant == "beta" else None
        asked = RouteInput(query=f"Question number {i}?", tenant=tenant, energy_weight=weight, cost_weight=weight)
        decision = await service.route(asked)
        cost = extreme if tenant == "beta" else None
        reward = RewardInput(
            decision.decision_id, 0.8, input_tokens=20, output_tokens=200, cost_usd=cost, tenant=tenant
        )
        result = await service.reward(reward)
        assert tenant == "alpha" or result.reward < -100  # beta's rewards are extreme indeed
    assert service.learner is not None
    await service.learner.wait_learned(96, timeout=120)
    judged = [v for v in service.learner.verdicts if v.candidate is not None]
    assert judged, [v.reason for v in service.learner.verdicts]
    assert all(v.promoted for v in judged), [v.reason for v in judged]
    for verdict in judged:
        for estimate in (verdict.candidate, verdict.serving):
            assert estimate is not None and 0.0 <= estimate.value <= 1.0, verdict.reason
