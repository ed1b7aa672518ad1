"""``bandit-router gateway-bench`` runs end to end and reports both paths at each level, per router variant (its
figures are not checked against any speed: that is what the benchmark is for)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from bandit_router.cli import main


async def test_the_gateway_bench_reports_both_paths_per_variant(tmp_path: Path) -> None:
    out = tmp_path / "gateway.json"
    argv = ["gateway-bench", "--requests", "6", "--concurrency", "1", "2", "--device", "cpu", "--json", str(out)]
    argv += ["--variants", "default", "tracing"]
    assert await asyncio.to_thread(main, argv) == 0
    figures = json.loads(out.read_text())
    assert set(figures["variants"]) == {"default", "tracing"}
    for variant in figures["variants"].values():
        assert set(variant["levels"]) == {"1", "2"}
        for level in variant["levels"].values():
            for path in ("direct", "gateway"):
                assert 0 < level[path]["p50_ms"] <= level[path]["p99_ms"] and level[path]["per_s"] > 0
            assert level["added_p50_ms"] == level["gateway"]["p50_ms"] - level["direct"]["p50_ms"]
        assert variant["first_token_c1"]["gateway"]["p50_ms"] > 0
