"""How many rewards per second the learner learns from a Redis stream, snapshots and gate included."""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bandit_router.bench.load import queries
from bandit_router.config import Config, load_config
from bandit_router.domain.records import LearningEvent
from bandit_router.learning.learner import Learner
from bandit_router.policy.features import Complexity, Context
from bandit_router.policy.vw import Policy
from bandit_router.policy.vwlines import action_line
from bandit_router.store.embedded import start_embedded
from bandit_router.store.redis_store import Store
from bandit_router.store.snapshots import SnapshotFiles


def _event(config: Config, i: int, rng: random.Random) -> LearningEvent:
    """A learning event with realistic feature lines: one of 12 tasks, 32 clusters, a 16-number projection."""
    actions = [action_line(m) for m in config.models]
    text = queries(1, seed=i)[0]
    context = Context(
        f"task{i % 12}",
        i % 32,
        Complexity.of(text, len(text.split())),
        " ".join(f"p{j}:{rng.uniform(-1, 1):.4f}" for j in range(16)),
    )
    index = rng.randrange(len(actions))
    quality = rng.random()
    return LearningEvent.from_json(
        {
            "decision_id": f"bench-{i}",
            "pmf": [[m.id, 1 / len(actions)] for m in config.models],
            "created_at": 0.0,
            "energy_weight": 0.1,
            "cost_weight": 0.1,
            "shared": context.line(config.features.context),
            "actions": actions,
            "penalties": [0.01 * j for j in range(len(actions))],
            "index": index,
            "probability": 1 / len(actions),
            "quality": quality,
            "reward": quality - 0.01 * index,
            "task": context.task,
            "model": config.models[index].id,
            "cost_usd": 1e-4,
            "catalog_cost_usd": 9e-5,
            "energy_joules": 20.0,
            "catalog_energy_joules": 18.0,
            "output_tokens": 120,
            "output_tokens_reported": True,
            "latency_ms": 0.0,
        }
    )


async def learner_throughput(events: int = 5000) -> dict[str, float]:
    """Rewards learned per second by the real learner from a real Redis stream: ``events`` learning events
    (realistic feature lines, 8 actions) appended first, then timed from the learner's start until its
    snapshot covers them all (snapshots and acknowledgements included)."""
    config = load_config()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="br-bench-learner-") as data_dir:
        redis = await start_embedded(Path(data_dir) / "redis")
        client = aioredis.Redis.from_url(redis.url)
        store = Store(client, "bench")
        for chunk in range(0, events, 500):
            pipe = client.pipeline(transaction=False)
            for i in range(chunk, min(events, chunk + 500)):
                pipe.xadd(store.events_key, {"event": _event(config, i, rng).dumps()})
            await pipe.execute()

        def rebuild(snapshot: Any) -> Policy:
            return Policy.of(config, 384, snapshot)

        learner = Learner(
            store,
            rebuild(None),
            config.policy,
            SnapshotFiles(Path(data_dir) / "snapshots", 2),
            publish=lambda policy: None,
            rebuild=rebuild,
            serving=rebuild(None),
        )
        start = time.perf_counter()
        learner.start()
        await learner.wait_learned(events, timeout=600)
        elapsed = time.perf_counter() - start
        await learner.stop()
        await client.aclose()
        await asyncio.to_thread(redis.stop)
    return {"events": events, "seconds": elapsed, "per_s": events / elapsed}
