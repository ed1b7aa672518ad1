"""The routing service: Route, Reward and ListModels over domain objects, with Redis and the learner."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from redis.exceptions import ResponseError

from bandit_router.config import Config, ModelSpec
from bandit_router.domain.metered import Metered
from bandit_router.domain.pricing import Expected, penalty
from bandit_router.domain.records import Decision, PendingDecision, Summary, encode_embedding
from bandit_router.domain.requests import RewardInput, RouteInput
from bandit_router.embedding.batcher import BatchingEmbedder
from bandit_router.embedding.recent import RecentEmbeddings
from bandit_router.embedding.types import Embedded, TextEmbedder
from bandit_router.energy.attribution import DecisionEnergy
from bandit_router.energy.samples import EnergyAgent
from bandit_router.observability.control import FIGURES, control_view
from bandit_router.observability.monitor import Monitor
from bandit_router.observability.timing import phase
from bandit_router.policy.budgets import within_budget
from bandit_router.policy.exploration import InFlight
from bandit_router.policy.features import Context, Featurizer
from bandit_router.policy.rule import Pick, decide, sample_index
from bandit_router.policy.vw import Policy, Snapshot
from bandit_router.policy.vwlines import Choice, action_line
from bandit_router.serving.affinity import Affinity
from bandit_router.serving.after_answer import AfterAnswer, Pin
from bandit_router.serving.decisions import DecisionWriter
from bandit_router.serving.expiry import Expiry
from bandit_router.serving.follower import follow
from bandit_router.serving.outage import OutageBuffer
from bandit_router.serving.own_energy import OwnEnergy
from bandit_router.serving.rewards import Rewarder
from bandit_router.serving.rollout import baseline_of, control_pmf
from bandit_router.serving.served import ServedPolicy, version_name
from bandit_router.serving.status import AttachedLearner, LearnerState, RewardOutcome, Stats
from bandit_router.serving.supervisor import RedisSupervisor
from bandit_router.serving.upstreams import UpstreamHealth
from bandit_router.store.embedded import EmbeddedRedis
from bandit_router.store.errors import REDIS_ERRORS
from bandit_router.store.redis_store import Store
from bandit_router.store.snapshots import SnapshotFiles

log = logging.getLogger(__name__)

__all__ = ["Decision", "LearnerState", "RewardOutcome", "RouterService", "Stats", "scoped_id"]


class _Scored(NamedTuple):
    choice: Choice
    kept: list[ModelSpec]
    excluded: list[str]
    expected: dict[str, Expected]
    context: Context


def scoped_id(tenant: str, decision_id: str) -> str:
    """A tenant's decision ids carry its name, so tenants' ids never collide and a Reward from another
    tenant is refused without a lookup."""
    return f"{tenant}.{decision_id}" if tenant else decision_id


class RouterService:
    """One router: embeds, featurises and decides on Route; Reward and expiry go to their own parts.

    Built by ``bandit_router.runtime.root.open_router``, which connects Redis, loads the snapshots and
    attaches the learner; :meth:`close` stops what it holds. Construction embeds the task prototypes and
    builds a VW workspace: do it off the event loop.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        embedder: TextEmbedder,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.config = config
        self.store = store
        self.embedder = embedder
        self.own_energy = OwnEnergy(config, store, embedder.device)
        self.monitor = Monitor(config.dashboard, clock)
        recent = None
        if config.embedding.cache_bytes:
            lookups = self.monitor.metrics.embedding_cache
            recent = RecentEmbeddings(
                config.embedding.cache_bytes, lambda hit: lookups.labels("hit" if hit else "miss").inc()
            )
        self.batcher = BatchingEmbedder(embedder, config.embedding, self.own_energy.on_batch, embedder.lanes, recent)
        self.featurizer = Featurizer(config.features, embedder.embed, embedder.dimension)
        self.models = config.model_by_id
        self._clock = clock
        self._new_id = new_id
        self.files = SnapshotFiles.of(config)
        # This router's trials that the served policy has not learned yet (see exploration.InFlight).
        self.in_flight = InFlight(config.reward.wait_time_s)
        self.served = ServedPolicy(config, embedder.dimension, store, self.monitor, self.in_flight)
        # The learner, when this router learns: attached by the runtime (serving never imports learning).
        self.learner: AttachedLearner | None = None
        self._embedded: EmbeddedRedis | None = None
        self._owns_embedder = False
        self.energy = DecisionEnergy(store.energy, config.energy.node_name, config.reward.wait_time_s, config.energy)
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._supervisor: RedisSupervisor | None = None
        # Set whenever health_problem() may have changed, so health follows a short outage too.
        self.health_changed = asyncio.Event()
        self.outage = OutageBuffer(config.redis.outage_buffer)
        self.writer = DecisionWriter(config, store, self.energy, self.outage)
        self.after_answer = AfterAnswer(self._put_after_answer)
        self.rewards = Rewarder(
            config, store, self.energy, self.monitor, self.outage, self.flush_unsaved, clock, self.after_answer.settled
        )
        self.expiry = Expiry(config, store, self.monitor, clock)
        # Where each conversation is pinned (the gateway asks; see serving/affinity.py).
        self.affinity = Affinity(store, config.reward.wait_time_s, self.after_answer.settled)
        # What the gateway sees of each model's backend (transport/http records it; the dashboard shows it).
        self.upstreams = UpstreamHealth(
            config.energy.ewma_alpha,
            clock,
            self.monitor.metrics,
            config.http.breaker_failures,
            config.http.breaker_cooldown_s,
        )

    def adopt(self, embedded: EmbeddedRedis | None, owns_embedder: bool) -> None:
        """Takes over what the runtime started for this router: closed by :meth:`close`."""
        self._embedded = embedded
        self._owns_embedder = owns_embedder

    def _spawn(self, job: Any, name: str) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(job, name=name))

    async def start(self, served: Snapshot | None) -> None:
        """Serves ``served`` (a fresh policy when None) and starts the background work: the expiry sweep, the
        embedded Redis's supervisor, a replica's follower (when no learner is attached), the batcher, NVML."""
        await self.served.start(served)
        if self.learner is None:
            self._spawn(follow(self.store, self.served.reload, self.config.policy.reload_poll_s), "snapshot-follower")
        self._spawn(self.expiry.run(self.flush_unsaved), "expiry-sweep")
        if self._embedded is not None:
            self._supervisor = RedisSupervisor(self._embedded, self.health_changed)
            self._spawn(self._supervisor.run(), "redis-supervisor")
        self.batcher.start()
        await self.own_energy.start()

    def health_problem(self) -> str | None:
        """Why this router cannot do its whole job now (health is NOT_SERVING meanwhile); None when it can."""
        if self._supervisor is not None and self._supervisor.problem is not None:
            return self._supervisor.problem
        if self.learner is not None and self.learner.problem is not None:
            return str(self.learner.problem)
        return None

    async def learner_lag(self) -> int:
        """Reward events in the stream not yet in a persisted snapshot (the learner trims the rest)."""
        try:
            return await self.store.backlog()
        except REDIS_ERRORS:
            return -1

    async def expired_count(self) -> int:
        """Decisions expired unrewarded, over every replica sharing the store."""
        try:
            return await self.store.expired_count()
        except REDIS_ERRORS:
            return -1

    async def refresh_metrics(self) -> None:
        """Brings the gauges up to date before a scrape."""
        m = self.monitor.metrics
        m.learner_lag.set(await self.learner_lag())
        m.pending.set(len(self.monitor.outstanding))
        m.expired.set(await self.expired_count())
        m.policy_version.set(self.serving.version)
        recent = self.batcher.recent
        if recent is not None:
            m.embedding_cache_bytes.set(recent.bytes)
            lookups = recent.hits + recent.misses
            m.embedding_cache_hit_ratio.set(recent.hits / lookups if lookups else 0.0)
        if self.learner is not None:
            m.promotions.set(self.learner.promotions)
            m.rejections.set(self.learner.rejections)
        ab = self.control_view()
        for arm in ("routed", "control"):
            for figure in FIGURES:
                value = ab[arm][figure]
                m.control_mean.labels(arm, figure).set(math.nan if value is None else value)
        for bound in ("difference", "lower", "upper"):
            value = ab[bound]
            m.control_difference.labels("estimate" if bound == "difference" else bound).set(
                math.nan if value is None else value
            )

    def control_view(self, tenant: str | None = None) -> dict[str, Any]:
        """Routing against its control group on every rewarded decision the monitor kept (dashboard, stats)."""
        return control_view(self.monitor, 0, tenant, horizon=self.config.rollout.promote_horizon)

    def learner_state(self) -> LearnerState | None:
        """The attached learner's state; None on a replica, whose learner runs elsewhere."""
        learner = self.learner
        if learner is None:
            return None
        return LearnerState(learner.policy.version, learner.promotions, learner.rejections, tuple(learner.verdicts))

    @property
    def agent(self) -> EnergyAgent | None:
        """The energy agent sampling this node's GPUs, while NVML is there."""
        return self.own_energy.agent

    @property
    def serving(self) -> Policy:
        """The policy serving Routes now."""
        return self.served.policy

    @property
    def policy_version(self) -> str:
        return self.served.version

    async def close(self) -> None:
        """Stops what this router holds; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.after_answer.close()
        if len(self.outage):
            with contextlib.suppress(*REDIS_ERRORS):
                await self.flush_unsaved()
            if len(self.outage):
                log.error("Redis still unreachable: %d decisions made meanwhile are lost", len(self.outage))
        await self.own_energy.close()
        if self.learner is not None:
            await self.learner.stop(self.config.server.stop_timeout_s)
        await self.batcher.close()
        if self._owns_embedder:
            await asyncio.to_thread(self.embedder.close)
        self.served.close()
        await self.store.close()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)

    def now(self) -> float:
        """The router's clock (injected in tests): the time decisions, rewards and metered calls are stamped with."""
        return self._clock()

    def list_models(self) -> list[ModelSpec]:
        return list(self.config.models)

    def stats(self) -> Stats:
        policy = self.serving
        energy, energy_source = self.own_energy.figure()
        return Stats(
            policy_version=version_name(policy.version),
            events_learned=policy.learned,
            estimates=dict(policy.estimates),
            embedding_device=self.embedder.device,
            queries_embedded=self.batcher.items,
            embedding_energy=energy,
            embedding_energy_source=energy_source,
        )

    async def route(self, request: RouteInput) -> Decision:
        """Decides from the loaded policy. Redis is not needed to answer: while it is unreachable, the
        decision is kept in memory and written once Redis is back (a retried request_id then cannot be
        recognised, and gets a decision of its own)."""
        candidates = request.validate(self.config.limits, self.config.routable)
        with self.monitor.metrics.route_latency.time():
            if request.request_id:
                scoped = scoped_id(request.tenant, request.request_id)
                try:
                    summary = await self.store.get_summary(scoped)
                except REDIS_ERRORS:
                    summary = self.outage.summary(scoped)
                if summary is not None:
                    return self._replayed(request, summary)
            return await self._decide(request, candidates)

    @staticmethod
    def _replayed(request: RouteInput, summary: Summary) -> Decision:
        request.check_retry(summary.request_digest)
        return dataclasses.replace(summary.decision, replayed=True)

    def _score(
        self,
        request: RouteInput,
        candidates: list[ModelSpec],
        embedded: Embedded,
        policy: Policy,
        weights: tuple[float, float],
    ) -> _Scored:
        """The decision's context, the candidates the budgets leave (and why the others went), their expected
        figures, and each action's penalty at the request's weights."""
        context = self.featurizer.context(request.query, embedded, request.task, policy.clusterer)
        expected = {
            m.id: policy.pricing.expected(m, context.task, embedded.token_count, request.tenant) for m in candidates
        }
        kept, excluded = within_budget(request, candidates, expected, policy.estimates_of(request.tenant))
        choice = Choice(
            context.line(self.config.features.context),
            tuple(action_line(m) for m in kept),
            tuple(penalty(expected[m.id], *weights, self.config.reward) for m in kept),
        )
        return _Scored(choice, kept, excluded, expected, context)

    def _weights(self, request: RouteInput) -> tuple[float, float]:
        defaults = self.config.reward
        return (
            defaults.energy_weight if request.energy_weight is None else request.energy_weight,
            defaults.cost_weight if request.cost_weight is None else request.cost_weight,
        )

    async def _decide(self, request: RouteInput, candidates: list[ModelSpec]) -> Decision:
        decision_id = scoped_id(request.tenant, request.request_id or self._new_id())
        with phase("embedding"):
            embedded = await self.batcher.embed(request.query)
        policy = self.serving
        energy_weight, cost_weight = self._weights(request)
        with phase("decision"):
            choice, candidates, excluded, expected, context = self._score(
                request, candidates, embedded, policy, (energy_weight, cost_weight)
            )
            now = self._clock()
            ids = [m.id for m in candidates]
            rollout = self.config.rollout
            baseline = baseline_of(rollout, request, ids, policy.apprentices.promoted())
            # Apprentice traffic has its baseline already: the control group is drawn from online traffic.
            seed = self.config.policy.seed
            control = None if baseline is not None else control_pmf(rollout, request, ids, decision_id, seed)
            pick, predicted = self.served.run(self._choose, policy, choice, decision_id, now, baseline, control)
        pmf, index = pick.pmf, pick.index
        policy_probability = pick.own_probability
        model = candidates[index]
        decision = Decision(
            decision_id=decision_id,
            model=model.id,
            probability=pmf[index],
            pmf=[(m.id, p) for m, p in zip(candidates, pmf, strict=True)],
            policy_version=version_name(policy.version),
            task=context.task,
            task_source="hint" if request.task else "inferred",
            cluster=context.cluster,
            estimated_cost_usd=expected[model.id].cost_usd,
            estimated_energy_joules=expected[model.id].energy_joules,
            energy_weight=energy_weight,
            cost_weight=cost_weight,
            expires_at=now + self.config.reward.wait_time_s,
            excluded=excluded,
            mode="apprentice" if baseline is not None else "control" if control is not None else "online",
        )
        pending = PendingDecision(
            decision=decision,
            request_digest=request.digest(),
            index=index,
            shared=choice.shared,
            actions=choice.actions,
            penalties=choice.penalties,
            model_spec=model,
            query_tokens=embedded.token_count,
            embedding=encode_embedding(embedded.vector),
            metadata=dict(request.metadata),
            tenant=request.tenant,
            created_at=now,
            baseline=baseline,
            policy_probability=None if baseline is None else policy_probability,
            control_share=rollout.control_share if baseline is None and rollout.control_share > 0 else None,
        )
        with phase("store"):
            existing = await self.writer.save(pending, now)
        if existing is not None:
            # A concurrent Route with the same request_id won the race; answer its decision.
            return self._replayed(request, existing)
        self.monitor.on_route(
            decision_id,
            model.id,
            context.task,
            decision.pmf,
            pmf[index],
            choice,
            request.tenant,
            policy_probability,
            predicted,
        )
        return decision

    def _choose(
        self,
        policy: Policy,
        choice: Choice,
        decision_id: str,
        now: float,
        baseline: int | None,
        control: list[float] | None = None,
    ) -> tuple[Pick, list[float]]:
        """The rule (:func:`bandit_router.policy.rule.decide`) over the policy's qualities and widths, narrowed by
        this router's trials not learned yet, or the ``control`` group's pmf; the trial is counted in flight. Runs
        under the workspace lock. Also returns the qualities it predicted (the reward model of the decision's doubly
        robust estimates)."""
        qualities = policy.qualities(choice)
        if control is not None:
            index = sample_index(control, decision_id, self.config.policy.seed)
            pick = Pick(control, index, control[index])
            self.in_flight.add(policy.model_of(choice.actions[index]), policy.cells(choice.shared), now)
            return pick, qualities
        pick = decide(
            qualities,
            policy.widths(choice, self.in_flight.evidence),
            choice.penalties,
            epsilon=self.config.policy.epsilon,
            key=decision_id,
            seed=self.config.policy.seed,
            baseline=baseline,
            exploration=self.config.rollout.exploration,
        )
        self.in_flight.add(policy.model_of(choice.actions[pick.index]), policy.cells(choice.shared), now)
        return pick, qualities

    async def flush_unsaved(self) -> int:
        """Writes the decisions kept during a Redis outage, oldest first; stops at the first failure."""
        return await self.writer.flush()

    def keep_answered(self, decision_id: str, metered: Metered | None, pin: Pin | None = None) -> None:
        """Keeps what the gateway measured of a decision's model call for the reward wait (its Reward is priced
        from it), and the conversation's pin, both written after the answer has gone (:class:`AfterAnswer`)."""
        self.after_answer.keep(decision_id, metered, pin)

    async def _put_after_answer(self, decision_id: str, metered: Metered | None, pin: Pin | None) -> None:
        await self.store.put_after_answer(decision_id, metered, pin, self.config.reward.wait_time_s)

    async def drop(self, decision_id: str) -> None:
        """Forgets a pending decision unlearned: its call failed for a reason that says nothing about the model as
        a choice (an unreachable or misconfigured backend, a request the backend refused)."""
        try:
            await self.store.drop(decision_id)
        except (*REDIS_ERRORS, ResponseError) as exc:
            log.info("decision %s not dropped (Redis: %s): it expires as an unrewarded one", decision_id, exc)
        self.monitor.on_dropped(decision_id)

    async def reward(self, request: RewardInput) -> RewardOutcome:
        event, cost, energy = await self.rewards.reward(request)
        return RewardOutcome(event.decision_id, event.model, event.reward, cost, energy)

    async def sweep_expired(self) -> int:
        """Expires the decisions whose reward wait has run out (see :class:`Expiry`); returns how many."""
        return await self.expiry.sweep()
