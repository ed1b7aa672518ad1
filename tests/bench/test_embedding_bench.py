"""embedding-bench, briefly: each backend measured in a fresh process, against the torch backend's vectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bandit_router.bench.embedding import run_embedding_bench


def test_the_embedding_bench_measures_each_backend_against_torch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = run_embedding_bench(["static"], runs=1, json_path=str(tmp_path / "embedding.json"))
    # torch always runs: its vectors are what the others are compared with.
    assert list(results) == ["torch", "static"]
    (torch,), (static,) = results["torch"], results["static"]
    assert torch["cosine_min"] > 0.9999  # the reference against itself
    assert -1.0 <= static["cosine_min"] <= static["cosine_mean"] < 0.99  # another space, as documented
    for figures in (torch, static):
        assert figures["p50_ms"] > 0 and figures["per_second_batch_1"] > 0 and figures["per_second_batch_32"] > 0
        assert figures["rss_mb"] > 0
    table = capsys.readouterr().out
    assert "| torch |" in table and "| static |" in table
    assert json.loads((tmp_path / "embedding.json").read_text())["runs"]["static"][0]["backend"] == "static"
