"""Writes a pending decision: to Redis within the tenant's quota, or into the outage buffer while Redis is away."""

from __future__ import annotations

import logging

from redis.exceptions import ResponseError

from bandit_router.config import Config
from bandit_router.domain.records import PendingDecision, Summary
from bandit_router.energy.attribution import DecisionEnergy
from bandit_router.errors import ResourceExhausted
from bandit_router.serving.outage import OutageBuffer
from bandit_router.store.errors import REDIS_ERRORS, refusing
from bandit_router.store.redis_store import QuotaExceeded, Store

log = logging.getLogger(__name__)


class DecisionWriter:
    """Stores each decision once, with its energy flight; keeps it in memory while Redis is unreachable."""

    def __init__(self, config: Config, store: Store, energy: DecisionEnergy, outage: OutageBuffer) -> None:
        self.config = config
        self.store = store
        self.energy = energy
        self.outage = outage

    async def save(self, pending: PendingDecision, now: float) -> Summary | None:
        """Stores the decision and its energy flight; keeps it in memory while Redis is unreachable. Returns
        the summary of an earlier decision with the same id instead, if there is one."""
        quota = self.config.limits.max_pending_per_tenant
        try:
            existing = await self.put(pending, now, quota)
        except QuotaExceeded as exc:
            who = f"tenant {pending.tenant!r}" if pending.tenant else "this router's one tenant"
            shards = self.config.redis.shards
            where = (
                ""
                if shards == 1
                else f" in this decision's shard, which holds its share {-(-quota // shards)} of it (redis.shards = "
                f"{shards})"
            )
            raise ResourceExhausted(
                f"{who} has {exc.held} decisions waiting for a reward, limits.max_pending_per_tenant = "
                f"{quota}{where}: reward them (or let them expire) first"
            ) from None
        except (*REDIS_ERRORS, ResponseError) as exc:
            if isinstance(exc, ResponseError) and not refusing(exc):
                raise
            self.outage.keep(pending, now, exc)
            return None
        if existing is not None:
            return existing
        try:
            await self.energy.take_off(pending.decision_id, pending.model_spec, now)
        except REDIS_ERRORS as exc:  # its energy will be estimated
            log.warning("could not record the energy flight of %s: %s", pending.decision_id, exc)
        return None

    async def put(self, pending: PendingDecision, now: float, quota: int = 0) -> Summary | None:
        defaults = self.config.reward
        return await self.store.put_decision(
            pending,
            defaults.wait_time_s,
            now,
            grace_s=defaults.sweep_grace_s,
            quota=quota,
        )

    async def flush(self) -> int:
        """Writes the decisions kept during a Redis outage, oldest first; stops at the first failure."""
        return await self.outage.flush(self.put)
