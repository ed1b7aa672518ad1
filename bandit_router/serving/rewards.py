"""Reward: finds the pending decision, prices what its answer cost, and appends its learning event once."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import ResponseError

from bandit_router.config import Config, ModelSpec
from bandit_router.domain.pricing import price_outcome
from bandit_router.domain.records import LearningEvent, PendingDecision
from bandit_router.domain.requests import RewardInput
from bandit_router.domain.reward import Figure, Source, resolve_tokens
from bandit_router.energy.attribution import DecisionEnergy, NotCovered
from bandit_router.errors import AlreadyExists, NotFound, Unavailable
from bandit_router.observability.monitor import Monitor
from bandit_router.serving.outage import OutageBuffer
from bandit_router.store.errors import REDIS_ERRORS, refusing
from bandit_router.store.redis_store import Store

log = logging.getLogger(__name__)


def public(exc: BaseException) -> str:
    """An error's text for a caller: without file system paths (the Redis socket's) that tell it nothing."""
    return re.sub(r"(unix://)?/[^\s:'\"]+", "<path>", str(exc))


def model_of(pending: PendingDecision, models: dict[str, ModelSpec]) -> ModelSpec:
    """The decided model as the catalog has it now, or as it was at Route if it left the catalog since."""
    return models.get(pending.decision.model) or pending.model_spec


class Rewarder:
    """Turns a Reward into its learning event, appended to the stream in the same atomic step that takes the
    pending decision: a reward answered OK is learned exactly once."""

    def __init__(
        self,
        config: Config,
        store: Store,
        energy: DecisionEnergy,
        monitor: Monitor,
        outage: OutageBuffer,
        flush: Callable[[], Awaitable[int]],
        clock: Callable[[], float],
        metered_settled: Callable[[str], Awaitable[None]],
    ) -> None:
        self.config = config
        # Waits for the gateway's record of the decision's call, where this router is still writing it.
        self._metered_settled = metered_settled
        self.store = store
        self.energy = energy
        self.monitor = monitor
        self.outage = outage
        self._flush = flush
        self._clock = clock
        self.models = config.model_by_id

    async def reward(self, request: RewardInput) -> tuple[LearningEvent, Figure, Figure]:
        """The learned event, and its cost and energy figures with their sources."""
        quality = request.validate(self.config.limits, self.config.reward.failure_quality)
        try:
            with self.monitor.metrics.reward_latency.time():
                return await self._reward(request, quality)
        except REDIS_ERRORS as exc:
            raise Unavailable(f"Redis is unreachable, retry: {public(exc)}") from exc
        except ResponseError as exc:
            if not refusing(exc):
                raise
            raise Unavailable(f"Redis refuses writes for now, retry: {public(exc)}") from exc

    async def _reward(self, request: RewardInput, quality: float) -> tuple[LearningEvent, Figure, Figure]:
        decision_id = request.decision_id
        if request.tenant and not decision_id.startswith(request.tenant + "."):
            # Another tenant's decision, or none: the same answer either way, so nothing is revealed.
            raise self._unknown(decision_id)
        if decision_id in self.outage:
            # Made while Redis was down; write it (and those before it) first, or answer UNAVAILABLE.
            await self._flush()
        await self._metered_settled(decision_id)
        pending, metered = await self.store.get_for_reward(decision_id)
        if pending is None:
            raise await self._missing(decision_id)
        request = request.completed_by(metered)
        model = model_of(pending, self.models)
        answer_chars = metered.answer_chars if metered is not None else 0
        counted = (metered.input_counted, metered.output_counted) if metered is not None else (0, 0)
        tokens = resolve_tokens(
            model, request.input_tokens, request.output_tokens, pending.query_tokens, answer_chars, counted
        )
        request.check_plausible(self.config.models, tokens, self.config.limits.max_report_ratio)
        now = self._clock()
        measured: Figure | None = None
        unmeasured = ""
        try:
            # The call ended when the gateway saw its answer end, where it did.
            answered = metered.answered_at if metered is not None else None
            end, until = (now, "Reward") if answered is None else (min(answered, now), "the end of its answer")
            landed = await self.energy.land(decision_id, model, pending.created_at, end, until)
            measured = Figure(landed.joules, Source.MEASURED, landed.basis)
        except NotCovered as exc:
            unmeasured = str(exc)
        priced = price_outcome(model, tokens, request.cost_usd, request.energy_joules, measured, unmeasured)
        event = LearningEvent.of(
            pending, quality, request.latency_ms, priced, now, self.config.reward, failure=request.failure
        )
        redis = self.config.redis
        taken = await self.store.take_and_append(
            decision_id,
            event,
            now,
            self.config.reward.retention_s,
            request.tenant,
            replicas=redis.wait_replicas,
            timeout_ms=redis.wait_timeout_ms,
        )
        if taken.status == "gone":
            raise await self._missing(decision_id)
        if taken.replicas is not None and taken.replicas < redis.wait_replicas:
            raise self._unreplicated(decision_id, taken.replicas)
        if taken.status == "rewarded":
            raise AlreadyExists(f"decision_id {decision_id!r} was already rewarded; the first reward counts")
        self.monitor.on_reward(decision_id, event, request.tenant)
        return event, priced.cost, priced.energy

    def _unreplicated(self, decision_id: str, held: int) -> Unavailable:
        """A reward on the master that too few replicas confirmed: a failover now could lose it, so it is not
        acknowledged. The client retries: ALREADY_EXISTS once replicas hold the first (which is then learned once),
        or OK where a failover lost it and the retry took the decision afresh on the new master."""
        redis = self.config.redis
        log.warning(
            "reward of %s held by %d of %d replicas after %d ms (redis.wait_replicas): answered UNAVAILABLE, so "
            "that the client retries",
            decision_id,
            held,
            redis.wait_replicas,
            redis.wait_timeout_ms,
        )
        return Unavailable(
            f"decision_id {decision_id!r}: the reward is on the Redis master but {held} of "
            f"redis.wait_replicas={redis.wait_replicas} replicas confirmed it within {redis.wait_timeout_ms} ms; "
            "retry (a retry answered ALREADY_EXISTS means this reward was kept)"
        )

    async def _missing(self, decision_id: str) -> Exception:
        """Says why a decision is not pending: already rewarded, expired, or never made (or done with longer ago
        than ``reward.retention_s``)."""
        if await self.store.was_rewarded(decision_id):
            return AlreadyExists(f"decision_id {decision_id!r} was already rewarded; the first reward counts")
        summary = await self.store.get_summary(decision_id)
        deadline = summary.decision.expires_at if summary is not None else await self.store.expired_at(decision_id)
        if deadline is not None:
            expired = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deadline))
            return NotFound(
                f"decision_id {decision_id!r} expired at {expired} "
                f"(rewards are accepted for {self.config.reward.wait_time_s:g} s after Route)"
            )
        return self._unknown(decision_id)

    def _unknown(self, decision_id: str) -> NotFound:
        retention = self.config.reward.retention_s
        return NotFound(
            f"decision_id {decision_id!r} is unknown: no Route made it, or it was rewarded or expired over "
            f"{retention:g} s ago"
        )
