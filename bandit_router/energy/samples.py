"""Per-GPU cumulative energy samples in Redis: the agent that publishes them, and how they are keyed and read."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from bandit_router.energy.nvml import CounterSource, Cumulative

log = logging.getLogger(__name__)


class EnergyAgent:
    """Publishes every GPU's cumulative energy to Redis at a fixed interval, for the routers to attribute.

    Keys: ``{prefix}:energy:{node}:{gpu}``, a sorted set of ``"time joules"`` scored by time, trimmed
    to ``retention_s``.
    """

    def __init__(
        self,
        source: CounterSource,
        client: Any,
        prefix: str,
        node: str,
        interval_s: float,
        retention_s: float,
        clock: Callable[[], float] = time.time,
        wrap_joules: float | None = None,
        on_sample: Callable[[float, dict[int, float]], None] | None = None,
    ) -> None:
        self._on_sample = on_sample
        self.source = source
        self.client = client
        self.prefix = prefix
        self.node = node
        self.interval_s = interval_s
        self.retention_s = retention_s
        self._clock = clock
        self._cumulative = Cumulative(wrap_joules)

    async def publish_once(self) -> dict[int, float]:
        readings = await asyncio.to_thread(self.source.read)
        now = self._clock()
        totals = self._cumulative.update(readings)
        async with self.client.pipeline(transaction=False) as pipe:
            for gpu, joules in totals.items():
                key = sample_key(self.prefix, self.node, gpu)
                pipe.zadd(key, {f"{now!r} {joules!r}": now})
                pipe.zremrangebyscore(key, "-inf", now - self.retention_s)
            await pipe.execute()
        if self._on_sample is not None:
            self._on_sample(now, totals)
        return totals

    async def run(self, stop: Any) -> None:
        """Publishes until ``stop`` (an asyncio.Event) is set; a failed round is logged and retried."""
        while not stop.is_set():
            try:
                await self.publish_once()
            except Exception:  # Redis away for a moment: the next round tries again
                log.exception("energy agent %s could not publish", self.node)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)


def sample_key(prefix: str, node: str, gpu: int) -> str:
    return f"{prefix}:energy:{node}:{gpu}"


def parse_samples(members: Iterable[bytes | str]) -> list[tuple[float, float]]:
    pairs = []
    for member in members:
        text = member.decode() if isinstance(member, bytes) else member
        t, joules = text.split(" ")
        pairs.append((float(t), float(joules)))
    pairs.sort()
    return pairs
