"""The routing service: Route, Reward and ListModels over domain objects, with Redis and the learner."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bandit_router.config import Config, EmbeddingConfig, ModelSpec
from bandit_router.domain.errors import AlreadyExists, FailedPrecondition, NotFound, ResourceExhausted, Unavailable
from bandit_router.domain.pricing import Expected, catalog_cost, catalog_energy, penalty
from bandit_router.domain.requests import BUDGETS, RewardInput, RouteInput
from bandit_router.domain.reward import (
    Figure,
    RunningEstimate,
    Source,
    Tokens,
    cost_of,
    energy_of,
    resolve_tokens,
    scalar_reward,
)
from bandit_router.embedding.embedder import BatchingEmbedder, Embedder, EmbedderPool, TextEmbedder
from bandit_router.energy.attribution import BusyWindows, DecisionEnergy, EnergyAgent, NotCovered, NvmlSource
from bandit_router.learning.learner import Learner, SnapshotFiles, encode_embedding, load_snapshot
from bandit_router.observability.monitor import Monitor
from bandit_router.policy.exploration import InFlight
from bandit_router.policy.features import Choice, Featurizer, action_line
from bandit_router.policy.vw import Policy, Snapshot, SnapshotError, sample_index
from bandit_router.store.embedded import EmbeddedRedis, connect
from bandit_router.store.redis_store import QuotaExceeded, Store, refusing, stop_if_cancelled

log = logging.getLogger(__name__)

REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
SUPERVISE_EVERY_S = 0.2


@dataclasses.dataclass(frozen=True)
class Decision:
    decision_id: str
    model: str
    probability: float
    pmf: list[tuple[str, float]]
    policy_version: str
    task: str
    task_source: str
    cluster: int
    estimated_cost_usd: float
    estimated_energy_joules: float
    energy_weight: float
    cost_weight: float
    expires_at: float
    excluded: list[str] = dataclasses.field(default_factory=list)
    replayed: bool = False


@dataclasses.dataclass(frozen=True)
class Stats:
    policy_version: str
    events_learned: int
    estimates: dict[str, RunningEstimate]
    embedding_device: str
    queries_embedded: int
    embedding_energy: Figure
    # None when the router's energy is not measured (CPU, or no NVML).
    embedding_energy_source: Source | None


@dataclasses.dataclass(frozen=True)
class RewardOutcome:
    decision_id: str
    model: str
    reward: float
    cost: Figure
    energy: Figure


def scoped_id(tenant: str, decision_id: str) -> str:
    """A tenant's decision ids carry its name, so tenants' ids never collide and a Reward from another
    tenant is refused without a lookup."""
    return f"{tenant}.{decision_id}" if tenant else decision_id


def _public(exc: BaseException) -> str:
    """An error's text for a caller: without file system paths (the Redis socket's) that tell it nothing."""
    return re.sub(r"(unix://)?/[^\s:'\"]+", "<path>", str(exc))


def _log_failure(future: asyncio.Future[Any]) -> None:
    if future.exception() is not None:
        log.error("measuring the served policy's drift failed: %r", future.exception())


def _version_name(version: int) -> str:
    return f"v{version}"


class RouterService:
    """One router: embeds, featurises and decides on Route; validates, prices and enqueues on Reward.

    Built with :meth:`open`, which connects Redis (or starts the embedded one), loads the newest
    snapshot and starts the learner; :meth:`close` drains the learner and stops what it started.
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
        self.batcher = BatchingEmbedder(embedder, config.embedding, self._on_batch, embedder.lanes)
        self.featurizer = Featurizer(config.features, embedder.embed, embedder.dimension)
        self.models = config.model_by_id
        self._clock = clock
        self._new_id = new_id
        self.monitor = Monitor(config.dashboard, clock)
        # VW calls of the serving policy run on one thread: the workspace is not thread-safe, and
        # the event loop must never wait on it.
        self._vw = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="policy")
        self.files = SnapshotFiles(config.server.data_path / "snapshots", config.policy.keep_snapshots)
        self.serving: Policy = self._new_policy(None)
        # This router's trials that the served policy has not learned yet (see exploration.InFlight).
        self.in_flight = InFlight(config.reward.wait_time_s)
        self.learner: Learner | None = None
        self._embedded: EmbeddedRedis | None = None
        self._owns_embedder = False
        self.node = config.energy.node_name
        self.energy = DecisionEnergy(
            store.client, config.redis.key_prefix, self.node, config.reward.wait_time_s, config.energy
        )
        self.agent: EnergyAgent | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        # Why the embedded Redis is not serving, while it is being restarted.
        self._redis_problem: str | None = None
        # Set whenever health_problem() may have changed, so health follows a short outage too.
        self.health_changed = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None
        # Decisions made while Redis was unreachable, in order: id -> (summary, pending, time).
        self._unsaved: dict[str, tuple[dict[str, Any], dict[str, Any], float]] = {}
        self.unsaved_dropped = 0
        self._flushing = asyncio.Lock()
        self._agent_stop = asyncio.Event()
        self._agent_task: asyncio.Task[None] | None = None
        self._nvml: NvmlSource | None = None
        # The router's own embedding energy, when it embeds on a GPU.
        self.embedding_energy: BusyWindows | None = None
        if embedder.device.startswith("cuda"):
            self.embedding_energy = BusyWindows(int(embedder.device.partition(":")[2] or 0))

    @classmethod
    async def open(cls, config: Config, embedder: TextEmbedder | None = None, **kwargs: Any) -> RouterService:
        """Opens a router; one given ``embedder`` stays the caller's to close, one it builds is its own."""
        client, embedded = await connect(config.redis.url, config.server.data_path, config.redis.embedded_maxmemory_mb)
        owned = embedder is None
        service: RouterService | None = None
        try:
            if embedder is None:
                kind: Callable[[EmbeddingConfig], TextEmbedder] = (
                    EmbedderPool if config.embedding.processes else Embedder
                )
                embedder = await asyncio.to_thread(kind, config.embedding)
            service = cls(config, Store(client, config.redis.key_prefix), embedder, **kwargs)
            service._embedded = embedded
            service._owns_embedder = owned
            await service.start()
        except BaseException:
            # A start that failed or was cancelled (Ctrl-C while it loads) stops what it started, the
            # embedded Redis last, so that nothing outlives it (a caller's temporary folder then goes safely).
            try:
                if service is not None:
                    await service.close()
                else:
                    await client.aclose()
                    if owned and embedder is not None:
                        await asyncio.to_thread(embedder.close)
            finally:
                if embedded is not None:
                    await asyncio.to_thread(embedded.stop)
            raise
        return service

    def _new_policy(self, snapshot: Snapshot | None) -> Policy:
        return Policy(self.config.policy, self.config.features, self.embedder.dimension, snapshot)

    async def start(self) -> None:
        snapshot = await load_snapshot(self.store, self.files)
        # A store written before the gate existed has no served snapshot: serve the checkpoint.
        served = await load_snapshot(self.store, self.files, served=True) or snapshot
        if served is not None:
            log.info("serving policy %s (%d events learned)", _version_name(served.version), served.learned)
        self.serving = await asyncio.to_thread(self._new_policy, served)
        if self.config.server.learner:
            if snapshot is not None:
                log.info("loaded policy %s (%d events learned)", _version_name(snapshot.version), snapshot.learned)
            learning = await asyncio.to_thread(self._new_policy, snapshot)
            self.learner = Learner(
                self.store,
                learning,
                self.config.policy,
                self.files,
                self._install,
                self._new_policy,
                ewma_alpha=self.config.energy.ewma_alpha,
                log_dir=self.config.server.data_path / "decisions",
                serving=await asyncio.to_thread(self._new_policy, served),
            )
            self.learner.start()
        else:
            self._follower = asyncio.get_running_loop().create_task(self._follow(), name="snapshot-follower")
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(), name="expiry-sweep")
        if self._embedded is not None:
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="redis-supervisor")
        self._watch(self.serving)
        self.batcher.start()
        await self._start_agent()

    async def _follow(self) -> None:
        """A replica's loop: swaps in each snapshot the learner announces; polls in case one was missed."""
        poll = self.config.policy.reload_poll_s
        while True:
            pubsub = self.store.client.pubsub()
            try:
                await pubsub.subscribe(self.store.snapshots_channel)
                await self.reload()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=poll)
                    if message is None or message.get("type") == "message":
                        await self.reload()
            except REDIS_ERRORS as exc:
                stop_if_cancelled(exc)
                log.warning("snapshot follower lost Redis (%s); retrying in 1 s", exc)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(*REDIS_ERRORS):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def reload(self) -> bool:
        """Swaps in the served snapshot if it is newer than the one in use."""
        raw = await self.store.load_served()
        if raw is None:
            return False
        try:
            snapshot = Snapshot.decode(raw)
        except SnapshotError as exc:
            log.warning("served snapshot in Redis is unusable (%s); keeping %s", exc, self.policy_version)
            return False
        if snapshot.version <= self.serving.version:
            return False
        try:
            policy = await asyncio.to_thread(self._new_policy, snapshot)
        except Exception:  # the replica keeps serving, and following: the next announcement or poll retries
            log.exception("could not load served policy v%d; keeping %s", snapshot.version, self.policy_version)
            return False
        self._install(policy)
        log.info("now serving policy %s", self.policy_version)
        return True

    async def _supervise(self) -> None:
        """Restarts the embedded Redis when it dies, on the same socket and append-only file; health says
        NOT_SERVING meanwhile. Clients reconnect by themselves."""
        embedded = self._embedded
        assert embedded is not None
        while True:
            await asyncio.sleep(SUPERVISE_EVERY_S)
            if embedded.alive():
                continue
            self._redis_problem = "the embedded Redis died; restarting it"
            self.health_changed.set()
            log.error("embedded Redis died; restarting it on %s", embedded.url)
            while not embedded.alive():
                try:
                    embedded.spawn()  # on the loop's thread, which the server lives no longer than
                    await asyncio.to_thread(embedded.wait_ready)
                    embedded.restarts += 1
                except Exception as exc:  # any failure is retried; health says why meanwhile
                    stop_if_cancelled(exc)
                    self._redis_problem = f"the embedded Redis died and does not start again: {exc}"
                    log.error("%s; retrying in 1 s", self._redis_problem)
                    await asyncio.sleep(1.0)
            log.info("embedded Redis is back (pid %s)", embedded.pid)
            self._redis_problem = None
            self.health_changed.set()

    def health_problem(self) -> str | None:
        """Why this router cannot do its whole job now (health is NOT_SERVING meanwhile); None when it can."""
        if self._redis_problem is not None:
            return self._redis_problem
        if self.learner is not None and self.learner.problem is not None:
            return self.learner.problem
        return None

    def local_gpus(self) -> list[int]:
        """GPUs of this node that the catalog places models on, or that embed queries."""
        gpus = {g for m in self.config.models if (m.node or self.node) == self.node for g in m.gpus}
        if self.embedding_energy is not None:
            gpus.add(self.embedding_energy.gpu)
        return sorted(gpus)

    async def _start_agent(self) -> None:
        gpus = self.local_gpus()
        if not self.config.energy.measure or not gpus:
            return
        self._nvml = await asyncio.to_thread(NvmlSource.open, gpus)
        if self._nvml is None:
            return
        self.agent = EnergyAgent(
            self._nvml,
            self.store.client,
            self.config.redis.key_prefix,
            self.node,
            self.config.energy.sample_interval_s,
            retention_s=self.config.reward.wait_time_s + 60,
            wrap_joules=NvmlSource.WRAP_JOULES,
            on_sample=self._on_sample,
        )
        self._agent_task = asyncio.get_running_loop().create_task(self.agent.run(self._agent_stop), name="energy-agent")

    def _on_batch(self, start: float, end: float, items: int) -> None:
        if self.embedding_energy is not None:
            self.embedding_energy.add_window(start, end, items)

    def _on_sample(self, t: float, totals: dict[int, float]) -> None:
        if self.embedding_energy is not None and self.embedding_energy.gpu in totals:
            self.embedding_energy.add_sample(t, totals[self.embedding_energy.gpu])

    def _install(self, policy: Policy) -> None:
        # A reference swap: a Route already predicting keeps the policy it started with.
        self.in_flight.learned(policy.learned - self.serving.learned)
        self.serving = policy
        self._watch(policy)

    def _watch(self, policy: Policy) -> None:
        """Measures the served policy's drift on the policy thread, which owns the serving policies."""
        future = asyncio.get_running_loop().run_in_executor(
            self._vw, self.monitor.on_policy, policy, _version_name(policy.version)
        )
        future.add_done_callback(_log_failure)

    async def learner_lag(self) -> int:
        """Reward events in the stream not yet in a persisted snapshot (the learner trims the rest)."""
        try:
            return int(await self.store.client.xlen(self.store.events_key))
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
        if self.learner is not None:
            m.promotions.set(self.learner.promotions)
            m.rejections.set(self.learner.rejections)

    @property
    def policy_version(self) -> str:
        return _version_name(self.serving.version)

    async def close(self) -> None:
        for task in (self._supervisor, self._sweeper, self._follower):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._unsaved:
            with contextlib.suppress(*REDIS_ERRORS):
                await self.flush_unsaved()
            if self._unsaved:
                log.error("Redis still unreachable: %d decisions made meanwhile are lost", len(self._unsaved))
        if self._agent_task is not None:
            self._agent_stop.set()
            await self._agent_task
        if self._nvml is not None:
            self._nvml.close()
        if self.learner is not None:
            await self.learner.stop(self.config.server.stop_timeout_s)
        await self.batcher.close()
        if self._owns_embedder:
            await asyncio.to_thread(self.embedder.close)
        self._vw.shutdown(wait=True)
        await self.store.client.aclose()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)

    def list_models(self) -> list[ModelSpec]:
        return list(self.config.models)

    def stats(self) -> Stats:
        policy = self.serving
        if self.embedding_energy is None:
            energy = Figure(0.0, Source.ESTIMATED, f"not measured: the router embeds on {self.embedder.device}")
            energy_source = None
        elif self.agent is None:
            energy = Figure(0.0, Source.ESTIMATED, "not measured: NVML is unavailable on this host")
            energy_source = None
        else:
            meter = self.embedding_energy
            energy = Figure(
                meter.joules,
                Source.MEASURED,
                f"NVML energy of GPU {meter.gpu} over the embedding batches of {meter.items} queries, idle power "
                f"included; {meter.unmeasured_items} more queries not yet or not covered by samples",
            )
            energy_source = Source.MEASURED
        return Stats(
            policy_version=_version_name(policy.version),
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
        candidates = request.validate(self.config.limits, self.config.models)
        with self.monitor.metrics.route_latency.time():
            if request.request_id:
                scoped = scoped_id(request.tenant, request.request_id)
                try:
                    summary = await self.store.get_summary(scoped)
                except REDIS_ERRORS:
                    summary = self._unsaved.get(scoped, (None, None, 0.0))[0]
                if summary is not None:
                    summary = dict(summary)
                    request.check_retry(summary.pop("request_digest", None))
                    return Decision(**{**summary, "replayed": True})
            return await self._decide(request, candidates)

    async def _decide(self, request: RouteInput, candidates: list[ModelSpec]) -> Decision:
        decision_id = scoped_id(request.tenant, request.request_id or self._new_id())
        embedded = await self.batcher.embed(request.query)
        policy = self.serving
        context = self.featurizer.context(request.query, embedded, request.task, policy.clusterer)
        expected = {
            m.id: policy.pricing.expected(m, context.task, embedded.token_count, request.tenant) for m in candidates
        }
        candidates, excluded = self._within_budget(request, candidates, expected, policy)
        defaults = self.config.reward
        energy_weight = defaults.energy_weight if request.energy_weight is None else request.energy_weight
        cost_weight = defaults.cost_weight if request.cost_weight is None else request.cost_weight
        choice = Choice(
            context.line(self.config.features.context),
            tuple(action_line(m) for m in candidates),
            tuple(penalty(expected[m.id], energy_weight, cost_weight, defaults) for m in candidates),
        )
        now = self._clock()
        pmf, index = await asyncio.get_running_loop().run_in_executor(
            self._vw, self._choose, policy, choice, decision_id, now
        )
        model = candidates[index]
        decision = Decision(
            decision_id=decision_id,
            model=model.id,
            probability=pmf[index],
            pmf=[(m.id, p) for m, p in zip(candidates, pmf, strict=True)],
            policy_version=_version_name(policy.version),
            task=context.task,
            task_source="hint" if request.task else "inferred",
            cluster=context.cluster,
            estimated_cost_usd=expected[model.id].cost_usd,
            estimated_energy_joules=expected[model.id].energy_joules,
            energy_weight=energy_weight,
            cost_weight=cost_weight,
            expires_at=now + defaults.wait_time_s,
            excluded=excluded,
        )
        summary = {**dataclasses.asdict(decision), "request_digest": request.digest()}
        del summary["replayed"]
        pending = {
            **summary,
            "index": index,
            "shared": choice.shared,
            "actions": list(choice.actions),
            "penalties": list(choice.penalties),
            "model_spec": dataclasses.asdict(model),
            "query_tokens": embedded.token_count,
            "embedding": encode_embedding(embedded.vector),
            "metadata": dict(request.metadata),
            "tenant": request.tenant,
            "created_at": now,
        }
        try:
            existing = await self._put(decision_id, summary, pending, now, self.config.limits.max_pending_per_tenant)
        except QuotaExceeded as exc:
            who = f"tenant {request.tenant!r}" if request.tenant else "this router's one tenant"
            raise ResourceExhausted(
                f"{who} has {exc.held} decisions waiting for a reward, limits.max_pending_per_tenant = "
                f"{self.config.limits.max_pending_per_tenant}: reward them (or let them expire) first"
            ) from None
        except (*REDIS_ERRORS, ResponseError) as exc:
            if isinstance(exc, ResponseError) and not refusing(exc):
                raise
            self._keep_unsaved(decision_id, summary, pending, now, exc)
            self.monitor.on_route(decision_id, model.id, context.task, decision.pmf, pmf[index], choice, request.tenant)
            return decision
        if existing is not None:
            # A concurrent Route with the same request_id won the race; answer its decision.
            request.check_retry(existing.pop("request_digest", None))
            return Decision(**{**existing, "replayed": True})
        try:
            await self.energy.take_off(decision_id, model, now)
        except REDIS_ERRORS as exc:  # its energy will be estimated
            log.warning("could not record the energy flight of %s: %s", decision_id, exc)
        self.monitor.on_route(decision_id, model.id, context.task, decision.pmf, pmf[index], choice, request.tenant)
        return decision

    def _choose(self, policy: Policy, choice: Choice, decision_id: str, now: float) -> tuple[list[float], int]:
        """The pmf (narrowed by this router's trials not learned yet), the action drawn from it for this
        decision id, and that trial counted in flight. Runs on the policy thread."""
        pmf = policy.pmf(choice, self.in_flight.evidence)
        index = sample_index(pmf, decision_id, self.config.policy.seed)
        self.in_flight.add(policy.model_of(choice.actions[index]), policy.cells(choice.shared), now)
        return pmf, index

    async def _put(
        self, decision_id: str, summary: dict[str, Any], pending: dict[str, Any], now: float, quota: int = 0
    ) -> dict[str, Any] | None:
        defaults = self.config.reward
        return await self.store.put_decision(
            decision_id,
            summary,
            pending,
            defaults.wait_time_s,
            defaults.retention_s,
            now,
            grace_s=max(60.0, 10 * defaults.expiry_sweep_s),
            tenant=str(pending.get("tenant", "")),
            quota=quota,
        )

    def _keep_unsaved(
        self, decision_id: str, summary: dict[str, Any], pending: dict[str, Any], now: float, exc: Exception
    ) -> None:
        if not self._unsaved:
            log.warning("Redis is unreachable (%s): keeping decisions in memory until it is back", exc)
        if len(self._unsaved) >= self.config.redis.outage_buffer:
            oldest = next(iter(self._unsaved))
            del self._unsaved[oldest]
            self.unsaved_dropped += 1
            log.error("outage buffer full: decision %s dropped; its reward will be NOT_FOUND", oldest)
        if self.config.redis.outage_buffer > 0:
            self._unsaved[decision_id] = (summary, pending, now)

    async def flush_unsaved(self) -> int:
        """Writes the decisions kept during a Redis outage, oldest first; stops at the first failure."""
        written = 0
        # One flush at a time (the sweep and a Reward may both start one); the write is idempotent anyway.
        async with self._flushing:
            while self._unsaved:
                decision_id, (summary, pending, now) = next(iter(self._unsaved.items()))
                await self._put(decision_id, summary, pending, now)
                self._unsaved.pop(decision_id, None)
                written += 1
        if written:
            log.info("Redis is back: wrote %d decisions kept in memory", written)
        return written

    def _within_budget(
        self, request: RouteInput, candidates: list[ModelSpec], expected: dict[str, Expected], policy: Policy
    ) -> tuple[list[ModelSpec], list[str]]:
        """Drops the candidates whose expected cost or energy for this query (observed, or before any observation
        the catalog's) or running latency breaks a budget. A model with no observed latency is kept: it could
        never be observed otherwise."""
        limits = {name: getattr(request, name) for name in BUDGETS if getattr(request, name) is not None}
        if not limits:
            return candidates, []
        kept: list[ModelSpec] = []
        excluded: list[str] = []
        by_budget: dict[str, list[str]] = {name: [] for name in limits}
        for model in candidates:
            seen = policy.estimates_of(request.tenant).get(model.id)
            figure = expected[model.id]
            source = "observed" if figure.observed else "catalog"
            figures = {
                "max_cost_usd": (figure.cost_usd, source),
                # A model whose energy is unknown cannot be shown to fit an energy budget.
                "max_energy_joules": (figure.energy_joules, source) if figure.energy_known else (None, "unknown"),
                "max_latency_ms": (seen.latency_ms, "observed") if seen and seen.latency_observations else None,
            }
            broken = []
            for name, limit in limits.items():
                found = figures[name]
                if found is None:
                    continue
                value, where = found
                if value is None or value > limit:
                    broken.append(
                        f"{name}={limit:g} (energy unknown)"
                        if value is None
                        else f"{name}={limit:g} ({where} {value:.6g})"
                    )
                    by_budget[name].append(
                        f"{model.id} (" + ("energy unknown" if value is None else f"{value:.6g}") + ")"
                    )
            if broken:
                excluded.append(f"{model.id}: " + ", ".join(broken))
            else:
                kept.append(model)
        if not kept:
            reasons = "; ".join(
                f"{name}={limits[name]:g} excludes {', '.join(ids)}" for name, ids in by_budget.items() if ids
            )
            raise FailedPrecondition(f"budget: no candidate fits: {reasons}")
        return kept, excluded

    async def reward(self, request: RewardInput) -> RewardOutcome:
        quality = request.validate(self.config.limits)
        try:
            with self.monitor.metrics.reward_latency.time():
                return await self._reward(request, quality)
        except REDIS_ERRORS as exc:
            raise Unavailable(f"Redis is unreachable, retry: {_public(exc)}") from exc
        except ResponseError as exc:
            if not refusing(exc):
                raise
            raise Unavailable(f"Redis refuses writes for now, retry: {_public(exc)}") from exc

    async def _missing(self, decision_id: str) -> Exception:
        """Says why a decision is not pending: already rewarded, expired, or never made."""
        if await self.store.was_rewarded(decision_id):
            return AlreadyExists(f"decision_id {decision_id!r} was already rewarded; the first reward counts")
        summary = await self.store.get_summary(decision_id)
        if summary is not None:
            expired = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(summary["expires_at"]))
            return NotFound(
                f"decision_id {decision_id!r} expired at {expired} "
                f"(rewards are accepted for {self.config.reward.wait_time_s:g} s after Route)"
            )
        return self._unknown(decision_id)

    def _unknown(self, decision_id: str) -> NotFound:
        retention = self.config.reward.retention_s
        return NotFound(
            f"decision_id {decision_id!r} is unknown: no Route made it, or it expired over {retention:g} s ago"
        )

    async def _reward(self, request: RewardInput, quality: float) -> RewardOutcome:
        if request.tenant and not request.decision_id.startswith(request.tenant + "."):
            # Another tenant's decision, or none: the same answer either way, so nothing is revealed.
            raise self._unknown(request.decision_id)
        if request.decision_id in self._unsaved:
            # Made while Redis was down; write it (and those before it) first, or answer UNAVAILABLE.
            await self.flush_unsaved()
        pending = await self.store.get_pending(request.decision_id)
        if pending is None:
            raise await self._missing(request.decision_id)
        model = self.models.get(pending["model"]) or ModelSpec(**pending["model_spec"])
        tokens = resolve_tokens(model, request.input_tokens, request.output_tokens, int(pending["query_tokens"]))
        request.check_plausible(self.config.models, tokens, self.config.limits.max_report_ratio)
        cost = cost_of(model, request.cost_usd, tokens)
        now = self._clock()
        measured: Figure | None = None
        unmeasured = ""
        try:
            landed = await self.energy.land(request.decision_id, model, float(pending["created_at"]), now)
            measured = Figure(landed.joules, Source.MEASURED, landed.basis)
        except NotCovered as exc:
            unmeasured = str(exc)
        energy = energy_of(model, request.energy_joules, tokens, measured, unmeasured)
        event = self._event(pending, model, quality, tokens, request.latency_ms, cost, energy, now)
        taken = await self.store.take_and_append(
            request.decision_id, event, now, self.config.reward.retention_s, request.tenant
        )
        if taken.status == "rewarded":
            raise AlreadyExists(f"decision_id {request.decision_id!r} was already rewarded; the first reward counts")
        if taken.status == "gone":
            raise await self._missing(request.decision_id)
        self.monitor.on_reward(request.decision_id, event, request.tenant)
        return RewardOutcome(request.decision_id, model.id, float(event["reward"]), cost, energy)

    def _event(
        self,
        pending: dict[str, Any],
        model: ModelSpec,
        quality: float,
        tokens: Tokens,
        latency_ms: float,
        cost: Figure,
        energy: Figure,
        now: float,
    ) -> dict[str, Any]:
        """The learning event of a decision: its context and the reward made of quality, cost and energy."""
        value = scalar_reward(
            quality, energy.value, cost.value, pending["energy_weight"], pending["cost_weight"], self.config.reward
        )
        return {
            **{
                k: pending[k]
                for k in (
                    "decision_id",
                    "model",
                    "index",
                    "probability",
                    "pmf",
                    "shared",
                    "actions",
                    "embedding",
                    "policy_version",
                    "task",
                    "cluster",
                    "energy_weight",
                    "cost_weight",
                    "created_at",
                )
            },
            # Whose reward it is: the learner prices the models for that tenant from it alone.
            "tenant": pending.get("tenant", ""),
            # A decision pending since before penalties were logged had none (every weight 0 was then learned).
            "penalties": pending.get("penalties", [0.0] * len(pending["actions"])),
            "reward": value,
            "quality": quality,
            "input_tokens": tokens.input,
            "output_tokens": tokens.output,
            "output_tokens_reported": tokens.output_reported,
            "latency_ms": latency_ms,
            "cost_usd": cost.value,
            "cost_source": cost.source.value,
            # The catalog's figures at these tokens: the learner learns how far reality is from them.
            "catalog_cost_usd": catalog_cost(model, tokens.input, tokens.output),
            "energy_joules": energy.value,
            "energy_source": energy.source.value,
            "catalog_energy_joules": catalog_energy(model, tokens.input, tokens.output),
            "rewarded_at": now,
        }

    async def sweep_expired(self) -> int:
        """Expires the decisions whose reward wait has run out: learns each with the default reward or
        drops it (``reward.on_expiry``). Atomic against Reward: a decision is rewarded or expired, not both.
        Any replica may sweep; each decision expires once. Returns how many expired."""
        now = self._clock()
        expired = 0
        # In batches until none is due (each expiry takes its id off the deadlines), so that the deadlines
        # cannot pile up at any routing rate.
        while batch := await self.store.due(now):
            expired += await self._expire_batch(batch, now)
        return expired

    async def _expire_batch(self, batch: list[str], now: float) -> int:
        defaults = self.config.reward
        expired = 0
        for decision_id in batch:
            event = None
            pending = await self.store.get_pending(decision_id)
            if pending is not None and defaults.on_expiry == "default":
                model = self.models.get(pending["model"]) or ModelSpec(**pending["model_spec"])
                tokens = resolve_tokens(model, 0, 0, int(pending["query_tokens"]))
                why = f"never rewarded within {defaults.wait_time_s:g} s: default reward"
                event = self._event(
                    pending,
                    model,
                    defaults.default_quality,
                    tokens,
                    0.0,
                    cost_of(model, None, tokens),
                    energy_of(model, None, tokens, None, why),
                    now,
                )
                event["expired"] = True
            if await self.store.expire(decision_id, now, event) is not None:
                expired += 1
                self.monitor.on_expired(decision_id)
        return expired

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.reward.expiry_sweep_s)
            try:
                await self.flush_unsaved()
                await self.sweep_expired()
            except REDIS_ERRORS as exc:
                stop_if_cancelled(exc)
                log.warning("expiry sweep: Redis unreachable (%s); retrying", exc)
            except Exception as exc:  # one bad decision must not end the sweeps of every later one
                stop_if_cancelled(exc)
                log.exception("expiry sweep failed; the next sweep retries")
