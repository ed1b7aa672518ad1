"""Apprentice mode: the baseline serves all but an exploration share, logged with the probabilities it was sampled
with; tenants may be in different modes; the dashboard's off-policy estimates cover the learning policy."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import Routers, make_config, routed
from hypothesis import given
from hypothesis import strategies as st

from bandit_router.config import ConfigError, RolloutConfig
from bandit_router.domain.requests import RewardInput, RouteInput
from bandit_router.embedding.model import Embedder
from bandit_router.errors import InvalidArgument
from bandit_router.observability import estimates
from bandit_router.policy.rule import apprentice_pmf
from bandit_router.serving.rollout import baseline_of, rollout_view
from bandit_router.v1 import router_pb2 as pb

BASELINE = "gemma-2-9b-it"
ROLLOUT_MIN = 40


@given(
    st.lists(st.floats(0.01, 1.0), min_size=2, max_size=8).map(lambda w: [x / sum(w) for x in w]),
    st.floats(0.001, 1.0),
    st.integers(0, 7),
)
def test_the_apprentice_pmf_sums_to_one_and_keeps_every_chance_of_the_policy(
    pmf: list[float], exploration: float, i: int
) -> None:
    baseline = i % len(pmf)
    served = apprentice_pmf(pmf, baseline, exploration)
    assert sum(served) == pytest.approx(1.0)
    assert served[baseline] >= 1 - exploration
    assert all(s >= exploration * p - 1e-12 for s, p in zip(served, pmf, strict=True))


@pytest.mark.parametrize(
    ("rollout", "tenant", "asked", "expected"),
    [
        (RolloutConfig(), "", BASELINE, None),
        (RolloutConfig(mode="apprentice", baseline=BASELINE), "", "", 0),
        (RolloutConfig(mode="apprentice"), "", "llama-3.3-70b-instruct", 1),
        (RolloutConfig(mode="apprentice"), "", "", None),
        (RolloutConfig(mode="apprentice", tenant_modes=("b:online",)), "b", BASELINE, None),
        (RolloutConfig(tenant_modes=("a:apprentice",)), "a", BASELINE, 0),
    ],
)
def test_the_baseline_is_served_only_to_tenants_in_apprentice_mode(
    rollout: RolloutConfig, tenant: str, asked: str, expected: int | None
) -> None:
    request = RouteInput(query="q", baseline=asked, tenant=tenant)
    assert baseline_of(rollout, request, [BASELINE, "llama-3.3-70b-instruct"]) == expected


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"mode": "shadow"}, "rollout.mode must be one of online, apprentice"),
        ({"tenant_modes": ("a=apprentice",)}, "TENANT:MODE"),
        ({"exploration": 0.0}, r"rollout.exploration must be in \(0, 1\]"),
    ],
)
def test_bad_rollout_settings_are_refused(section: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RolloutConfig(**section)  # type: ignore[arg-type]


def test_a_baseline_outside_the_catalog_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"rollout\.baseline must be a catalog model id"):
        make_config(tmp_path, rollout={"baseline": "gpt-9"})


async def test_apprentice_mode_serves_the_baseline_and_logs_true_probabilities(
    tmp_path: Path, redis_url: str, routers: Routers
) -> None:
    exploration = 0.2
    config = make_config(tmp_path, redis_url, rollout={"mode": "apprentice", "exploration": exploration})
    service = await routers(config)
    decisions = [await service.route(RouteInput(query=f"Question number {i}?", baseline=BASELINE)) for i in range(150)]
    assert {d.mode for d in decisions} == {"apprentice"}
    for d in decisions:
        pmf = dict(d.pmf)
        assert sum(pmf.values()) == pytest.approx(1.0) and pmf[BASELINE] >= 1 - exploration
        assert d.probability == pmf[d.model]
    share = sum(d.model == BASELINE for d in decisions) / len(decisions)
    # At least 1 - exploration in expectation. Five standard errors of 150 draws below it: chance fails this about
    # once in three million runs (0.7, 3.5 standard errors, failed a CI run once), a baseline served with any
    # smaller probability than promised (0.55 or less) fails it almost always.
    floor = (1 - exploration) - 5 * math.sqrt(exploration * (1 - exploration) / len(decisions))
    assert floor <= share < 1.0, f"baseline served {share:.0%} of the time"
    # A request naming no baseline is served by the policy.
    assert (await service.route(RouteInput(query="No baseline here"))).mode == "online"
    with pytest.raises(InvalidArgument, match="baseline must be a catalog model id"):
        await service.route(RouteInput(query="q", baseline="gpt-9"))
    # The dashboard estimates the learning policy beside the baseline, on the same rewards.
    for d in decisions[:60]:
        await service.reward(RewardInput(decision_id=d.decision_id, quality=0.9 if d.model == BASELINE else 0.4))
    policies = estimates.ope(service.monitor, 3600)["policies"]
    assert {"bandit policy", f"always {BASELINE}", "live policy"} <= set(policies)
    assert policies[f"always {BASELINE}"]["ips"]["value"] > 0


async def test_grpc_routes_name_their_baseline_and_say_their_mode(
    tmp_path: Path, redis_url: str, embedder: Embedder
) -> None:
    config = make_config(tmp_path, redis_url, rollout={"mode": "apprentice"})
    async with routed(config, embedder) as (stub, _):
        reply = await stub.Route(pb.RouteRequest(query="Name a prime number", baseline=BASELINE))
        assert reply.mode == "apprentice" and dict((p.model, p.probability) for p in reply.pmf)[BASELINE] >= 0.98
        assert (await stub.Route(pb.RouteRequest(query="Without a baseline"))).mode == "online"


async def test_auto_promote_serves_a_tenant_online_once_the_policy_beats_its_baseline(
    tmp_path: Path, redis_url: str, routers: Routers
) -> None:
    rollout = {
        "mode": "apprentice",
        "exploration": 0.3,
        "auto_promote": True,
        "promote_min_rewards": ROLLOUT_MIN,
        "promote_horizon": 200,
    }
    service = await routers(make_config(tmp_path, redis_url, rollout=rollout))
    assert service.learner is not None
    quality = {BASELINE: 0.1, "llama-3.3-70b-instruct": 0.9}
    rewarded, online = 0, False
    while not service.serving.apprentices.promoted():
        assert rewarded < 600, f"not promoted after {rewarded} rewards: {service.serving.apprentices.to_json()}"
        for i in range(20):
            decision = await service.route(
                RouteInput(
                    query=f"Question {rewarded + i} about the weather?",
                    baseline=BASELINE,
                    candidates=tuple(quality),
                    energy_weight=0.0,
                    cost_weight=0.0,
                )
            )
            # The learner promotes asynchronously, so a batch can cross over; once online, it stays online.
            if online or rewarded + i < ROLLOUT_MIN:
                assert decision.mode == ("online" if online else "apprentice")
            online = online or decision.mode == "online"
            await service.reward(RewardInput(decision_id=decision.decision_id, quality=quality[decision.model]))
        rewarded += 20
        await service.learner.wait_learned(rewarded, timeout=60)
    ledger = service.serving.apprentices.ledger("")
    assert ROLLOUT_MIN <= ledger.promoted_at <= rewarded and ledger.lower(service.config.rollout) > 0
    after = await service.route(RouteInput(query="And tomorrow?", baseline=BASELINE, candidates=tuple(quality)))
    assert after.mode == "online" and dict(after.pmf)["llama-3.3-70b-instruct"] > 0.5
    (row,) = rollout_view(service.config.rollout, service.serving.apprentices, "")
    assert row["configured"] == "apprentice" and row["served"] == "online" and row["promoted_at"] == ledger.promoted_at
    assert row["policy"] > row["baseline"]
