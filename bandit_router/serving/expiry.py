"""Expiry: decisions whose reward never came in time are learned with the default reward, or dropped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bandit_router.config import Config
from bandit_router.domain.pricing import price_outcome
from bandit_router.domain.records import LearningEvent
from bandit_router.domain.reward import resolve_tokens
from bandit_router.observability.monitor import Monitor
from bandit_router.serving.rewards import model_of
from bandit_router.store.errors import outage, stop_if_cancelled
from bandit_router.store.redis_store import Store

log = logging.getLogger(__name__)


class Expiry:
    """Atomic against Reward: a decision is rewarded or expired, not both. Any replica may sweep; each
    decision expires once."""

    def __init__(self, config: Config, store: Store, monitor: Monitor, clock: Callable[[], float]) -> None:
        self.config = config
        self.store = store
        self.monitor = monitor
        self._clock = clock
        self.models = config.model_by_id

    async def sweep(self) -> int:
        """Expires every decision whose reward wait has run out (``reward.on_expiry``); returns how many."""
        now = self._clock()
        expired = 0
        # In batches until none is due (each expiry takes its id off the deadlines), so that the deadlines
        # cannot pile up at any routing rate.
        while batch := await self.store.due(now):
            expired += await self._expire_batch(batch, now)
        return expired

    async def run(self, flush_unsaved: Callable[[], Awaitable[int]]) -> None:
        """Sweeps every ``reward.expiry_sweep_s`` until cancelled, first writing what a Redis outage kept."""
        while True:
            stop_if_cancelled()  # a cancellation redis-py swallowed on the last turn
            await asyncio.sleep(self.config.reward.expiry_sweep_s)
            try:
                await flush_unsaved()
                await self.sweep()
            except Exception as exc:  # one bad decision must not end the sweeps of every later one
                stop_if_cancelled(exc)
                if outage(exc):
                    log.warning("expiry sweep: Redis unreachable or refusing writes for now (%s); retrying", exc)
                else:
                    log.exception("expiry sweep failed; the next sweep retries")

    async def _default_event(self, decision_id: str, now: float) -> LearningEvent | None:
        """The default-reward event of a due decision; None when it is dropped instead (or already gone)."""
        defaults = self.config.reward
        if defaults.on_expiry != "default":
            return None
        pending = await self.store.get_pending(decision_id)
        if pending is None:
            return None
        model = model_of(pending, self.models)
        tokens = resolve_tokens(model, 0, 0, pending.query_tokens)
        why = f"never rewarded within {defaults.wait_time_s:g} s: default reward"
        priced = price_outcome(model, tokens, unmeasured=why)
        return LearningEvent.of(pending, defaults.default_quality, 0.0, priced, now, defaults, expired=True)

    async def _expire_batch(self, batch: list[str], now: float) -> int:
        expired = 0
        for decision_id in batch:
            event = await self._default_event(decision_id, now)
            if await self.store.expire(decision_id, now, event, self.config.reward.retention_s) is not None:
                expired += 1
                self.monitor.on_expired(decision_id)
        return expired
