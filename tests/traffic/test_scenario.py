"""Drift scenarios: the YAML format's rules, what each event does to the stream, and the router adapting."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from streams import FLAT, MODELS, stream

from bandit_router.config import Config
from bandit_router.domain.reward import cost_of, resolve_tokens
from bandit_router.embedding.model import Embedder
from bandit_router.offline.replay import report
from bandit_router.offline.replay.run import BANDIT, replay
from bandit_router.offline.replay.settings import ReplaySettings
from bandit_router.traffic.format import read_traffic
from bandit_router.traffic.scenario import Scenario, ScenarioError, load_scenario, parse_scenario

RECORDS = stream(100, 0, FLAT, tasks=("math", "chat"))


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ([1, 2], "must be a mapping with events and rewards, got list"),
        ({"evnts": []}, r"unknown keys \['evnts'\]"),
        ({"events": [{"at": 1, "kind": "explode", "model": "gemma-2-9b-it"}]}, "kind must be one of .*got 'explode'"),
        ({"events": [{"kind": "remove", "model": "gemma-2-9b-it"}]}, "a remove event needs at"),
        ({"events": [{"at": 1, "kind": "price", "model": "gemma-2-9b-it"}]}, "a price event needs factor"),
        (
            {"events": [{"at": 100, "kind": "remove", "model": "gemma-2-9b-it"}]},
            r"at must be a step in \[0, 99\].*got 100",
        ),
        (
            {"events": [{"at": "150%", "kind": "add", "model": "gemma-2-9b-it"}]},
            r"percentage in \[0%, 100%\], got '150%'",
        ),
        ({"events": [{"at": "soon", "kind": "add", "model": "gemma-2-9b-it"}]}, "at must be a step or a percentage"),
        (
            {"events": [{"at": 5, "kind": "remove", "model": "gpt-9"}]},
            "model must be one of the traffic's models.*'gpt-9'",
        ),
        (
            {"events": [{"at": 5, "kind": "price", "model": "gemma-2-9b-it", "factor": -2}]},
            "factor must be a number >= 0",
        ),
        (
            {"events": [{"at": 5, "kind": "degrade", "model": "gemma-2-9b-it", "quality_factor": 1.5}]},
            r"quality_factor must be a number in \[0, 1\], got 1.5",
        ),
        ({"events": [{"at": 5, "kind": "mix", "tasks": ["poetry"], "share": 0.5}]}, "tasks must be a non-empty list"),
        ({"events": [{"at": 5, "kind": "add", "model": "gemma-2-9b-it", "factor": 2}]}, r"unknown \['factor'\]"),
        ({"events": [{"at": 50, "kind": "corrupt", "until": 50}]}, r"until must be after at \(50\), got 50"),
        ({"events": [{"at": 50, "kind": "corrupt", "until": 101}]}, r"until must be a step in \[0, 100\].*got 101"),
        ({"rewards": {"delay": -1}}, "rewards.delay must be a whole number of queries >= 0, got -1"),
        ({"rewards": {"drop": 1}}, "rewards.drop must be below 1"),
        ({"rewards": {"late": 3}}, "rewards must be a mapping with delay and drop"),
        (
            {"events": [{"at": 10, "kind": "remove", "model": m} for m in MODELS]},
            "no model is available at step 10",
        ),
    ],
)
def test_invalid_scenarios_name_the_field_the_rule_and_the_value(raw: Any, match: str) -> None:
    with pytest.raises(ScenarioError, match=match):
        parse_scenario(raw, RECORDS)


def test_load_scenario_reads_yaml_and_resolves_percentages(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("events:\n  - {at: '25%', kind: price, model: gemma-2-9b-it, factor: 3}\nrewards: {delay: 4}\n")
    scenario = load_scenario(path, RECORDS)
    assert scenario.events[0].at == 25 and scenario.reward_delay == 4
    assert [scenario.price_factor(s, "gemma-2-9b-it") for s in (0, 24, 25, 99)] == [1.0, 1.0, 3.0, 3.0]
    assert scenario.price_factor(50, "llama-3.2-3b-instruct") == 1.0
    path.write_text("events: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(path, RECORDS)


def test_add_and_remove_bound_when_a_model_is_available() -> None:
    scenario = parse_scenario(
        {
            "events": [
                {"at": 10, "kind": "add", "model": "gemma-2-9b-it"},
                {"at": 30, "kind": "remove", "model": "gemma-2-9b-it"},
                {"at": 20, "kind": "remove", "model": "llama-3.2-3b-instruct"},
            ]
        },
        RECORDS,
    )
    gemma = [scenario.available(s, "gemma-2-9b-it") for s in range(40)]
    assert gemma == [False] * 10 + [True] * 20 + [False] * 10
    small = [scenario.available(s, "llama-3.2-3b-instruct") for s in range(40)]
    assert small == [True] * 20 + [False] * 20
    assert all(scenario.available(s, "llama-3.3-70b-instruct") for s in range(100))


@pytest.mark.parametrize("share", [0.75, 0.2])
def test_mix_shift_reorders_the_same_records_to_the_share_after_the_step(share: float) -> None:
    scenario = parse_scenario({"events": [{"at": 40, "kind": "mix", "tasks": ["math"], "share": share}]}, RECORDS)
    shifted = scenario.stream(RECORDS, seed=3)
    assert sorted(r.id for r in shifted) == sorted(r.id for r in RECORDS)
    after = Counter(r.task for r in shifted[40:])
    assert after["math"] == round(share * 60)
    assert Counter(r.task for r in shifted[:40])["math"] == 50 - round(share * 60)
    assert scenario.stream(RECORDS, seed=3) == shifted  # seeded


def test_dropped_rewards_are_a_seeded_fraction() -> None:
    scenario = Scenario(reward_drop=0.25)
    dropped = scenario.dropped(4000, seed=1)
    assert dropped == scenario.dropped(4000, seed=1) != scenario.dropped(4000, seed=2)
    assert 0.22 < sum(dropped) / 4000 < 0.28


async def test_replay_under_every_kind_of_event(config: Config, embedder: Embedder, tmp_path: Path) -> None:
    records = stream(160, 7, FLAT, tasks=("math", "chat"))
    scenario = parse_scenario(
        {
            "name": "everything",
            "events": [
                {"at": 20, "kind": "add", "model": "llama-3.3-70b-instruct"},
                {"at": 40, "kind": "price", "model": "llama-3.2-3b-instruct", "factor": 4},
                {"at": 60, "kind": "degrade", "model": "gemma-2-9b-it", "quality_factor": 0.5},
                {"at": 100, "kind": "remove", "model": "gemma-2-9b-it"},
                {"at": 80, "kind": "mix", "tasks": ["math"], "share": 1.0},
            ],
            "rewards": {"delay": 12, "drop": 0.2},
        },
        records,
    )
    result = await replay(
        records,
        config,
        ReplaySettings(energy_weight=0.0, cost_weight=1.0, seed=2, scenario=scenario),
        embedder,
        show_progress=False,
    )
    dropped = sum(scenario.dropped(160, 2))
    assert result["rewards_never_sent"] == dropped > 0
    # Every reward that was sent, however late, was priced and learned; the lost ones were not.
    assert sum(result["bandit_energy_sources"].values()) == 160 - dropped
    # After the price change the client reports what it was billed: each sent reward of the repriced model
    # (how often the router still chooses it varies from run to run) comes back as reported.
    lost = scenario.dropped(160, 2)
    arms = result["policies"]["bandit-router"]["arms"]
    repriced = sum(1 for s in range(40, 160) if arms[s] == "llama-3.2-3b-instruct" and not lost[s])
    assert result["bandit_cost_sources"].get("reported", 0) >= repriced
    for name, policy in result["policies"].items():
        arms = policy["arms"]
        assert "llama-3.3-70b-instruct" not in arms[:20], name
        assert "gemma-2-9b-it" not in arms[100:], name
        assert np.isfinite(policy["mean_reward"]), name
    # A model that was not there throughout gets no single-model baseline.
    assert {n for n in result["policies"] if n.startswith("always ")} == {"always llama-3.2-3b-instruct"}
    # 3B's price quadruples at step 40: its mean cost is (40 x 1 + 120 x 4) / 160 of the catalog's.
    small = next(m for m in config.models if m.id == "llama-3.2-3b-instruct")
    catalog_cost = cost_of(small, None, resolve_tokens(small, 20, 50, 0)).value
    always_small = result["policies"]["always llama-3.2-3b-instruct"]
    assert always_small["mean_cost_usd"] == pytest.approx(catalog_cost * (40 + 120 * 4) / 160)
    written = report.write(result, tmp_path, "everything")
    text = (tmp_path / "report.md").read_text()
    assert "step 60: gemma-2-9b-it quality x0.5" in text and f"({dropped} of 160)" in text
    assert {p.name for p in written} >= {"regret.png", "action_share.png"}


@pytest.mark.parametrize("gated", [False, True])
async def test_router_moves_off_a_model_that_degrades(config: Config, embedder: Embedder, gated: bool) -> None:
    """gemma is the best model for 200 queries, then loses 70% of its quality (0.9 to 0.27, below 70B's 0.6).
    Bound, ungated: once the router has learned the change, gemma's optimistic score (its estimate plus a width
    of about sqrt(0.5^2 + 0.3^2) / sqrt(200) ~ 0.04) trails 70B's expected 0.6, so it is no longer plausible and
    gets probability 0; while it is still plausible it gets at most epsilon / 2 = 0.025. Over queries 250-400,
    which leave it 50 queries to see the change, we allow 0.1. Gated (the default 512-event window), the gate
    serves the policy that learned the change only once the window's SNIPS prefers it: the serving policy scores
    (0.9 x 200 + 0.27 k) / (200 + k) after k degraded queries, below the candidate's 0.6 from k = 182 on; with
    50 more to learn, the bound 0.1 holds from query 450."""
    records = stream(600 if gated else 400, 11, FLAT)
    scenario = parse_scenario(
        {"events": [{"at": 200, "kind": "degrade", "model": "gemma-2-9b-it", "quality_factor": 0.3}]}, records
    )
    result = await replay(
        records,
        config.replace(policy={"gate_window": 512 if gated else 0}),
        ReplaySettings(energy_weight=0.0, cost_weight=0.0, seed=4, scenario=scenario),
        embedder,
        show_progress=False,
    )
    arms = result["policies"][BANDIT]["arms"]

    def share(start: int, stop: int) -> float:
        return sum(a == "gemma-2-9b-it" for a in arms[start:stop]) / (stop - start)

    assert share(100, 200) >= 0.8, arms[100:200]
    start = 450 if gated else 250
    assert share(start, len(arms)) <= 0.1, arms[start:]


@pytest.mark.parametrize("gated", [True, False])
async def test_quality_gate_holds_back_a_policy_that_learned_corrupted_rewards(
    config: Config, embedder: Embedder, gated: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """gemma is the best model; queries 300-399 report 1 - quality (a broken judge). Ungated, the router
    learns the corruption and leaves gemma. Gated
    (the default 512-event window), the candidate's SNIPS on the window, three quarters of it clean, falls
    below the serving policy's, so the policy from before the burst keeps serving."""
    records = stream(500, 5, FLAT)
    scenario = parse_scenario({"events": [{"at": 300, "kind": "corrupt", "until": 400}]}, records)
    # The shipped snapshot cadence (64 events or 1 s), not the tests' fast one: every snapshot the gate lets
    # through within its tolerance moves the serving policy a little (see PolicyConfig), so how far a
    # burst can pull it depends on how many snapshots the burst spans.
    base = config.replace(
        policy={"gate_window": 512 if gated else 0, "snapshot_every_events": 64, "snapshot_interval_s": 1.0}
    )
    caplog.set_level(logging.INFO, logger="bandit_router.learning.learner")
    result = await replay(
        records,
        base,
        ReplaySettings(energy_weight=0.0, cost_weight=0.0, seed=1, scenario=scenario),
        embedder,
        show_progress=False,
    )
    arms = result["policies"][BANDIT]["arms"]
    share = sum(a == "gemma-2-9b-it" for a in arms[325:400]) / 75
    # Each hold is one INFO line with its plain reason.
    held_back = [
        r
        for r in caplog.records
        if re.match(
            r"candidate v\d+ held: (not estimable \(.*\), judged on .*: )?SNIPS .* serving, lower by ", r.getMessage()
        )
    ]
    if gated:
        assert share >= 0.75, arms[325:400]
        assert held_back
    else:
        assert share <= 0.3, arms[325:400]
        assert not held_back


def test_the_readme_and_shipped_scenarios_parse() -> None:
    root = Path(__file__).resolve().parents[2]
    sample = read_traffic(root / "bandit_router" / "data" / "sample_traffic.jsonl")
    doubled = sample + [dataclasses.replace(r, id=r.id + "-again") for r in sample]
    blocks = re.findall(r"```yaml\n(.*?)```", (root / "docs" / "replay.md").read_text(), flags=re.S)
    assert len(blocks) == 1
    scenario = parse_scenario(yaml.safe_load(blocks[0]), doubled, name="docs/replay.md")
    assert {e.kind for e in scenario.events} == {"degrade", "price", "add", "remove", "mix", "corrupt"}
    for path in sorted((root / "simulations" / "scenarios").glob("*.yaml")):
        assert load_scenario(path, sample).events, path
