"""The soak command, briefly: its checks pass against a real router process (the long run is in the README)."""

from __future__ import annotations

from pathlib import Path

from bandit_router.bench.soak import MAX_RSS_MIB, run_soak
from bandit_router.config import load_config
from bandit_router.embedding.pool import in_workers


async def test_a_short_soak_passes_its_checks(tmp_path: Path) -> None:
    config = load_config().embedding
    result = await run_soak(duration_s=12, concurrency=8, json_path=str(tmp_path / "soak.json"))
    # Every check the soak promises for a run this short holds, memory within the shipped container's limit;
    # flatness needs minutes past the allocator's warm-up (twelve seconds are all warm-up) and says so.
    assert result["checks"] == {
        "no errors": True,
        "nothing pending": True,
        "every reward learned": True,
        "clean exit": True,
        "memory bounded": True,
    }
    assert set(result["not_judged"]) == {"memory flat", "Redis memory flat"}
    assert result["not_judged"]["Redis memory flat"].startswith("needs a run of at least 3780 s")
    assert len(result["redis_used_mib"]) >= 6 and all(m > 0 for _, m in result["redis_used_mib"])
    assert result["not_judged"]["memory flat"].startswith("needs a run of at least 120 s")
    assert len(result["rss_samples"]) >= 6 and 0 < result["rss_mib"]["max"] <= MAX_RSS_MIB
    # Each process on its own, over time: what grows can be told apart.
    by_process = result["rss_by_process"]
    assert {"server", "redis-server (the soak's)"} <= set(by_process), sorted(by_process)
    # The torch backend's workers, where the configured backend runs in workers (the static one runs in the server).
    workers = config.processes if in_workers(config) else 0
    assert sum(name.startswith("embedding worker") for name in by_process) == workers, sorted(by_process)
    assert all(len(samples) >= 6 and all(m > 0 for _, m in samples) for samples in by_process.values())
    assert result["rewards"] > 50 and result["learned"] == result["rewards"]
    assert (tmp_path / "soak.json").exists()
