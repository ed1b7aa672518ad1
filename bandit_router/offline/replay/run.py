"""Replays traffic through a real router (in-process gRPC server, embedded Redis) and the baselines."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from bandit_router.config import Config
from bandit_router.embedding.backends import load_embedder
from bandit_router.embedding.cache import CachingEmbedder
from bandit_router.embedding.types import TextEmbedder
from bandit_router.learning.warm_start import publish, warm
from bandit_router.offline.replay.cadence import Cadence, Op, VirtualClock
from bandit_router.offline.replay.client import route_all
from bandit_router.offline.replay.compare import baseline_features, replay_baselines
from bandit_router.offline.replay.settings import ReplaySettings
from bandit_router.policy.features import Featurizer
from bandit_router.policy.vw import Policy
from bandit_router.runtime.process import RouterProcess
from bandit_router.runtime.root import open_router
from bandit_router.serving.router import RouterService
from bandit_router.store.snapshots import SnapshotFiles
from bandit_router.traffic.format import Record, arm_catalog, batched, timestamps_of
from bandit_router.traffic.table import OutcomeTable, Trace, build_table, churn

log = logging.getLogger(__name__)

BANDIT = "bandit-router"
# Energy weight = cost weight at each point of a --sweep.
SWEEP_WEIGHTS = (0.0, 0.1, 0.3, 1.0, 3.0)
FORMULA = "quality - energy_weight * energy_joules / energy_scale_joules - cost_weight * cost_usd / cost_scale_usd"
ENERGY_BASIS = (
    "where the traffic has no energy: the catalog's profiles from ML.ENERGY (Chung et al., NeurIPS 2025 D&B), "
    "J per input and output token by model size on H100, times the record's tokens (or estimated tokens)"
)


@dataclasses.dataclass(frozen=True)
class _Prepared:
    """What a replay computes before its router starts: every embedding once, the featurizer, the warm start."""

    embedded: list[Any]
    warm_embedded: list[Any]
    featurizer: Featurizer
    warm_result: Any


async def replay(
    records: list[Record],
    base: Config,
    settings: ReplaySettings,
    embedder: TextEmbedder | None = None,
    show_progress: bool = True,
    on_start: Callable[[RouterProcess], None] | None = None,
    hold: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Runs the bandit through a real service and the baselines on the same stream; returns the report.

    Every query is embedded once (the embedder is wrapped in a cache by text) and the same vector serves the
    router and the baselines. ``on_start`` is shown the running server (and its dashboard); ``hold``, awaited
    with the report, keeps the service and its dashboard up until it returns."""
    records = settings.scenario.stream(records, settings.seed)
    warm_records = list(settings.warm_start.records) if settings.warm_start is not None else []
    if embedder is None:
        embedder = await asyncio.to_thread(load_embedder, base.embedding)
    cache = embedder if isinstance(embedder, CachingEmbedder) else CachingEmbedder(embedder)
    clock = VirtualClock()
    with tempfile.TemporaryDirectory(prefix="br-replay-") as data_dir:
        config = _replay_config(base, records, settings, data_dir)
        prepared = await _prepare(config, settings, cache, records, warm_records)
        service = await open_router(_learner_driven(config), embedder=cache, clock=clock)
        try:
            server = RouterProcess(service, "127.0.0.1:0")
        except BaseException:
            await service.close()
            raise
        try:
            await server.start()
            if on_start is not None:
                on_start(server)
            result = await _route_and_compare(
                server, config, settings, (records, warm_records), prepared, clock, show_progress
            )
            clock.release()
            if hold is not None:
                await hold(result)
        finally:
            await server.stop(1.0)
    return result


async def _prepare(
    config: Config, settings: ReplaySettings, cache: CachingEmbedder, records: list[Record], warm_records: list[Record]
) -> _Prepared:
    embedded = await _embed_all(cache, [r.query for r in [*warm_records, *records]])
    featurizer = await asyncio.to_thread(Featurizer, config.features, cache.embed, cache.dimension)
    warm_result = None
    if settings.warm_start is not None:
        warm_result = await _warm_start(config, settings, cache, featurizer, settings.warm_start)
    return _Prepared(embedded[len(warm_records) :], embedded[: len(warm_records)], featurizer, warm_result)


class _Driver:
    """Sets the router's clock to the schedule's time, and has its learner serve a snapshot where the live one would."""

    def __init__(self, service: RouterService, clock: VirtualClock) -> None:
        assert service.learner is not None
        self.learner = service.learner
        self.clock = clock
        # Events learned before the first reward (a warm start's).
        self.base = self.learner.policy.learned

    def set(self, at: float) -> None:
        self.clock.set(at)

    async def publish(self, rewards: int) -> None:
        await self.learner.publish_through(self.base + rewards, timeout=300)


async def _route_and_compare(
    server: RouterProcess,
    config: Config,
    settings: ReplaySettings,
    streams: tuple[list[Record], list[Record]],
    prepared: _Prepared,
    clock: VirtualClock,
    show_progress: bool,
) -> dict[str, Any]:
    """Routes the stream through the running router on the schedule, then runs the baselines on the same stream and
    schedule, and returns the report."""
    records, warm_records = streams
    service = server.service
    dropped = settings.scenario.dropped(len(records), settings.seed)
    table = build_table(records, config, [e.token_count for e in prepared.embedded], settings.scenario)
    cadence = Cadence(settings.rate, settings.answer_s, config.policy.snapshot_every_events,
                      config.policy.snapshot_interval_s)  # fmt: skip
    timestamps = timestamps_of(records)
    schedule = cadence.schedule(len(records), dropped, settings.scenario.reward_delay, timestamps)
    started = time.perf_counter()
    bandit, energy_sources, cost_sources = await route_all(
        server.address, records, table, settings, schedule, _Driver(service, clock), show_progress
    )
    log.info("replayed %d queries in %.1f s of wall time", len(records), time.perf_counter() - started)
    baselines, grid = _baselines(
        config,
        settings,
        prepared.featurizer,
        table,
        schedule,
        (records, prepared.embedded),
        (warm_records, prepared.warm_embedded),
    )
    result = make_report(
        {BANDIT: bandit, **baselines},
        table,
        config,
        settings,
        cadence.to_json(schedule, timestamps is not None),
        energy_sources,
        cost_sources,
        service.policy_version,
    )
    result.update(_provenance(grid, records, prepared.warm_result, warm_records))
    if config.rollout.control_share > 0:
        # What the dashboard's headline tile measured live: the routed arm against the randomised control.
        result["control"] = {
            "share": config.rollout.control_share,
            "baseline": config.rollout.control,
            **service.control_view(),
        }
    return result


async def _embed_all(cache: CachingEmbedder, queries: list[str]) -> list[Any]:
    """Every query's embedding, in batches off the event loop (each embedded once: the cache keeps them)."""
    embedded: list[Any] = []
    for chunk in batched(queries, 64):
        embedded.extend(await asyncio.to_thread(cache.embed, list(chunk)))
    return embedded


async def _warm_start(
    config: Config, settings: ReplaySettings, cache: CachingEmbedder, featurizer: Featurizer, source: Any
) -> Any:
    """Fits a policy from ``source`` and publishes it where the replayed router loads its snapshots."""
    policy = Policy.of(config, cache.dimension)
    result = await asyncio.to_thread(
        warm, policy, None, source, cache, featurizer, config, settings.task_hint, settings.seed
    )
    files = SnapshotFiles.of(config)
    await publish(result, files, None)
    return result


def _provenance(grid: Any, records: list[Record], warm_result: Any, warm_records: list[Record]) -> dict[str, Any]:
    """What a report says of its own making: the ridges tried, the records routed, what was warm-started."""
    extra: dict[str, Any] = {"full_information_grid": grid, "records_routed": [r.id for r in records]}
    if warm_result is not None:
        extra["warm_start"] = {
            **warm_result.to_json(),
            "record_ids": [r.id for r in warm_records],
            "baselines": "warm-started on the same rows" if warm_records else "cold (a log has no queries)",
        }
    return extra


def _replay_config(base: Config, records: list[Record], settings: ReplaySettings, data_dir: str) -> Config:
    """The replayed router's configuration: the records' models, its own embedded Redis and data folder, the
    replay's seed and weights, and no NVML (nothing is served for real)."""
    reward = {
        k: v
        for k, v in (("energy_weight", settings.energy_weight), ("cost_weight", settings.cost_weight))
        if v is not None
    }
    return base.replace(
        models=arm_catalog(records, base.models),
        server={"data_dir": data_dir, "listen": "127.0.0.1:0"},
        # A replay speaks gRPC only.
        # On a free port, so that a held demo can be asked too (`bandit-router route --target`, the JSON API).
        http={"listen": "127.0.0.1:0"},
        redis={"url": ""},
        policy={"seed": settings.seed},
        reward=reward,
        energy={"measure": False},
        **({"rollout": {"control_share": settings.control_share}} if settings.control_share is not None else {}),
    )


def _learner_driven(config: Config) -> Config:
    """The replayed router's configuration, its learner's own cadence out of reach: the replay has it snapshot on
    the schedule instead (:meth:`_Driver.publish`)."""
    return config.replace(policy={"snapshot_every_events": 2**31 - 1, "snapshot_interval_s": 1e9})


def _baselines(
    config: Config,
    settings: ReplaySettings,
    featurizer: Featurizer,
    table: OutcomeTable,
    schedule: list[Op],
    routed: tuple[list[Record], list[Any]],
    warmed: tuple[list[Record], list[Any]],
) -> tuple[dict[str, Trace], Any]:
    """The baselines on the routed records (and the full-information grid), warm-started on the warm records
    where there are any, with the same tasks and features the router had."""
    (records, embedded), (warm_records, warm_embedded) = routed, warmed

    def task_of(record: Record, e: Any) -> str:
        return record.task.lower() if settings.task_hint and record.task else featurizer.inferrer.infer(e.vector)

    tasks = [task_of(r, e) for r, e in zip(records, embedded, strict=True)]
    warm_tasks = [task_of(r, e) for r, e in zip(warm_records, warm_embedded, strict=True)]
    features = baseline_features(
        [r.query for r in [*warm_records, *records]], [*warm_embedded, *embedded], [*warm_tasks, *tasks],
        config.features,
    )  # fmt: skip
    warm_features, features = features[: len(warm_records)], features[len(warm_records) :]
    warm_table = (
        (build_table(warm_records, config, [e.token_count for e in warm_embedded]), warm_features, warm_tasks)
        if warm_records
        else None
    )
    tokens = [e.token_count for e in embedded]
    return replay_baselines(
        table,
        features,
        tasks,
        tokens,
        list(config.models),
        config.reward,
        settings.seed,
        schedule,
        warm_table,
    )


def make_report(
    traces: dict[str, Trace],
    table: OutcomeTable,
    config: Config,
    settings: ReplaySettings,
    cadence: dict[str, Any],
    energy_sources: Counter[str],
    cost_sources: Counter[str],
    policy_version: str,
) -> dict[str, Any]:
    oracle = np.array(next(t.rewards for n, t in traces.items() if n.startswith("oracle")))
    policies = {}
    for name, trace in traces.items():
        regret = np.cumsum(oracle - np.array(trace.rewards))
        shares = Counter(table.arms[a] for a in trace.arms)
        policies[name] = {
            "mean_quality": float(np.mean(trace.qualities)),
            "mean_cost_usd": float(np.mean(trace.costs)),
            "mean_energy_joules": float(np.mean(trace.energies)),
            "mean_reward": float(np.mean(trace.rewards)),
            "cumulative_regret": float(regret[-1]),
            "regret_curve": [float(v) for v in regret],
            "arms": [table.arms[a] for a in trace.arms],
            "share": {a: shares[a] / len(trace.arms) for a in table.arms},
            "churn": churn(trace.arms),
        }
    weights = config.reward
    estimated = energy_sources.get("estimated", 0)
    return {
        "records": len(table.quality),
        "models": table.arms,
        "reward": {
            "formula": FORMULA,
            "energy_weight": weights.energy_weight,
            "cost_weight": weights.cost_weight,
            "energy_scale_joules": weights.energy_scale_joules,
            "cost_scale_usd": weights.cost_scale_usd,
        },
        "energy_source": "estimated" if estimated == sum(energy_sources.values()) else dict(energy_sources),
        "energy_basis": ENERGY_BASIS,
        # Models with neither a catalog energy profile nor energy in the traffic: their energy counts as 0 in the
        # means, and the energy weight does not apply to them.
        "energy_unknown_models": [a for j, a in enumerate(table.arms) if table.energy_unknown[:, j].any()],
        "bandit_energy_sources": dict(energy_sources),
        "bandit_cost_sources": dict(cost_sources),
        "bandit_policy_version": policy_version,
        "seed": settings.seed,
        "task_hint": settings.task_hint,
        "scenario": settings.scenario.to_json(),
        # Every sent reward is priced once, so the sources count the rewards the service received.
        "rewards_never_sent": len(table.quality) - sum(energy_sources.values()),
        # In virtual time: the rate and learner's cadence the replay assumed (offline.replay.cadence).
        "cadence": cadence,
        "policies": policies,
    }
