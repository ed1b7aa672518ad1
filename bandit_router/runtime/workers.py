"""Several routing processes on one host (`bandit-router serve --workers N`), sharing the gRPC port.

gRPC binds with SO_REUSEPORT on Linux, so N processes listening on one address split the connections
between them and use N cores. The parent runs the one learner (and the embedded Redis when no URL is
configured); each worker is a replica that follows the learner's snapshots. Worker i serves its dashboard
on the configured port + i. With `embedding.shared`, the parent also runs the host's embedding servers
(`embedding.processes` of them) for all workers, so the model is loaded once per server rather than
`embedding.processes` times per worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from bandit_router.config import Config, EmbeddingConfig, load_config
from bandit_router.embedding.pool import available_cpus, in_workers
from bandit_router.embedding.wire import shared_socket
from bandit_router.embedding.worker import EmbedderProcess
from bandit_router.runtime.process import run_learner, stop_on_signals
from bandit_router.store.embedded import start_embedded

log = logging.getLogger(__name__)


def _offset(listen: str, offset: int) -> str:
    if not listen:
        return ""
    host, _, port = listen.rpartition(":")
    return listen if port == "0" else f"{host}:{int(port) + offset}"


def start_embedding_servers(config: EmbeddingConfig, folder: str) -> list[EmbedderProcess]:
    """``config.processes`` shared embedding servers listening in ``folder``, each with its share of the CPUs."""
    threads = config.threads or max(1, available_cpus() // max(1, config.processes))
    servers = [
        EmbedderProcess(config, threads, wait=False, serve_at=shared_socket(folder, i)) for i in range(config.processes)
    ]
    try:
        for server in servers:
            server.wait_ready()
    except Exception:
        for server in servers:
            server.kill()
        raise
    return servers


async def run_workers(config_path: str | None, workers: int) -> int:
    config = load_config(config_path)
    embedded = None
    url = config.redis.url
    if not url:
        embedded = await start_embedded(config.server.data_path / "redis", config.redis.embedded_maxmemory_mb)
        url = embedded.url
    # A short path of its own: a Unix socket's path may not exceed 107 bytes.
    shared = tempfile.mkdtemp(prefix="br-embed-")
    servers: list[EmbedderProcess] = []
    try:
        if in_workers(config.embedding) and config.embedding.shared:
            servers = await asyncio.to_thread(start_embedding_servers, config.embedding, shared)
        return await _supervise(config_path, workers, config.replace(redis={"url": url}), shared, servers)
    finally:
        # The workers have stopped by now: their in-flight calls needed the servers until then.
        for server in servers:
            await asyncio.to_thread(server.close)
        shutil.rmtree(shared, ignore_errors=True)
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


async def _supervise(
    config_path: str | None, workers: int, config: Config, shared: str, servers: list[EmbedderProcess]
) -> int:
    """Runs the routing workers and, in this process, the learner, until a signal or a death."""
    children = []
    for i in range(workers):
        env = {
            **os.environ,
            "REDIS_URL": config.redis.url,
            "BANDIT_ROUTER_SERVER_LEARNER": "false",
            "BANDIT_ROUTER_SERVER_REUSE_PORT": "true",
            "BANDIT_ROUTER_DASHBOARD_LISTEN": _offset(config.dashboard.listen, i),
            # Each worker its own HTTP port: aiohttp does not share one (SO_REUSEPORT) the way gRPC does.
            "BANDIT_ROUTER_HTTP_LISTEN": _offset(config.http.listen, i),
            "BANDIT_ROUTER_EMBEDDING_SHARED_DIR": shared if servers else "",
        }
        command = [sys.executable, "-m", "bandit_router", "serve"] + (["--config", config_path] if config_path else [])
        children.append(subprocess.Popen(command, env=env))
    log.info(
        "%d routing workers on %s (pids %s), sharing %d embedding servers",
        workers,
        config.server.listen,
        [c.pid for c in children],
        len(servers),
    )
    with stop_on_signals() as stop:

        async def watch() -> None:
            # A worker or an embedding server that dies takes the whole group down: a supervisor (systemd,
            # Kubernetes) restarts it.
            while all(c.poll() is None for c in children) and not any(s.exited for s in servers):
                await asyncio.sleep(0.5)
            log.error(
                "a worker or embedding server exited (workers: %s, servers exited: %s); stopping",
                [c.returncode for c in children],
                [s.exited for s in servers],
            )
            stop.set()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await run_learner(config, stop)
        finally:
            watcher.cancel()
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            codes = [await asyncio.to_thread(child.wait, 60) for child in children]
    return 0 if all(code == 0 for code in codes) else 1
