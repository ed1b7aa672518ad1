"""The composition root: builds a router from its parts (Redis, embedder, policies, learner)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from bandit_router.config import Config, EmbeddingConfig
from bandit_router.embedding.backends import load_embedder
from bandit_router.embedding.folder import declared_dimension
from bandit_router.embedding.pool import EmbedderPool, in_workers
from bandit_router.embedding.types import TextEmbedder
from bandit_router.learning.learner import Learner
from bandit_router.policy.vw import Policy, Snapshot
from bandit_router.serving.router import RouterService
from bandit_router.serving.served import version_name
from bandit_router.store.embedded import connect
from bandit_router.store.redis_store import Store
from bandit_router.store.snapshots import SnapshotFiles, load_snapshot

log = logging.getLogger(__name__)


async def load_snapshots(store: Store, files: SnapshotFiles) -> tuple[Snapshot | None, Snapshot | None]:
    """The learner's newest checkpoint and the snapshot Route serves (a store written before the quality gate
    existed has no served one: the checkpoint is served)."""
    checkpoint = await load_snapshot(store, files)
    served = await load_snapshot(store, files, served=True) or checkpoint
    return checkpoint, served


async def build_learner(
    config: Config,
    store: Store,
    dimension: int,
    publish: Callable[[Policy], None],
    checkpoint: Snapshot | None,
    served: Snapshot | None,
) -> Learner:
    """The learner, learning on from ``checkpoint``, judging against ``served``; not yet started."""
    rebuild = partial(Policy.of, config, dimension)
    if checkpoint is not None:
        log.info("loaded policy %s (%d events learned)", version_name(checkpoint.version), checkpoint.learned)
    return Learner(
        store,
        await asyncio.to_thread(rebuild, checkpoint),
        config.policy,
        SnapshotFiles.of(config),
        publish,
        rebuild,
        ewma_alpha=config.energy.ewma_alpha,
        log_dir=config.server.data_path / "decisions",
        serving=await asyncio.to_thread(rebuild, served),
        rollout=config.rollout,
    )


async def connect_store(config: Config) -> Store:
    """The store on ``redis.url`` (a separate learner's, a tool's: never the embedded one)."""
    client, _ = await connect(config.redis.url, config.server.data_path)
    return Store(client, config.redis.key_prefix, config.redis.shards)


def embedding_dimension(config: EmbeddingConfig) -> int:
    """The embedding model's dimension: as its folder declares it, else by loading it (blocking)."""
    return declared_dimension(config) or load_embedder(config).dimension


def build_embedder(config: EmbeddingConfig) -> TextEmbedder:
    """Worker processes where :func:`in_workers` says so, else in this process; blocking (loads weights)."""
    return EmbedderPool(config) if in_workers(config) else load_embedder(config)


async def _on_daemon_thread(build: Callable[[], TextEmbedder]) -> TextEmbedder:
    """``build()`` (loading weights, starting workers) on a daemon thread: a start cancelled meanwhile (a stop
    signal) neither waits for the load to end nor holds the process's exit for it; what the thread built after
    the cancel is closed there."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[TextEmbedder] = loop.create_future()

    def deliver(result: TextEmbedder | None, error: BaseException | None) -> None:
        if future.cancelled():
            if result is not None:
                result.close()
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: TextEmbedder | None = None
        error: BaseException | None = None
        try:
            result = build()
        except BaseException as exc:  # handed to the awaiting start, whatever it is
            error = exc
        try:
            loop.call_soon_threadsafe(deliver, result, error)
        except RuntimeError:  # the loop is gone: nobody will use what was built
            if result is not None:
                result.close()

    threading.Thread(target=run, name="start-up", daemon=True).start()
    return await future


async def open_router(config: Config, embedder: TextEmbedder | None = None, **kwargs: Any) -> RouterService:
    """Opens a router: connects Redis (or starts the embedded one), loads the newest snapshots, starts the
    learner when ``server.learner`` (else follows the learner's announcements). A given ``embedder`` stays the
    caller's to close; one built here is the router's. ``kwargs`` go to RouterService (clock, new_id)."""
    # Each step of a start is logged as it begins: a start that is slow (a loaded machine loading torch) says
    # where it is, and one that hangs says where it stopped.
    log.info("starting: connecting to Redis (%s)", "the embedded server" if not config.redis.url else "redis.url")
    client, embedded = await connect(config.redis.url, config.server.data_path, config.redis.embedded_maxmemory_mb)
    owned = embedder is None
    service: RouterService | None = None
    try:
        if embedder is None:
            log.info(
                "starting: loading the embedding model (%s)", config.embedding.model or "all-MiniLM-L6-v2, bundled"
            )
            embedder = await _on_daemon_thread(partial(build_embedder, config.embedding))
        store = Store(client, config.redis.key_prefix, config.redis.shards)
        log.info("starting: embedding the task prototypes and building the policy")
        # Embeds the task prototypes and builds a VW workspace: off the event loop.
        service = await asyncio.to_thread(partial(RouterService, config, store, embedder, **kwargs))
        service.adopt(embedded, owned)
        log.info("starting: loading the newest policy snapshots")
        if config.server.learner:
            checkpoint, served = await load_snapshots(store, service.files)
        else:
            # A replica serves; it learns nothing, so it needs no checkpoint, and of the served snapshot only the
            # parts of the tenants it serves.
            checkpoint = None
            served = await load_snapshot(store, service.files, served=True, tenants=config.server.tenants or None)
        if config.server.learner:
            learner = await build_learner(config, store, embedder.dimension, service.served.install, checkpoint, served)
            service.learner = learner
            learner.start()
        await service.start(served)
    except BaseException:
        # A start that failed or was cancelled (Ctrl-C while it loads) stops what it started, the
        # embedded Redis last, so that nothing outlives it (a caller's temporary folder then goes safely).
        try:
            if service is not None:
                await service.close()
            else:
                await client.aclose()
                if owned and embedder is not None:
                    await asyncio.to_thread(embedder.close)
        finally:
            if embedded is not None and service is None:
                await asyncio.to_thread(embedded.stop)
        raise
    return service
