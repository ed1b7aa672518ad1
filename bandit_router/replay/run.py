"""Replays traffic through a real router (in-process gRPC server, embedded Redis) and the baselines."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import tempfile
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np

from bandit_router.config import Config, FeaturesConfig
from bandit_router.embedding import Embedder
from bandit_router.features import Clusterer, Complexity
from bandit_router.replay.baselines import Baseline, EpsilonGreedy, FullInformation, LinUCB, RandomRouter
from bandit_router.replay.scenario import Scenario
from bandit_router.replay.traffic import Record, arm_catalog, batched
from bandit_router.reward import cost_of, energy_of, resolve_tokens, scalar_reward
from bandit_router.server import Server
from bandit_router.service import RouterService
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc

BANDIT = "bandit-router"
# Energy weight = cost weight at each point of a --sweep.
SWEEP_WEIGHTS = (0.0, 0.1, 0.3, 1.0, 3.0)
FORMULA = "quality - energy_weight * energy_joules / energy_scale_joules - cost_weight * cost_usd / cost_scale_usd"
ENERGY_BASIS = (
    "where the traffic has no energy: the catalog's profiles from ML.ENERGY (Chung et al., NeurIPS 2025 D&B), "
    "J per input and output token by model size on H100, times the record's tokens (or estimated tokens)"
)


@dataclasses.dataclass(frozen=True)
class ReplaySettings:
    energy_weight: float | None = None
    cost_weight: float | None = None
    seed: int = 0
    concurrency: int = 8
    # Give the router each record's task as a hint; without it the router infers the task.
    task_hint: bool = True
    scenario: Scenario = dataclasses.field(default_factory=Scenario)


@dataclasses.dataclass
class Trace:
    """What one policy did on the stream, step by step."""

    arms: list[int] = dataclasses.field(default_factory=list)
    rewards: list[float] = dataclasses.field(default_factory=list)
    qualities: list[float] = dataclasses.field(default_factory=list)
    costs: list[float] = dataclasses.field(default_factory=list)
    energies: list[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class OutcomeTable:
    """Every model's quality, cost, energy and reward on every record as the scenario changes them,
    priced as the service prices them; an unavailable model's reward is -inf."""

    arms: list[str]
    quality: np.ndarray[Any, np.dtype[np.float64]]
    cost: np.ndarray[Any, np.dtype[np.float64]]
    energy: np.ndarray[Any, np.dtype[np.float64]]
    reward: np.ndarray[Any, np.dtype[np.float64]]
    energy_sources: Counter[str]
    # The reward a router is told: ``reward`` except where the scenario corrupts the quality sent.
    feedback: np.ndarray[Any, np.dtype[np.float64]]

    def available(self, i: int) -> list[int]:
        return [j for j in range(len(self.arms)) if np.isfinite(self.reward[i, j])]

    def step(self, trace: Trace, i: int, arm: int) -> None:
        trace.arms.append(arm)
        trace.rewards.append(float(self.reward[i, arm]))
        trace.qualities.append(float(self.quality[i, arm]))
        trace.costs.append(float(self.cost[i, arm]))
        trace.energies.append(float(self.energy[i, arm]))


def build_table(
    records: list[Record], config: Config, query_tokens: list[int], scenario: Scenario | None = None
) -> OutcomeTable:
    scenario = scenario or Scenario()
    models = config.model_by_id
    arms = [m.id for m in config.models]
    shape = (len(records), len(arms))
    table = OutcomeTable(
        arms,
        np.zeros(shape),
        np.zeros(shape),
        np.zeros(shape),
        np.full(shape, -np.inf),
        Counter(),
        np.full(shape, -np.inf),
    )
    weights = config.reward
    for i, record in enumerate(records):
        for j, arm in enumerate(arms):
            outcome = record.outcomes.get(arm)
            if outcome is None or not scenario.available(i, arm):
                continue
            tokens = resolve_tokens(models[arm], outcome.input_tokens or 0, outcome.output_tokens or 0, query_tokens[i])
            cost = cost_of(models[arm], outcome.cost_usd, tokens).value * scenario.price_factor(i, arm)
            energy = energy_of(models[arm], outcome.energy_joules, tokens)
            quality = outcome.quality * scenario.quality_factor(i, arm)
            table.energy_sources[energy.source.value] += 1
            table.quality[i, j], table.cost[i, j], table.energy[i, j] = quality, cost, energy.value
            table.reward[i, j], table.feedback[i, j] = (
                scalar_reward(q, energy.value, cost, weights.energy_weight, weights.cost_weight, weights)
                for q in (quality, 1.0 - quality if scenario.corrupted(i) else quality)
            )
    return table


def baseline_features(
    records: list[Record], vectors: list[np.ndarray[Any, Any]], tokens: list[int], tasks: list[str]
) -> list[np.ndarray[Any, Any]]:
    """GreenServ's context: task one-hot, semantic cluster one-hot (online), complexity; plus a bias."""
    clusters = Clusterer(FeaturesConfig(max_clusters=16), dimension=len(vectors[0]))
    width = 1 + len(tasks) + 16 + 3
    rows = []
    for record, vector, count in zip(records, vectors, tokens, strict=True):
        x = np.zeros(width)
        x[0] = 1.0
        if record.task in tasks:
            x[1 + tasks.index(record.task)] = 1.0
        cluster = clusters.learn_one(vector)
        x[1 + len(tasks) + cluster] = 1.0
        complexity = Complexity.of(record.query, count)
        x[-3:] = (np.log1p(count) / 8, min(max(complexity.reading_ease, -100), 120) / 100, complexity.digit_fraction)
        rows.append(x)
    return rows


def _request_id(record: Record, step: int) -> str:
    return f"{step}-" + re.sub(r"[^A-Za-z0-9._:-]", "_", record.id)[:100]


async def _replay_bandit(
    stub: router_pb2_grpc.RouterStub,
    records: list[Record],
    table: OutcomeTable,
    settings: ReplaySettings,
    dropped: list[bool],
    progress: Any,
) -> tuple[Trace, Counter[str], Counter[str]]:
    trace = Trace()
    energy_sources: Counter[str] = Counter()
    cost_sources: Counter[str] = Counter()
    arm_index = {a: j for j, a in enumerate(table.arms)}
    scenario = settings.scenario
    preferences = pb.Preferences()
    if settings.energy_weight is not None:
        preferences.energy_weight = settings.energy_weight
    if settings.cost_weight is not None:
        preferences.cost_weight = settings.cost_weight
    # Decisions whose reward is still to be sent: (step, decision id, model index).
    owed: deque[tuple[int, str, int]] = deque()

    async def pay(step: int, decision_id: str, j: int) -> None:
        # Bandit feedback: only the chosen model's logged outcome goes back.
        outcome = records[step].outcomes[table.arms[j]]
        request = pb.RewardRequest(
            decision_id=decision_id,
            quality=float(1.0 - table.quality[step, j] if scenario.corrupted(step) else table.quality[step, j]),
            input_tokens=outcome.input_tokens or 0,
            output_tokens=outcome.output_tokens or 0,
            latency_ms=outcome.latency_ms or 0.0,
        )
        if outcome.energy_joules is not None:
            request.energy_joules = outcome.energy_joules
        if outcome.cost_usd is not None or scenario.price_factor(step, table.arms[j]) != 1.0:
            # After a price change the client reports what it was billed.
            request.cost_usd = float(table.cost[step, j])
        reply = await stub.Reward(request)
        energy_sources[pb.Source.Name(reply.energy_source).removeprefix("SOURCE_").lower()] += 1
        cost_sources[pb.Source.Name(reply.cost_source).removeprefix("SOURCE_").lower()] += 1

    steps = list(enumerate(records))
    for window in batched(steps, settings.concurrency):
        decisions = await asyncio.gather(
            *(
                stub.Route(
                    pb.RouteRequest(
                        query=r.query,
                        request_id=_request_id(r, i),
                        candidates=[m for m in r.outcomes if scenario.available(i, m)],
                        task=r.task if settings.task_hint else "",
                        preferences=preferences,
                    )
                )
                for i, r in window
            )
        )
        for (i, _), decision in zip(window, decisions, strict=True):
            j = arm_index[decision.model]
            # What the application got, whatever reward it then sends.
            table.step(trace, i, j)
            if not dropped[i]:
                owed.append((i, decision.decision_id, j))
            progress.update(1)
        last = window[-1][0]
        while owed and owed[0][0] <= last - scenario.reward_delay:
            await pay(*owed.popleft())
    while owed:
        await pay(*owed.popleft())
    return trace, energy_sources, cost_sources


def replay_baselines(
    records: list[Record],
    table: OutcomeTable,
    features: list[Any],
    tasks: list[str],
    seed: int,
    delay: int = 0,
    dropped: list[bool] | None = None,
) -> dict[str, Trace]:
    arms = len(table.arms)
    dimension = len(features[0])
    learners: list[Baseline] = [
        RandomRouter(arms, seed),
        EpsilonGreedy(arms, seed),
        LinUCB(arms, dimension),
        FullInformation(arms, dimension),
    ]
    traces = {b.name: Trace() for b in learners}
    # A single-model baseline only for models available on every query.
    always = [j for j in range(arms) if np.isfinite(table.reward[:, j]).all()]
    fixed = {f"always {table.arms[j]}": (j, Trace()) for j in always}
    oracle = Trace()
    # Feedback the baselines get ``delay`` queries late, as the bandit does: (due step, learn).
    owed: deque[tuple[int, Callable[[], None]]] = deque()
    for i, record in enumerate(records):
        while owed and owed[0][0] <= i:
            owed.popleft()[1]()
        x = features[i]
        rewards = table.feedback[i]
        available = table.available(i)
        for learner in learners:
            arm = learner.choose(x, record.task, available)
            table.step(traces[learner.name], i, arm)
            if dropped is not None and dropped[i]:
                continue
            learn = (
                functools.partial(learner.learn_all, x, record.task, list(rewards))
                if learner.full_information
                else functools.partial(learner.learn_one, x, record.task, arm, float(rewards[arm]))
            )
            owed.append((i + delay, learn))
        for j, trace in fixed.values():
            table.step(trace, i, j)
        table.step(oracle, i, int(np.argmax(table.reward[i])))
    result = {**traces, **{name: trace for name, (_, trace) in fixed.items()}}
    if fixed:
        best = max(fixed, key=lambda n: sum(fixed[n][1].rewards))
        result[f"best single model in hindsight ({best.removeprefix('always ')})"] = fixed[best][1]
    result["oracle (per query)"] = oracle
    return result


async def replay(
    records: list[Record],
    base: Config,
    settings: ReplaySettings,
    embedder: Embedder | None = None,
    show_progress: bool = True,
    on_start: Callable[[Server], None] | None = None,
    hold: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Runs the bandit through a real service and the baselines on the same stream; returns the report.

    ``on_start`` is shown the running server (and its dashboard); ``hold``, awaited with the report,
    keeps the service and its dashboard up until it returns."""
    from tqdm import tqdm

    scenario = settings.scenario
    records = scenario.stream(records, settings.seed)
    dropped = scenario.dropped(len(records), settings.seed)

    with tempfile.TemporaryDirectory(prefix="br-replay-") as data_dir:
        reward = {
            k: v
            for k, v in (("energy_weight", settings.energy_weight), ("cost_weight", settings.cost_weight))
            if v is not None
        }
        config = base.replace(
            models=arm_catalog(records, base.models),
            server={"data_dir": data_dir, "listen": "127.0.0.1:0"},
            redis={"url": ""},
            policy={"seed": settings.seed},
            reward=reward,
            energy={"measure": False},
        )
        service = await RouterService.open(config, embedder=embedder)
        server = Server(service, "127.0.0.1:0")
        await server.start()
        if on_start is not None:
            on_start(server)
        try:
            embedded = []
            for chunk in batched([r.query for r in records], 64):
                embedded.extend(await asyncio.to_thread(service.embedder.embed, list(chunk)))
            tokens = [e.token_count for e in embedded]
            table = build_table(records, config, tokens, scenario)
            started = time.perf_counter()
            async with grpc.aio.insecure_channel(server.address) as channel:
                stub = router_pb2_grpc.RouterStub(channel)
                with tqdm(total=len(records), desc="replay", unit="query", disable=not show_progress) as progress:
                    bandit, energy_sources, cost_sources = await _replay_bandit(
                        stub, records, table, settings, dropped, progress
                    )
            elapsed = time.perf_counter() - started
            if service.learner is not None:
                await service.learner.wait_learned(len(records) - sum(dropped), timeout=120)
            tasks = sorted({r.task for r in records if r.task})
            traces = {
                BANDIT: bandit,
                **replay_baselines(
                    records,
                    table,
                    baseline_features(records, [e.vector for e in embedded], tokens, tasks),
                    tasks,
                    settings.seed,
                    scenario.reward_delay,
                    dropped,
                ),
            }
            result = make_report(
                traces, table, config, settings, elapsed, energy_sources, cost_sources, service.policy_version
            )
            if hold is not None:
                await hold(result)
        finally:
            await server.stop(1.0)
    return result


def make_report(
    traces: dict[str, Trace],
    table: OutcomeTable,
    config: Config,
    settings: ReplaySettings,
    elapsed: float,
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
        "bandit_energy_sources": dict(energy_sources),
        "bandit_cost_sources": dict(cost_sources),
        "bandit_policy_version": policy_version,
        "seed": settings.seed,
        "task_hint": settings.task_hint,
        "scenario": settings.scenario.to_json(),
        # Every sent reward is priced once, so the sources count the rewards the service received.
        "rewards_never_sent": len(table.quality) - sum(energy_sources.values()),
        "replay_seconds": elapsed,
        "replay_queries_per_second": len(table.quality) / elapsed,
        "policies": policies,
    }
