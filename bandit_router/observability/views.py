"""The dashboard's charts over a time window, in buckets: model shares, rewards, exploration, drift, health.

``window_s`` 0 means everything the monitor kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bandit_router.observability.monitor import Monitor, rewards_in, routes_in, since
from bandit_router.observability.samples import RewardSample, RouteSample

BUCKETS = 30


def _edges(monitor: Monitor, start: float, samples: Sequence[Any]) -> np.ndarray[Any, Any]:
    begin = max(start, samples[0].t) if samples else monitor.clock()
    return np.linspace(begin, monitor.clock() + 1e-9, BUCKETS + 1)


def _width(edges: np.ndarray[Any, Any]) -> float:
    """Seconds per bucket, which the charts show beside their titles."""
    return float(edges[1] - edges[0])


def shares(monitor: Monitor, window_s: float, task: str = "", tenant: str | None = None) -> dict[str, Any]:
    """Share of decisions per model in each time bucket (overall, or of one task); None in a bucket without
    decisions, a gap in the chart rather than a drop to zero."""
    start, samples = routes_in(monitor, window_s, tenant)
    everything = samples
    samples = [r for r in samples if not task or r.task == task]
    edges = _edges(monitor, start, samples)
    models = sorted({r.model for r in samples})
    counts = np.zeros((len(models), BUCKETS))
    for r in samples:
        b = min(BUCKETS - 1, int(np.searchsorted(edges, r.t, side="right")) - 1)
        counts[models.index(r.model), b] += 1
    totals = counts.sum(axis=0)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    return {
        "t": [float(t) for t in edges[1:]],
        "bucket_s": _width(edges),
        "decisions": [int(x) for x in totals],
        "share": {
            m: [float(x) if n > 0 else None for x, n in zip(share[i], totals, strict=True)]
            for i, m in enumerate(models)
        },
        "tasks": sorted({r.task for r in everything}),
        "task": task,
    }


def rewards_view(monitor: Monitor, window_s: float, tenant: str | None = None) -> dict[str, Any]:
    """Mean reward, quality, cost and energy per bucket, and energy split by its source; None where a bucket
    has no rewards (of that source)."""
    start, samples = rewards_in(monitor, window_s, tenant)
    edges = _edges(monitor, start, samples)
    buckets: list[list[RewardSample]] = [[] for _ in range(BUCKETS)]
    for r in samples:
        buckets[min(BUCKETS - 1, int(np.searchsorted(edges, r.t, side="right")) - 1)].append(r)

    def mean(field: str) -> list[float | None]:
        return [float(np.mean([getattr(r, field) for r in b])) if b else None for b in buckets]

    sources = sorted({r.energy_source for r in samples} | {"measured", "reported", "estimated"})
    return {
        "t": [float(t) for t in edges[1:]],
        "bucket_s": _width(edges),
        "rewards": [len(b) for b in buckets],
        "mean_reward": mean("reward"),
        "mean_quality": mean("quality"),
        "mean_cost_usd": mean("cost_usd"),
        "mean_energy_joules": mean("energy_joules"),
        "energy_joules_by_source": {
            s: [
                float(sum(r.energy_joules for r in b if r.energy_source == s))
                if any(r.energy_source == s for r in b)
                else None
                for b in buckets
            ]
            for s in sources
        },
        "per_model_mean_reward": {
            m: [
                float(np.mean([r.reward for r in b if r.model == m])) if any(r.model == m for r in b) else None
                for b in buckets
            ]
            for m in sorted({r.model for r in samples})
        },
    }


def exploration(monitor: Monitor, window_s: float, tenant: str | None = None) -> dict[str, Any]:
    """Mean pmf entropy and mean probability of the chosen action per bucket."""
    start, samples = routes_in(monitor, window_s, tenant)
    edges = _edges(monitor, start, samples)
    buckets: list[list[RouteSample]] = [[] for _ in range(BUCKETS)]
    for r in samples:
        buckets[min(BUCKETS - 1, int(np.searchsorted(edges, r.t, side="right")) - 1)].append(r)
    return {
        "t": [float(t) for t in edges[1:]],
        "bucket_s": _width(edges),
        "mean_entropy": [float(np.mean([r.entropy for r in b])) if b else None for b in buckets],
        "mean_chosen_probability": [float(np.mean([r.probability for r in b])) if b else None for b in buckets],
    }


def drift_view(monitor: Monitor, window_s: float) -> dict[str, Any]:
    start = since(monitor, window_s)
    samples = [d for d in list(monitor.drift) if d.t >= start]
    return {
        "t": [d.t for d in samples],
        "version": [d.version for d in samples],
        "tv_previous": [d.tv_previous for d in samples],
        "kl_previous": [d.kl_previous for d in samples],
        "tv_first": [d.tv_first for d in samples],
        "kl_first": [d.kl_first for d in samples],
        "model_mass": {
            m: [d.model_mass.get(m, 0.0) for d in samples] for m in sorted({k for d in samples for k in d.model_mass})
        },
        "probes": len(monitor.probes),
    }


def health(monitor: Monitor, learner_lag: int | None, expired: int | None, tenant: str | None = None) -> dict[str, Any]:
    """``expired`` is the store's count, over every replica; the monitor's own is this replica's. A tenant's
    view counts its own pending decisions and reward delays (None for the pooled figures)."""
    delays = [r.delay_s for r in list(monitor.rewards) if tenant is None or r.tenant == tenant][-1000:]
    pending = [t for t, who in list(monitor.outstanding.values()) if tenant is None or who == tenant]
    return {
        "pending": len(pending),
        "expired": expired,
        "learner_lag_events": learner_lag,
        "reward_delay_s": {
            "p50": float(np.percentile(delays, 50)) if delays else None,
            "p95": float(np.percentile(delays, 95)) if delays else None,
        },
        "decisions": len(monitor.routes) if tenant is None else sum(r.tenant == tenant for r in list(monitor.routes)),
        "rewards": len(monitor.rewards) if tenant is None else sum(r.tenant == tenant for r in list(monitor.rewards)),
    }
