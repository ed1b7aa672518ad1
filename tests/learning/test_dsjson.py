"""The decision log and its DSJSON export, read back by VW's own DSJSON parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import decision_logs
from vowpal_wabbit_next import DSJsonFormatParser, TextFormatParser, Workspace

from bandit_router.cli import main
from bandit_router.config import Config
from bandit_router.domain.requests import RewardInput, RouteInput
from bandit_router.learning.decision_log import export
from bandit_router.serving.router import RouterService


def features(examples: list[Any]) -> list[list[tuple[int, list[int], list[float]]]]:
    """Each example's feature groups: namespace, hashed indices and values."""
    return [sorted((g.feat_group_index, list(g.indices), list(g.values)) for g in ex) for ex in examples]


async def test_learned_decisions_export_as_dsjson_that_vw_reads_as_learned(
    service: RouterService, config: Config, tmp_path: Path
) -> None:
    decisions = []
    for i in range(5):
        d = await service.route(
            RouteInput(
                query=f"What is {i} times 7?",
                candidates=("gemma-2-9b-it", "llama-3.2-3b-instruct", "qwen2.5-7b-instruct"),
            )
        )
        await service.reward(RewardInput(decision_id=d.decision_id, quality=0.25 * (i % 4)))
        decisions.append(d)
    assert service.learner is not None
    await service.learner.wait_learned(5, timeout=20)
    out = tmp_path / "log.dsjson"
    assert export(config.server.data_path / "decisions", out) == 5
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["EventId"] for line in lines] == [d.decision_id for d in decisions]

    # The decision logs only: gate.jsonl sits beside them, and a run across midnight UTC writes two days.
    logs = decision_logs(config.server.data_path)
    events = {e["decision_id"]: e for path in logs for e in map(json.loads, path.read_text().splitlines())}
    workspace = Workspace(["--cb_explore_adf", "--quiet"])
    dsjson, text = DSJsonFormatParser(workspace), TextFormatParser(workspace)
    for line, decision in zip(lines, decisions, strict=True):
        event = events[decision.decision_id]
        index = [m for m, _ in decision.pmf].index(decision.model)
        assert (line["_labelIndex"], line["_label_probability"]) == (index, decision.probability)
        assert line["a"][0] == index + 1 and sorted(line["p"]) == sorted(p for _, p in decision.pmf)
        parsed = dsjson.parse_json(json.dumps(line))
        from_text = [text.parse_line(event["shared"]), *(text.parse_line(a) for a in event["actions"])]
        # VW hashes the export to exactly the features the learner learned from; VW's text and JSON
        # parsers may round a decimal's last bit differently.
        for got, learned in zip(features(parsed), features(from_text), strict=True):
            assert [(ns, idx) for ns, idx, _ in got] == [(ns, idx) for ns, idx, _ in learned]
            assert [v for *_, vs in got for v in vs] == pytest.approx([v for *_, vs in learned for v in vs], rel=1e-6)
        _, cost, probability = parsed[1 + index].get_label().label
        assert cost == pytest.approx(-event["reward"]) and probability == pytest.approx(decision.probability)


def test_export_log_command_writes_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log_dir = tmp_path / "decisions"
    log_dir.mkdir()
    event = {
        "event_id": "1-0",
        "decision_id": "d1",
        "model": "m",
        "index": 0,
        "reward": 0.5,
        "probability": 0.9,
        "pmf": [["m", 0.9], ["n", 0.1]],
        "shared": "shared |T math",
        "actions": ["|A m", "|A n"],
        "created_at": 1.0,
        "task": "math",
        "quality": 0.5,
        "cost_usd": 0.0,
        "cost_source": "estimated",
        "energy_joules": 1.0,
        "energy_source": "estimated",
        "energy_weight": 0.1,
        "cost_weight": 0.1,
        "policy_version": "v1",
    }
    # The same event twice, as after a crash between the log and the snapshot: exported once.
    (log_dir / "decisions-20261122.jsonl").write_text(json.dumps(event) + "\n" + json.dumps(event) + "\n")
    monkeypatch.setenv("BANDIT_ROUTER_SERVER_DATA_DIR", str(tmp_path))
    assert main(["export-log", "--out", str(tmp_path / "out.dsjson")]) == 0
    assert "wrote 1 decisions" in capsys.readouterr().out
    assert json.loads((tmp_path / "out.dsjson").read_text())["c"] == {
        "T": {"math": 1.0},
        "_multi": [{"A": {"m": 1.0}}, {"A": {"n": 1.0}}],
    }
