"""The learner as a process of its own, for routing replicas that share one Redis (`bandit-router learner`)."""

from __future__ import annotations

import asyncio
import logging
import signal
from functools import partial

import redis.asyncio as aioredis

from bandit_router.config import Config, ConfigError
from bandit_router.embedding.embedder import Embedder
from bandit_router.learning.learner import Learner, SnapshotFiles, load_snapshot
from bandit_router.policy.vw import Policy, Snapshot
from bandit_router.store.redis_store import Store

log = logging.getLogger(__name__)


def _policy(config: Config, dimension: int, snapshot: Snapshot | None) -> Policy:
    return Policy(config.policy, config.features, dimension, snapshot)


async def run_learner(config: Config, stop: asyncio.Event | None = None) -> None:
    """Learns every reward the replicas append, snapshots, and announces each served snapshot on
    ``PREFIX:snapshots``; stops (draining what is in the stream) on SIGTERM or SIGINT, or when ``stop`` is set."""
    if not config.redis.url:
        raise ConfigError("redis.url is required for a separate learner: set REDIS_URL to the replicas' Redis")
    client = aioredis.Redis.from_url(config.redis.url, socket_timeout=5.0, socket_connect_timeout=5.0)
    store = Store(client, config.redis.key_prefix)
    files = SnapshotFiles(config.server.data_path / "snapshots", config.policy.keep_snapshots)
    # The clusters' dimension is the embedding model's; the learner embeds nothing itself.
    dimension = (await asyncio.to_thread(Embedder, config.embedding)).dimension
    rebuild = partial(_policy, config, dimension)
    checkpoint = await load_snapshot(store, files)
    served = await load_snapshot(store, files, served=True) or checkpoint
    learner = Learner(
        store,
        await asyncio.to_thread(rebuild, checkpoint),
        config.policy,
        files,
        publish=lambda policy: None,  # replicas hear of it through Redis
        rebuild=rebuild,
        ewma_alpha=config.energy.ewma_alpha,
        log_dir=config.server.data_path / "decisions",
        serving=await asyncio.to_thread(rebuild, served),
    )
    learner.start()
    log.info(
        "learner consuming %s (policy v%d, %d events learned)",
        store.events_key,
        learner.policy.version,
        learner.policy.learned,
    )
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("stopping: learning what is in the stream, then a last snapshot")
    finally:
        await learner.stop()
        await client.aclose()
