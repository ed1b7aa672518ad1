"""Warm start: fit the policy from data a user already has, before any live traffic, through a quality gate.

Two sources:

- an **evaluation set** (the traffic format, every model's outcome on each prompt): every model's quality is
  learned on every prompt, with probability 1, and the pricing learns each model's tokens and residuals;
- a **decision log** exported as DSJSON (``bandit-router export-log``, from another policy or an earlier
  deployment): only the logged action's quality is known, learned with its importance weight (1 / the logged
  probability, capped), so the models the logging policy favoured do not crowd out the rest.

The gate: the candidate is fitted on the first 80% of the rows and judged on the last 20%, against the policy
being served (if any). On an evaluation set the judgement is exact: each policy's expected reward under its own
pmf, every outcome known, at the configured weights. On a log it is the SNIPS estimate of the quality gate
(:mod:`bandit_router.policy.gate`). Promoted, the candidate then learns the held-out rows too and is published as
both the learner's checkpoint and the served policy; held back, it is kept as the checkpoint only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bandit_router.config import Config, ModelSpec
from bandit_router.domain.pricing import penalty
from bandit_router.embedding.backends import load_embedder
from bandit_router.embedding.types import Embedded, Embeds
from bandit_router.errors import InputError
from bandit_router.policy.features import Featurizer
from bandit_router.policy.gate import Gate, Logged, Verdict
from bandit_router.policy.ope import Estimate
from bandit_router.policy.vw import Policy, Snapshot
from bandit_router.policy.vwlines import Choice, action_line
from bandit_router.store.embedded import connect
from bandit_router.store.redis_store import Store
from bandit_router.store.snapshots import SnapshotFiles, load_snapshot
from bandit_router.traffic.format import Record, TrafficError, read_traffic
from bandit_router.traffic.table import build_table

# Importance weights of logged decisions are capped here: a rare action's weight stays informative without one
# decision outweighing a thousand.
MAX_WEIGHT = 20.0
HOLDOUT = 0.2


class WarmStartError(InputError):
    """The warm-start source cannot be used; the message names the file, the rule and the value."""


@dataclasses.dataclass(frozen=True)
class LoggedRow:
    """One decision of a DSJSON log, as our features see it."""

    choice: Choice
    index: int
    probability: float
    quality: float
    reward: float


@dataclasses.dataclass(frozen=True)
class Source:
    """Rows to warm-start from: evaluation records (every outcome), or logged decisions."""

    description: str
    records: tuple[Record, ...] = ()
    logged: tuple[LoggedRow, ...] = ()

    @property
    def rows(self) -> int:
        return len(self.records) + len(self.logged)


@dataclasses.dataclass(frozen=True)
class Result:
    policy: Policy
    verdict: Verdict
    source: str
    rows: int
    # On the held-out rows (evaluation sets only): each policy's mean reward, and the best single model's.
    holdout: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "version": self.policy.version,
            "verdict": self.verdict.to_json(),
            "holdout": self.holdout,
        }


def _line(namespaces: dict[str, Any], keep: Sequence[str]) -> str:
    parts = []
    for ns in keep:
        features = namespaces.get(ns)
        if isinstance(features, dict) and features:
            text = " ".join(k if float(v) == 1.0 else f"{k}:{float(v):g}" for k, v in features.items())
            parts.append(f"|{ns} {text}")
    return " ".join(parts)


def read_dsjson(path: str | Path, context: Sequence[str]) -> list[LoggedRow]:
    """Logged decisions of ``bandit-router export-log``, their features cut down to what this policy uses
    (``context`` namespaces and the model id): a log of another feature set still warm-starts the models."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(text)
                extra = row["_bandit_router"]
                actions = tuple(f"|A {next(iter(a['A']))}" for a in row["c"]["_multi"])
                index = int(row["_labelIndex"])
                probability = float(row["_label_probability"])
                penalties = extra.get("penalties") or [0.0] * len(actions)
                choice = Choice.of(_line(row["c"], context), actions, [float(p) for p in penalties])
                logged = LoggedRow(choice, index, probability, float(extra["quality"]), -float(row["_label_cost"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, StopIteration) as exc:
                raise WarmStartError(
                    f"{where}: not a decision of `bandit-router export-log` ({type(exc).__name__}: {exc})"
                ) from None
            if not (0 < probability <= 1) or not 0 <= index < len(actions):
                raise WarmStartError(f"{where}: _label_probability must be in (0, 1], got {probability}")
            rows.append(logged)
    if not rows:
        raise WarmStartError(f"{path}: holds no decisions")
    return rows


def read_source(path: str | Path, config: Config) -> Source:
    """An evaluation set in the traffic format, or a DSJSON decision log (told apart by its first line)."""
    with open(path, encoding="utf-8") as f:
        first = next((line for line in f if line.strip()), "")
    if '"_label_cost"' in first:
        logged = read_dsjson(path, config.features.context)
        return Source(f"{path} (DSJSON log, {len(logged)} logged decisions)", logged=tuple(logged))
    try:
        records = read_traffic(path)
    except TrafficError as exc:
        raise WarmStartError(str(exc)) from None
    unknown = sorted({m for r in records for m in r.outcomes} - set(config.model_by_id))
    if unknown:
        raise WarmStartError(f"{path}: models {unknown} are not in the catalog; add them to the configuration")
    return Source(f"{path} (evaluation set, {len(records)} prompts, every model's outcome)", records=tuple(records))


def _fit_records(
    policy: Policy,
    records: Sequence[Record],
    embedded: Sequence[Embedded],
    featurizer: Featurizer,
    config: Config,
    task_hint: bool,
) -> None:
    table = build_table(records, config, [e.token_count for e in embedded])
    for i, (record, e) in enumerate(zip(records, embedded, strict=True)):
        policy.clusterer.learn_one(e.vector)
        context = featurizer.context(record.query, e, record.task if task_hint else "", policy.clusterer)
        shared = context.line(config.features.context)
        for j, model in enumerate(table.arms):
            if not math.isfinite(table.reward[i, j]):
                continue
            policy.learn_quality(shared, action_line(config.model_by_id[model]), float(table.quality[i, j]))
            table.price(policy.pricing, i, j, context.task)


def _fit_logged(policy: Policy, rows: Sequence[LoggedRow]) -> None:
    for row in rows:
        weight = min(MAX_WEIGHT, 1.0 / row.probability)
        policy.learn_quality(row.choice.shared, row.choice.actions[row.index], row.quality, weight)


def judge_records(
    version: int,
    candidate: Policy,
    serving: Policy | None,
    records: Sequence[Record],
    embedded: Sequence[Embedded],
    featurizer: Featurizer,
    config: Config,
    task_hint: bool,
) -> tuple[Verdict, dict[str, float]]:
    """Exact: each policy's expected reward on each held-out prompt, under its own pmf."""
    table = build_table(records, config, [e.token_count for e in embedded])
    weights = config.reward
    models: list[ModelSpec] = [config.model_by_id[a] for a in table.arms]

    def values(policy: Policy) -> np.ndarray[Any, Any]:
        out = []
        for i, (record, e) in enumerate(zip(records, embedded, strict=True)):
            context = featurizer.context(record.query, e, record.task if task_hint else "", policy.clusterer)
            offered = table.available(i)
            choice = Choice(
                context.line(config.features.context),
                tuple(action_line(models[j]) for j in offered),
                tuple(
                    penalty(
                        policy.pricing.expected(models[j], context.task, e.token_count),
                        weights.energy_weight,
                        weights.cost_weight,
                        weights,
                    )
                    for j in offered
                ),
            )
            out.append(sum(p * table.reward[i, j] for p, j in zip(policy.pmf(choice), offered, strict=True)))
        return np.asarray(out)

    new = values(candidate)
    means = table.reward.mean(axis=0)
    best = int(np.argmax(means))
    holdout = {"candidate": float(new.mean()), f"always {table.arms[best]}": float(means[best])}
    z, tolerance = config.policy.gate_z, config.policy.gate_tolerance

    def estimate(v: np.ndarray[Any, Any]) -> Estimate:
        half = z * float(v.std(ddof=1)) / math.sqrt(len(v)) if len(v) > 1 else math.inf
        return Estimate(float(v.mean()), float(v.mean()) - half, float(v.mean()) + half, len(v))

    if serving is None:
        verdict = Verdict(version, True, "nothing served yet", len(new), estimate(new))
        return verdict, holdout
    old = values(serving)
    holdout["serving"] = float(old.mean())
    difference = estimate(new - old)
    promoted = difference.high >= -tolerance
    reason = (
        f"candidate {new.mean():.4f} vs serving {old.mean():.4f} on {len(new)} held-out prompts (exact); the "
        f"difference is at most {difference.high:+.4f} ({z:g} s.e.), {'within' if promoted else 'beyond'} "
        f"tolerance {tolerance:g}"
    )
    return Verdict(version, promoted, reason, len(new), estimate(new), estimate(old)), holdout


def _judge_logged(
    version: int, candidate: Policy, serving: Policy | None, rows: Sequence[LoggedRow], config: Config
) -> Verdict:
    if serving is None:
        return Verdict(version, True, "nothing served yet", len(rows))
    # Every held-out decision counts, whatever the gate's usual window.
    gate = Gate(dataclasses.replace(config.policy, gate_window=max(1, len(rows)), gate_min_events=1))
    for row in rows:
        gate.observe(Logged(row.choice, row.index, row.probability, row.reward))
    return gate.judge(version, candidate, serving)


def warm(
    base: Policy,
    serving: Policy | None,
    source: Source,
    embedder: Embeds,
    featurizer: Featurizer,
    config: Config,
    task_hint: bool = True,
    seed: int = 0,
) -> Result:
    """Fits ``base`` (the learner's checkpoint, or a fresh policy) from ``source``, judges it against
    ``serving``, and returns it at the next version with the verdict. ``base`` is changed in place. With
    ``task_hint`` off, each prompt's task is inferred, as Route infers it for queries sent without one."""
    version = base.version + 1
    holdout: dict[str, float] = {}
    nothing = Verdict(version, serving is None, "no rows left to judge on", 0)
    if source.records:
        records = list(source.records)
        random.Random(seed).shuffle(records)
        embedded = embedder.embed([r.query for r in records])
        cut = max(1, round(len(records) * (1 - HOLDOUT)))
        _fit_records(base, records[:cut], embedded[:cut], featurizer, config, task_hint)
        verdict = nothing
        if cut < len(records):
            verdict, holdout = judge_records(
                version, base, serving, records[cut:], embedded[cut:], featurizer, config, task_hint
            )
        if verdict.promoted:
            _fit_records(base, records[cut:], embedded[cut:], featurizer, config, task_hint)
    else:
        logged = list(source.logged)
        cut = max(1, round(len(logged) * (1 - HOLDOUT)))
        _fit_logged(base, logged[:cut])
        verdict = _judge_logged(version, base, serving, logged[cut:], config) if cut < len(logged) else nothing
        if verdict.promoted:
            _fit_logged(base, logged[cut:])
    base.version = version
    base.warm_starts.append(f"v{version}: {source.description}")
    return Result(base, verdict, source.description, source.rows, holdout)


# The lease a warm start holds while it writes: long enough for its few writes, short enough that a warm start
# killed meanwhile keeps learners out only briefly.
WRITE_LEASE_S = 60.0


async def publish(result: Result, files: SnapshotFiles, store: Store | None, log_dir: Path | None = None) -> None:
    """Persists the warm-started policy as the learner's checkpoint and, if promoted, as the served policy
    (in Redis with an announcement to every replica, under the learner's lease, and on disk)."""
    policy = result.policy
    data = policy.snapshot(policy.version, policy.stream_id).encode()
    if store is not None:
        fence = await store.lease.hold("warm-start", WRITE_LEASE_S)
        if fence is None:
            raise WarmStartError(
                f"a learner ({await store.running_learner()}) started on this store meanwhile and would overwrite "
                "the warm start: stop it and run the warm start again"
            )
        try:
            await store.save_snapshot(data, policy.version, fence)
            if result.verdict.promoted:
                await store.save_served(data, policy.version, fence)
        finally:
            await store.lease.release(fence)
    await asyncio.to_thread(files.write, data, policy.version)
    if result.verdict.promoted:
        await asyncio.to_thread(files.write_served, data)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / "gate.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({**result.verdict.to_json(), "warm_start": result.source}) + "\n")


async def run(config: Config, path: str | Path, task_hint: bool = True) -> Result:
    """``bandit-router warm-start``: against the configured store (the embedded Redis under the data
    directory, or ``redis.url``), with no learner running on it."""
    source = read_source(path, config)
    client, embedded_redis = await connect(config.redis.url, config.server.data_path)
    try:
        store = Store(client, config.redis.key_prefix, config.redis.shards)
        running = await store.running_learner()
        if running is not None:
            raise WarmStartError(
                f"a learner ({running}) is running on this store and would overwrite the warm start: stop "
                "`bandit-router serve` (or `bandit-router learner`) first"
            )
        files = SnapshotFiles.of(config)
        checkpoint = await load_snapshot(store, files)
        served = await load_snapshot(store, files, served=True)
        embedder = await asyncio.to_thread(load_embedder, config.embedding)
        featurizer = await asyncio.to_thread(Featurizer, config.features, embedder.embed, embedder.dimension)

        def rebuild(snapshot: Snapshot | None) -> Policy:
            return Policy.of(config, embedder.dimension, snapshot)

        base = await asyncio.to_thread(rebuild, checkpoint)
        serving = await asyncio.to_thread(rebuild, served) if served is not None else None
        result = await asyncio.to_thread(warm, base, serving, source, embedder, featurizer, config, task_hint)
        await publish(result, files, store, config.server.data_path / "decisions")
        return result
    finally:
        await client.aclose()
        if embedded_redis is not None:
            await asyncio.to_thread(embedded_redis.stop)
