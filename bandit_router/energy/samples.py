"""The energy agent: publishes every GPU's cumulative energy counter for the routers to attribute."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from bandit_router.energy.nvml import CounterSource, Cumulative
from bandit_router.store.energy import EnergyRecords

log = logging.getLogger(__name__)


class EnergyAgent:
    """Publishes every GPU's cumulative energy to Redis at a fixed interval, for the routers to attribute;
    samples older than ``retention_s`` are dropped."""

    def __init__(
        self,
        source: CounterSource,
        records: EnergyRecords,
        node: str,
        interval_s: float,
        retention_s: float,
        clock: Callable[[], float] = time.time,
        wrap_joules: float | None = None,
        on_sample: Callable[[float, dict[int, float]], None] | None = None,
    ) -> None:
        self._on_sample = on_sample
        self.source = source
        self.records = records
        self.node = node
        self.interval_s = interval_s
        self.retention_s = retention_s
        self._clock = clock
        self._cumulative = Cumulative(wrap_joules)

    async def publish_once(self) -> dict[int, float]:
        readings = await asyncio.to_thread(self.source.read)
        now = self._clock()
        totals = self._cumulative.update(readings)
        await self.records.append_samples(self.node, now, totals, self.retention_s)
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
