"""Keeps the embedded Redis alive: restarts it on the same socket and append-only file when it dies."""

from __future__ import annotations

import asyncio
import logging

from bandit_router.store.embedded import EmbeddedRedis
from bandit_router.store.errors import stop_if_cancelled

log = logging.getLogger(__name__)

SUPERVISE_EVERY_S = 0.2


class RedisSupervisor:
    """While the embedded Redis is down, ``problem`` says why (health is NOT_SERVING); clients reconnect by
    themselves once it is back. ``changed`` is set whenever ``problem`` changes."""

    def __init__(self, embedded: EmbeddedRedis, changed: asyncio.Event) -> None:
        self.embedded = embedded
        self.changed = changed
        self.problem: str | None = None

    def _say(self, problem: str | None) -> None:
        self.problem = problem
        self.changed.set()

    async def run(self) -> None:
        embedded = self.embedded
        while True:
            stop_if_cancelled()
            await asyncio.sleep(SUPERVISE_EVERY_S)
            if embedded.alive():
                continue
            self._say("the embedded Redis died; restarting it")
            log.error("embedded Redis died; restarting it on %s", embedded.url)
            while not embedded.alive():
                try:
                    embedded.spawn()  # on the loop's thread, which the server lives no longer than
                    await asyncio.to_thread(embedded.wait_ready)
                    embedded.restarts += 1
                except Exception as exc:  # any failure is retried; health says why meanwhile
                    stop_if_cancelled(exc)
                    self._say(f"the embedded Redis died and does not start again: {exc}")
                    log.error("%s; retrying in 1 s", self.problem)
                    await asyncio.sleep(1.0)
            log.info("embedded Redis is back (pid %s)", embedded.pid)
            self._say(None)
