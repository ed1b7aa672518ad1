"""Where a process starts and stops: the router's edges in order, ``serve`` and the separate learner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from bandit_router.config import Config, ConfigError
from bandit_router.observability.tracing import disable, enable
from bandit_router.runtime.ports import check_ports
from bandit_router.runtime.root import build_learner, connect_store, embedding_dimension, load_snapshots, open_router
from bandit_router.serving.router import RouterService
from bandit_router.store.snapshots import SnapshotFiles
from bandit_router.transport.dashboard.web import Dashboard
from bandit_router.transport.grpc_server import Server
from bandit_router.transport.http.learner_health import serve_health
from bandit_router.transport.http.server import HttpServer

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RouterProcess:
    """A router and its edges (gRPC, and the dashboard and HTTP API where configured), started after the router
    and stopped before it, in one order: health goes NOT_SERVING first, so balancers stop sending; the HTTP API
    and gRPC then finish their in-flight calls; the dashboard goes; the router closes last (flushing what it
    holds, draining the learner, stopping the embedded Redis). Binds the gRPC port on construction."""

    def __init__(self, service: RouterService, listen: str) -> None:
        self.service = service
        self.grpc = Server(service, listen)
        self.address = self.grpc.address
        self.port = self.grpc.port
        self.dashboard: Dashboard | None = None
        self.http: HttpServer | None = None
        self._tracing: Any = None

    async def start(self) -> None:
        tracing = self.service.config.tracing
        if tracing.otlp_endpoint:
            self._tracing = enable(tracing.otlp_endpoint, tracing.service_name)
        await self.grpc.start()
        listen = self.service.config.dashboard.listen
        if listen:
            self.dashboard = Dashboard(self.service, listen)
            await self.dashboard.start()
        if self.service.config.http.listen:
            self.http = HttpServer(self.service)
            await self.http.start()
        await self.grpc.serving()

    async def stop(self, grace: float) -> None:
        """Stops what started, in order (see the class), also after a start that failed part way."""
        try:
            await self.grpc.not_serving()
            if self.http is not None:
                await self.http.stop()
            await self.grpc.stop(grace)
            if self.dashboard is not None:
                await self.dashboard.stop()
        finally:
            await self.service.close()
            if self._tracing is not None:
                disable(self._tracing)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM while the block runs (on the running loop); the handlers go after."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


async def _unless_stopped(start: Coroutine[Any, Any, RouterService], stop: asyncio.Event) -> RouterService | None:
    """What ``start`` opens, or None when ``stop`` is set first: the start is then cancelled, and stops what it
    had started (the embedded Redis, embedding workers) before this returns."""
    opening = asyncio.ensure_future(start)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({opening, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if opening.done():
        return opening.result()
    opening.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await opening
    return None


async def serve(config: Config, ready: Callable[[RouterProcess], None] | None = None) -> None:
    """Serves until SIGINT or SIGTERM. Whatever fails on the way in (a taken port, a bad certificate), what was
    started is stopped again, the embedded Redis included, before the error goes up."""
    check_ports(config)
    with stop_on_signals() as stop:
        service = await _unless_stopped(open_router(config), stop)
        if service is None:
            log.info("stopped during start-up: what had started is stopped again")
            return
        try:
            process = RouterProcess(service, config.server.listen)
        except BaseException:
            await service.close()
            raise
        try:
            await process.start()
        except BaseException:
            await process.stop(0)
            raise
        log.info("bandit-router serving on %s (policy %s)", process.address, service.policy_version)
        if ready is not None:
            ready(process)
        await stop.wait()
        log.info("stopping: draining in-flight calls and the learner")
        await process.stop(config.server.grace_s)


async def run_learner(config: Config, stop: asyncio.Event) -> None:
    """The learner as a process of its own, for replicas sharing one Redis (`bandit-router learner`): learns
    every reward the replicas append, snapshots, announces each served snapshot on ``PREFIX:snapshots``, and
    stops (draining what is in the stream) when ``stop`` is set."""
    if not config.redis.url:
        raise ConfigError("redis.url is required for a separate learner: set REDIS_URL to the replicas' Redis")
    store = await connect_store(config)
    try:
        # The clusters' dimension is the embedding model's; the learner embeds nothing itself.
        dimension = await asyncio.to_thread(embedding_dimension, config.embedding)
        checkpoint, served = await load_snapshots(store, SnapshotFiles.of(config))
        # Replicas hear of a served snapshot through Redis.
        learner = await build_learner(config, store, dimension, lambda policy: None, checkpoint, served)
        probes = None
        if config.server.learner_health_listen:
            probes, url = await serve_health(learner, config.server.learner_health_listen)
            log.info("learner probes on %slivez and %sreadyz", url, url)
        learner.start()
        log.info(
            "learner %s consuming %s (policy v%d, %d events learned); learning while it holds %s, else standing by",
            learner.name,
            store.events_key,
            learner.policy.version,
            learner.policy.learned,
            store.lease.key,
        )
        try:
            await stop.wait()
            log.info("stopping: learning what is in the stream, then a last snapshot")
        finally:
            await learner.stop(config.server.stop_timeout_s)
            if probes is not None:
                await probes.cleanup()
    finally:
        await store.close()
