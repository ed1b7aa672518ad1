"""Redis memory per sustained route/s: what each Route and Reward leaves in Redis, how big, and for how long.

A router on its own embedded Redis routes ``pairs`` queries and rewards each at once, and routes ``unrewarded``
more that are never rewarded; once the learner has learned and trimmed, every key under the prefix is weighed
(``MEMORY USAGE``) and its time to live read. A key kept per decision costs its size times its lifetime for
each route/s sustained, so the figure is the sum over the key families of bytes x lifetime x keys per route.
What lives as long as its content (the stream until the learner trims it, the deadlines until a reward) is
listed apart, as bytes held now.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import defaultdict
from typing import Any

from bandit_router.bench.load import queries
from bandit_router.config import Config, load_config
from bandit_router.domain.requests import RewardInput, RouteInput
from bandit_router.runtime.root import open_router

MB = 1e6


async def weigh(client: Any, prefix: str) -> dict[str, dict[str, Any]]:
    """Every key under ``prefix`` by family (the name after the prefix): keys, bytes, the longest time to live."""
    families: dict[str, dict[str, Any]] = defaultdict(lambda: {"keys": 0, "bytes": 0, "max_ttl_s": None})
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        name = key.decode() if isinstance(key, bytes) else str(key)
        parts = name[len(prefix) + 1 :].split(":")
        # A per-decision key is prefix:family:id; anything else is one structure of its own.
        family = parts[0] if len(parts) > 1 else name[len(prefix) + 1 :]
        size = int(await client.memory_usage(key) or 0)
        ttl_ms = int(await client.pttl(key))
        entry = families[family]
        entry["keys"] += 1
        entry["bytes"] += size
        if ttl_ms > 0:
            entry["max_ttl_s"] = max(entry["max_ttl_s"] or 0.0, ttl_ms / 1000)
    return dict(families)


async def measure(config: Config, pairs: int, unrewarded: int) -> dict[str, Any]:
    """Routes and rewards on a fresh router with ``config``'s reward and Redis settings; the weighed families."""
    texts = queries(pairs + unrewarded, seed=11)
    with tempfile.TemporaryDirectory(prefix="br-memory-") as data_dir:
        config = config.replace(
            server={"data_dir": data_dir, "learner": True},
            redis={"url": ""},
            dashboard={"listen": ""},
            http={"listen": ""},
        )
        service = await open_router(config)
        try:
            for text in texts[:pairs]:
                decision = await service.route(RouteInput(text))
                await service.reward(RewardInput(decision.decision_id, quality=0.8, input_tokens=50, output_tokens=200))
            for text in texts[pairs:]:
                await service.route(RouteInput(text))
            assert service.learner is not None
            await service.learner.wait_learned(pairs, timeout=600)
            families = await weigh(service.store.client, config.redis.key_prefix)
        finally:
            await service.close()
    return {
        "pairs": pairs,
        "unrewarded": unrewarded,
        "wait_time_s": config.reward.wait_time_s,
        "retention_s": config.reward.retention_s,
        "families": families,
        **per_route(families, pairs, unrewarded),
    }


def per_route(families: dict[str, dict[str, Any]], pairs: int, unrewarded: int) -> dict[str, Any]:
    """Bytes per sustained route/s: each per-decision family's bytes per key x its lifetime x keys per route
    (a share of rewarded and unrewarded routes as measured); the families without a lifetime are held now."""
    routes = pairs + unrewarded
    kept: dict[str, float] = {}
    held: dict[str, int] = {}
    for name, entry in families.items():
        if entry["max_ttl_s"] is None or entry["keys"] <= 1:
            held[name] = entry["bytes"]
        else:
            kept[name] = entry["bytes"] / routes * entry["max_ttl_s"]
    return {
        "bytes_per_route_per_s": kept,
        "total_bytes_per_route_per_s": sum(kept.values()),
        "bytes_held": held,
    }


def show(result: dict[str, Any]) -> None:
    print(
        f"Redis memory per sustained route/s: {result['pairs']} Route+Reward pairs and {result['unrewarded']} Routes "
        f"never rewarded; reward.wait_time_s {result['wait_time_s']:g}, reward.retention_s {result['retention_s']:g}"
    )
    print(f"{'family':<12} {'keys':>6} {'bytes/key':>10} {'lives (s)':>10} {'MB per route/s':>15}")
    for name, entry in sorted(result["families"].items()):
        per_key = entry["bytes"] / max(entry["keys"], 1)
        lives = "-" if entry["max_ttl_s"] is None else f"{entry['max_ttl_s']:.0f}"
        figure = result["bytes_per_route_per_s"].get(name)
        share = "held: " + f"{entry['bytes'] / 1e3:.1f} kB" if figure is None else f"{figure / MB:.3f}"
        print(f"{name:<12} {entry['keys']:>6} {per_key:>10.0f} {lives:>10} {share:>15}")
    print(f"total: {result['total_bytes_per_route_per_s'] / MB:.2f} MB of Redis per sustained route/s")


async def run_memory_bench(
    pairs: int, unrewarded: int, config_path: str | None = None, json_path: str | None = None
) -> dict[str, Any]:
    result = await measure(load_config(config_path), pairs, unrewarded)
    show(result)
    write_figures(result, json_path)
    return result


def write_figures(result: dict[str, Any], json_path: str | None) -> None:
    """Writes a bench's figures as JSON where a path was given."""
    if json_path:
        with open(json_path, "w") as out:
            json.dump(result, out, indent=2)
        print(f"figures written to {json_path}", file=sys.stderr)
