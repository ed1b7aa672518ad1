"""Several routing processes on one host (`bandit-router serve --workers N`), sharing the gRPC port.

gRPC binds with SO_REUSEPORT on Linux, so N processes listening on one address split the connections
between them and use N cores. The parent runs the one learner (and the embedded Redis when no URL is
configured); each worker is a replica that follows the learner's snapshots. Worker i serves its dashboard
on the configured port + i.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys

from bandit_router.config import load_config
from bandit_router.learner_process import run_learner
from bandit_router.redis_server import EmbeddedRedis

log = logging.getLogger(__name__)


def _dashboard(listen: str, offset: int) -> str:
    if not listen:
        return ""
    host, _, port = listen.rpartition(":")
    return listen if port == "0" else f"{host}:{int(port) + offset}"


async def run_workers(config_path: str | None, workers: int) -> int:
    config = load_config(config_path)
    embedded = None
    url = config.redis.url
    if not url:
        embedded = EmbeddedRedis(config.server.data_path / "redis")
        url = await asyncio.to_thread(embedded.start)
    children = []
    for i in range(workers):
        env = {
            **os.environ,
            "REDIS_URL": url,
            "BANDIT_ROUTER_SERVER_LEARNER": "false",
            "BANDIT_ROUTER_DASHBOARD_LISTEN": _dashboard(config.dashboard.listen, i),
        }
        command = [sys.executable, "-m", "bandit_router", "serve"] + (["--config", config_path] if config_path else [])
        children.append(subprocess.Popen(command, env=env))
    log.info("%d routing workers on %s (pids %s)", workers, config.server.listen, [c.pid for c in children])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def watch() -> None:
        # A worker that dies takes the whole group down: a supervisor (systemd, Kubernetes) restarts it.
        while all(c.poll() is None for c in children):
            await asyncio.sleep(0.5)
        log.error("a worker exited (%s); stopping", [c.returncode for c in children])
        stop.set()

    watcher = loop.create_task(watch())
    try:
        await run_learner(config.replace(redis={"url": url}), stop)
    finally:
        watcher.cancel()
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        codes = [await asyncio.to_thread(child.wait, 60) for child in children]
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
    return 0 if all(code == 0 for code in codes) else 1
