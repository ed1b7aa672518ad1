"""Decisions made while Redis is unreachable: kept in memory, in order, and written once it is back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bandit_router.domain.records import PendingDecision, Summary

log = logging.getLogger(__name__)


class OutageBuffer:
    """At most ``capacity`` decisions, oldest dropped first (its reward is then NOT_FOUND); 0 keeps none."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._held: dict[str, tuple[PendingDecision, float]] = {}
        self.dropped = 0
        # One flush at a time (the sweep and a Reward may both start one); the write is idempotent anyway.
        self._flushing = asyncio.Lock()

    def __contains__(self, decision_id: str) -> bool:
        return decision_id in self._held

    def __len__(self) -> int:
        return len(self._held)

    def summary(self, decision_id: str) -> Summary | None:
        held = self._held.get(decision_id)
        return None if held is None else held[0].summary

    def keep(self, pending: PendingDecision, now: float, why: BaseException) -> None:
        if not self._held:
            log.warning("Redis is unreachable (%s): keeping decisions in memory until it is back", why)
        if len(self._held) >= self.capacity:
            oldest = next(iter(self._held), None)
            if oldest is not None:
                del self._held[oldest]
                self.dropped += 1
                log.error("outage buffer full: decision %s dropped; its reward will be NOT_FOUND", oldest)
        if self.capacity > 0:
            self._held[pending.decision_id] = (pending, now)

    async def flush(self, put: Callable[[PendingDecision, float], Awaitable[object]]) -> int:
        """Writes the kept decisions with ``put``, oldest first; stops at the first failure (it raises)."""
        written = 0
        async with self._flushing:
            while self._held:
                decision_id, (pending, now) = next(iter(self._held.items()))
                await put(pending, now)
                self._held.pop(decision_id, None)
                written += 1
        if written:
            log.info("Redis is back: wrote %d decisions kept in memory", written)
        return written
