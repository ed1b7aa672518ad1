"""The control group: a random share of requests, drawn from the decision id and logged as such, is served by the
baseline; the dashboard, /metrics and GetStats compare the two arms with an anytime-valid interval."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from helpers import Routers, make_config, routed

from bandit_router.config import ConfigError, DashboardConfig, RolloutConfig
from bandit_router.domain.requests import RewardInput, RouteInput
from bandit_router.embedding.model import Embedder
from bandit_router.observability.control import control_view
from bandit_router.observability.monitor import Monitor
from bandit_router.observability.samples import RewardSample
from bandit_router.serving.rollout import control_pmf
from bandit_router.v1 import router_pb2 as pb

MODELS = ["gemma-2-9b-it", "llama-3.3-70b-instruct", "llama-3.2-3b-instruct"]


@pytest.mark.parametrize(
    ("rollout", "asked", "expected"),
    [
        (RolloutConfig(control_share=1e-9), "", None),
        (RolloutConfig(control_share=0.5), "", [1 / 3] * 3),
        (RolloutConfig(control_share=0.5, control="app"), MODELS[1], [0.0, 1.0, 0.0]),
        (RolloutConfig(control_share=0.5, control="app"), "", [1 / 3] * 3),
        (RolloutConfig(control_share=0.5, control=MODELS[2]), "", [0.0, 0.0, 1.0]),
    ],
)
def test_the_control_pmf_is_the_baseline_where_drawn(
    rollout: RolloutConfig, asked: str, expected: list[float] | None
) -> None:
    # Decision ids drawn into the group under share 0.5 (the first one that is, found by trying).
    drawn = next(f"d{i}" for i in range(100) if control_pmf(RolloutConfig(control_share=0.5), RouteInput(query="q"),
                                                            MODELS, f"d{i}", 0))  # fmt: skip
    pmf = control_pmf(rollout, RouteInput(query="q", baseline=asked), MODELS, drawn, 0)
    assert pmf == (None if expected is None else pytest.approx(expected))


def test_the_draw_takes_the_share_whatever_the_ids() -> None:
    share = 0.1
    drawn = sum(
        control_pmf(RolloutConfig(control_share=share), RouteInput(query="q"), MODELS, f"req-{i}", 7) is not None
        for i in range(20_000)
    )
    # Binomial(20,000, 0.1): sd 42; six of them either way.
    assert abs(drawn - 2000) < 6 * math.sqrt(20_000 * share * (1 - share))
    assert control_pmf(RolloutConfig(), RouteInput(query="q"), MODELS, "any", 0) is None


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"control_share": 0.7}, r"rollout\.control_share must be in \[0, 0\.5\], got 0\.7"),
        ({"control_share": -0.1}, r"rollout\.control_share must be in \[0, 0\.5\], got -0\.1"),
        ({"control": "gpt-9"}, r'rollout\.control must be "uniform", "app" or a catalog model id, got \'gpt-9\''),
    ],
)
def test_bad_control_settings_are_refused(tmp_path: Path, section: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_config(tmp_path, rollout=section)


def _sample(i: int, reward: float, control: bool, share: float = 0.2, tenant: str = "") -> RewardSample:
    return RewardSample(
        float(i), "m", "t", reward, reward, 0.001, 10.0, "estimated", 1.0, ("m",), 0, 1.0, tenant,
        control_share=share, control=control,
    )  # fmt: skip


def test_the_difference_and_its_interval_compare_the_arms() -> None:
    monitor = Monitor(DashboardConfig(history=10_000), clock=lambda: 1e6)
    # Every fifth decision in the control group, earning 0.5 where routing earns 0.8 (+-0.1 alternating).
    for i in range(4000):
        control = i % 5 == 0
        monitor.rewards.append(_sample(i, (0.5 if control else 0.8) + (0.1 if i % 2 else -0.1), control))
    view = control_view(monitor, 0, None)
    assert view["routed"]["n"] == 3200 and view["control"]["n"] == 800
    assert view["routed"]["reward"] == pytest.approx(0.8, abs=0.01)
    assert view["control"]["reward"] == pytest.approx(0.5, abs=0.01)
    assert view["lower"] < 0.3 < view["upper"] and view["lower"] > 0
    assert view["difference"] == pytest.approx(0.3, abs=0.02)
    # Where the control group drew more than its share, the difference still reads the arms' means.
    lucky = Monitor(DashboardConfig(), clock=lambda: 1e6)
    draws = [i % 10 == 0 or i % 30 == 7 for i in range(300)]  # 40 of 300 at a share of 0.1
    lucky.rewards.extend(_sample(i, 0.4 if c else 0.55, c, share=0.1) for i, c in enumerate(draws))
    skewed = control_view(lucky, 0, None)
    assert skewed["control"]["n"] == 40
    assert skewed["difference"] == pytest.approx(0.15, abs=0.02)
    # Decisions not drawn under a share (share 0 then) count in neither arm; one arm alone gives no difference.
    lone = Monitor(DashboardConfig(), clock=lambda: 1e6)
    lone.rewards.append(_sample(0, 0.9, control=False, share=None))  # type: ignore[arg-type]
    lone.rewards.extend(_sample(i, 0.9, control=False) for i in range(1, 5))
    alone = control_view(lone, 0, None)
    assert alone["n"] == 4 and alone["difference"] is None and alone["control"]["n"] == 0


async def test_a_router_serves_the_control_share_by_the_baseline_and_reports_both_arms(
    tmp_path: Path, redis_url: str, routers: Routers
) -> None:
    share = 0.3
    config = make_config(tmp_path, redis_url, rollout={"control_share": share, "control": MODELS[2]})
    service = await routers(config)
    decisions = [
        await service.route(RouteInput(query=f"Question number {i}?", candidates=tuple(MODELS))) for i in range(200)
    ]
    control = [d for d in decisions if d.mode == "control"]
    assert {d.mode for d in decisions} == {"online", "control"}
    # Binomial(200, 0.3): five standard errors either way.
    assert abs(len(control) - 60) < 5 * math.sqrt(200 * share * (1 - share))
    assert all(d.model == MODELS[2] and d.probability == 1.0 for d in control)
    # A retried Route answers the same decision, control or not.
    again = await service.route(RouteInput(query="Question number 0?", candidates=tuple(MODELS), request_id="r0"))
    assert (await service.route(RouteInput(query="Question number 0?", candidates=tuple(MODELS),
                                           request_id="r0"))).mode == again.mode  # fmt: skip
    for d in decisions:
        await service.reward(RewardInput(decision_id=d.decision_id, quality=0.2 if d.mode == "control" else 0.9))
    assert service.learner is not None
    await service.learner.wait_learned(200, timeout=60)
    view = service.control_view()
    assert view["control"]["n"] == len(control) and view["routed"]["n"] == 200 - len(control)
    assert view["routed"]["quality"] == pytest.approx(0.9) and view["control"]["quality"] == pytest.approx(0.2)
    assert view["lower"] > 0
    await service.refresh_metrics()
    from prometheus_client import generate_latest

    metrics = generate_latest(service.monitor.metrics.registry).decode()
    assert re.search(r'^bandit_router_control_mean\{arm="control",figure="quality"\} 0\.2', metrics, flags=re.M)
    assert re.search(r'^bandit_router_control_difference\{bound="lower"\} 0\.\d+', metrics, flags=re.M)


async def test_get_stats_carries_the_control_group(tmp_path: Path, redis_url: str, embedder: Embedder) -> None:
    config = make_config(tmp_path, redis_url, rollout={"control_share": 0.5})
    async with routed(config, embedder) as (stub, _):
        modes = []
        for i in range(40):
            reply = await stub.Route(pb.RouteRequest(query=f"Name a prime number above {i}"))
            modes.append(reply.mode)
            await stub.Reward(pb.RewardRequest(decision_id=reply.decision_id, quality=0.5))
        stats = await stub.GetStats(pb.GetStatsRequest())
        assert stats.control.share == 0.5 and stats.control.baseline == "uniform"
        assert stats.control.control.decisions == modes.count("control") > 0
        assert stats.control.routed.decisions == modes.count("online") > 0
        assert stats.control.value == "reward" and stats.control.HasField("difference")
