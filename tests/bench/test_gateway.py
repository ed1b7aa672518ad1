"""``bandit-router gateway-bench`` runs end to end and reports both paths at each level (its figures are not
checked against any speed: that is what the benchmark is for)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from bandit_router.cli import main


async def test_the_gateway_bench_reports_both_paths(tmp_path: Path) -> None:
    out = tmp_path / "gateway.json"
    argv = ["gateway-bench", "--requests", "6", "--concurrency", "1", "2", "--device", "cpu", "--json", str(out)]
    assert await asyncio.to_thread(main, argv) == 0
    figures = json.loads(out.read_text())
    assert set(figures["levels"]) == {"1", "2"}
    for level in figures["levels"].values():
        for path in ("direct", "gateway"):
            assert 0 < level[path]["p50_ms"] <= level[path]["p99_ms"] and level[path]["per_s"] > 0
        assert level["added_p50_ms"] == level["gateway"]["p50_ms"] - level["direct"]["p50_ms"]
    assert figures["first_token_c1"]["gateway"]["p50_ms"] > 0
