"""The routing service: Route, Reward and ListModels over domain objects, with Redis and the learner."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bandit_router.config import Config, ModelSpec
from bandit_router.embedding import BatchingEmbedder, Embedder
from bandit_router.errors import AlreadyExists, NotFound, Unavailable
from bandit_router.features import Complexity, Context, Projector, TaskInferrer, action_line
from bandit_router.learner import Learner, SnapshotFiles, encode_embedding
from bandit_router.policy import Policy, Snapshot, SnapshotError, sample_index
from bandit_router.redis_server import EmbeddedRedis
from bandit_router.requests import RewardInput, RouteInput
from bandit_router.reward import Figure, cost_of, energy_of, resolve_tokens, scalar_reward
from bandit_router.store import Store

log = logging.getLogger(__name__)

REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


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
    replayed: bool = False


@dataclasses.dataclass(frozen=True)
class RewardOutcome:
    decision_id: str
    model: str
    reward: float
    cost: Figure
    energy: Figure


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
        embedder: Embedder,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.config = config
        self.store = store
        self.embedder = embedder
        self.batcher = BatchingEmbedder(embedder, config.embedding)
        self.inferrer = TaskInferrer(embedder.embed)
        self.projector = Projector(config.features, embedder.dimension)
        self.models = config.model_by_id
        self._clock = clock
        self._new_id = new_id
        # VW calls of the serving policy run on one thread: the workspace is not thread-safe, and
        # the event loop must never wait on it.
        self._vw = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="policy")
        self.files = SnapshotFiles(config.server.data_path / "snapshots", config.policy.keep_snapshots)
        self.serving: Policy = self._new_policy(None)
        self.learner: Learner | None = None
        self._embedded: EmbeddedRedis | None = None

    @classmethod
    async def open(cls, config: Config, embedder: Embedder | None = None, **kwargs: Any) -> RouterService:
        embedded = None
        url = config.redis.url
        if not url:
            embedded = EmbeddedRedis(config.server.data_path / "redis")
            url = await asyncio.to_thread(embedded.start)
        client = aioredis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
        if embedder is None:
            embedder = await asyncio.to_thread(Embedder, config.embedding)
        service = cls(config, Store(client, config.redis.key_prefix), embedder, **kwargs)
        service._embedded = embedded
        await service.start()
        return service

    def _new_policy(self, snapshot: Snapshot | None) -> Policy:
        return Policy(self.config.policy.vw_args, self.config.features, self.embedder.dimension, snapshot)

    async def _load_snapshot(self) -> Snapshot | None:
        """The newer of Redis's and the disk's snapshots; a corrupt one is skipped."""
        candidates: list[Snapshot] = []
        raw = await self.store.load_snapshot()
        if raw is not None:
            try:
                candidates.append(Snapshot.decode(raw))
            except SnapshotError as exc:
                log.warning("snapshot in Redis is unusable (%s); trying the disk", exc)
        on_disk = await asyncio.to_thread(self.files.newest)
        if on_disk is not None:
            candidates.append(on_disk)
        return max(candidates, key=lambda s: s.version, default=None)

    async def start(self) -> None:
        snapshot = await self._load_snapshot()
        if snapshot is not None:
            log.info("loaded policy %s (%d events learned)", _version_name(snapshot.version), snapshot.learned)
        self.serving = await asyncio.to_thread(self._new_policy, snapshot)
        learning = await asyncio.to_thread(self._new_policy, snapshot)
        self.learner = Learner(self.store, learning, self.config.policy, self.files, self._install, self._new_policy)
        self.learner.start()
        self.batcher.start()

    def _install(self, policy: Policy) -> None:
        # A reference swap: a Route already predicting keeps the policy it started with.
        self.serving = policy

    @property
    def policy_version(self) -> str:
        return _version_name(self.serving.version)

    async def close(self) -> None:
        if self.learner is not None:
            await self.learner.stop()
        await self.batcher.close()
        self._vw.shutdown(wait=True)
        await self.store.client.aclose()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)

    def list_models(self) -> list[ModelSpec]:
        return list(self.config.models)

    async def route(self, request: RouteInput) -> Decision:
        candidates = request.validate(self.config.limits, self.config.models)
        try:
            if request.request_id:
                summary = await self.store.get_summary(request.request_id)
                if summary is not None:
                    return Decision(**{**summary, "replayed": True})
            return await self._decide(request, candidates)
        except REDIS_ERRORS as exc:
            raise Unavailable(f"Redis is unreachable, retry: {exc}") from exc

    async def _decide(self, request: RouteInput, candidates: list[ModelSpec]) -> Decision:
        decision_id = request.request_id or self._new_id()
        embedded = await self.batcher.embed(request.query)
        policy = self.serving
        defaults = self.config.reward
        energy_weight = defaults.energy_weight if request.energy_weight is None else request.energy_weight
        cost_weight = defaults.cost_weight if request.cost_weight is None else request.cost_weight
        task = request.task.lower() if request.task else self.inferrer.infer(embedded.vector)
        context = Context(
            task=task,
            cluster=policy.clusterer.assign(embedded.vector),
            complexity=Complexity.of(request.query, embedded.token_count),
            energy_weight=energy_weight,
            cost_weight=cost_weight,
            projection=self.projector.vw_features(embedded.vector) if self.config.features.projection_dim else "",
        )
        shared = context.shared_line()
        actions = [action_line(m) for m in candidates]
        pmf = await asyncio.get_running_loop().run_in_executor(self._vw, policy.pmf, shared, actions)
        index = sample_index(pmf, decision_id, self.config.policy.seed)
        model = candidates[index]
        tokens = resolve_tokens(model, 0, 0, embedded.token_count)
        now = self._clock()
        decision = Decision(
            decision_id=decision_id,
            model=model.id,
            probability=pmf[index],
            pmf=[(m.id, p) for m, p in zip(candidates, pmf, strict=True)],
            policy_version=_version_name(policy.version),
            task=task,
            task_source="hint" if request.task else "inferred",
            cluster=context.cluster,
            estimated_cost_usd=cost_of(model, None, tokens).value,
            estimated_energy_joules=energy_of(model, None, tokens).value,
            energy_weight=energy_weight,
            cost_weight=cost_weight,
            expires_at=now + defaults.wait_time_s,
        )
        summary = dataclasses.asdict(decision)
        del summary["replayed"]
        pending = {
            **summary,
            "index": index,
            "shared": shared,
            "actions": actions,
            "model_spec": dataclasses.asdict(model),
            "query_tokens": embedded.token_count,
            "embedding": encode_embedding(embedded.vector),
            "metadata": dict(request.metadata),
            "created_at": now,
        }
        existing = await self.store.put_decision(
            decision_id, summary, pending, defaults.wait_time_s, defaults.retention_s
        )
        if existing is not None:
            # A concurrent Route with the same request_id won the race; answer its decision.
            return Decision(**{**existing, "replayed": True})
        return decision

    async def reward(self, request: RewardInput) -> RewardOutcome:
        quality = request.validate(self.config.limits)
        try:
            return await self._reward(request, quality)
        except REDIS_ERRORS as exc:
            raise Unavailable(f"Redis is unreachable, retry: {exc}") from exc

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
        retention = self.config.reward.retention_s
        return NotFound(
            f"decision_id {decision_id!r} is unknown: no Route made it, or it expired over {retention:g} s ago"
        )

    async def _reward(self, request: RewardInput, quality: float) -> RewardOutcome:
        pending = await self.store.get_pending(request.decision_id)
        if pending is None:
            raise await self._missing(request.decision_id)
        model = self.models.get(pending["model"]) or ModelSpec(**pending["model_spec"])
        tokens = resolve_tokens(model, request.input_tokens, request.output_tokens, int(pending["query_tokens"]))
        cost = cost_of(model, request.cost_usd, tokens)
        energy = energy_of(model, request.energy_joules, tokens)
        value = scalar_reward(
            quality, energy.value, cost.value, pending["energy_weight"], pending["cost_weight"], self.config.reward
        )
        now = self._clock()
        event = {
            **{
                k: pending[k]
                for k in (
                    "decision_id",
                    "model",
                    "index",
                    "probability",
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
            "reward": value,
            "quality": quality,
            "input_tokens": tokens.input,
            "output_tokens": tokens.output,
            "latency_ms": request.latency_ms,
            "cost_usd": cost.value,
            "cost_source": cost.source.value,
            "energy_joules": energy.value,
            "energy_source": energy.source.value,
            "rewarded_at": now,
        }
        taken = await self.store.take_and_append(request.decision_id, event, now, self.config.reward.retention_s)
        if taken.status == "rewarded":
            raise AlreadyExists(f"decision_id {request.decision_id!r} was already rewarded; the first reward counts")
        if taken.status == "gone":
            raise await self._missing(request.decision_id)
        return RewardOutcome(request.decision_id, model.id, value, cost, energy)
