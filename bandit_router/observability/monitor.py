"""What the dashboard and /metrics show: recent decisions and rewards, exploration, and policy drift.

The service tells the monitor of every decision, reward and newly served policy. Drift is measured on a
probe set, the last ``probe_size`` Route contexts: when a policy is swapped in, its pmfs on the probes are
compared with the previous policy's and with the first one's (total variation and KL divergence). Views
are computed on demand over a time window, in buckets, for the charts.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bandit_router.config import DashboardConfig
from bandit_router.domain.records import LearningEvent
from bandit_router.domain.reward import bounded
from bandit_router.observability.metrics import Metrics
from bandit_router.observability.samples import DriftSample, RewardSample, RouteSample, divergence, entropy, movers
from bandit_router.policy.features import Choice
from bandit_router.policy.ope import ips, snips
from bandit_router.policy.vw import Policy

BUCKETS = 30


class Monitor:
    """Recent history of one router. Not thread-safe except :meth:`on_policy`, which only reads the probes."""

    def __init__(self, config: DashboardConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.routes: collections.deque[RouteSample] = collections.deque(maxlen=config.history)
        self.rewards: collections.deque[RewardSample] = collections.deque(maxlen=config.history)
        self.drift: collections.deque[DriftSample] = collections.deque(maxlen=config.history)
        self.probes: collections.deque[tuple[Choice, tuple[str, ...]]] = collections.deque(maxlen=config.probe_size)
        # decision id -> (Route time, tenant), until rewarded or expired
        self.outstanding: dict[str, tuple[float, str]] = {}
        self.policy_probability: dict[str, float] = {}
        self.expired = 0
        self.metrics = Metrics()
        self._first: Policy | None = None
        self._previous: Policy | None = None
        self._previous_version = ""

    def on_route(
        self,
        decision_id: str,
        model: str,
        task: str,
        pmf: Sequence[tuple[str, float]],
        probability: float,
        choice: Choice,
        tenant: str = "",
        policy_probability: float | None = None,
    ) -> None:
        now = self.clock()
        self.routes.append(RouteSample(now, model, task, probability, entropy([p for _, p in pmf]), tenant))
        self.probes.append((choice, tuple(m for m, _ in pmf)))
        self.outstanding[decision_id] = (now, tenant)
        if policy_probability is not None and policy_probability != probability:
            # Served in apprentice mode: the policy's own probability of the action, for its off-policy estimate.
            self.policy_probability[decision_id] = policy_probability
            if len(self.policy_probability) > self.config.history:
                # Rewarded by another replica, or never: the oldest go first (a dict keeps insertion order).
                del self.policy_probability[next(iter(self.policy_probability))]
        self.metrics.decisions.labels(model).inc()

    def on_reward(self, decision_id: str, event: LearningEvent, tenant: str = "") -> None:
        now = self.clock()
        self.outstanding.pop(decision_id, None)
        own = self.policy_probability.pop(decision_id, None)
        sample = RewardSample(
            now,
            event.model,
            event.task,
            bounded(event.reward),
            event.quality,
            event.cost_usd,
            event.energy_joules,
            event.energy_source,
            now - event.created_at,
            tuple(m for m, _ in event.pmf),
            event.index,
            event.probability,
            tenant,
            event.probability if own is None else own,
        )
        self.rewards.append(sample)
        m = self.metrics
        m.rewards.labels(sample.model).inc()
        m.reward.labels(sample.model).observe(sample.reward)
        m.quality.labels(sample.model).observe(sample.quality)
        m.energy.labels(sample.model, sample.energy_source).inc(sample.energy_joules)
        m.cost.labels(sample.model, event.cost_source).inc(sample.cost_usd)

    def on_expired(self, decision_id: str) -> None:
        """A decision the expiry sweep expired (learned with the default reward, or dropped)."""
        self.policy_probability.pop(decision_id, None)
        if self.outstanding.pop(decision_id, None) is not None:
            self.expired += 1

    def on_policy(self, policy: Policy, version: str) -> None:
        """Measures a newly served policy's drift from the one it replaces and from the first one seen, on
        today's probes. Calls VW on all three: run it on the thread that owns the serving policies."""
        probes = list(self.probes)
        first, previous = self._first or policy, self._previous or policy
        previous_version = self._previous_version or version
        self._first = first
        self._previous, self._previous_version = policy, version
        if not probes:
            return
        pmfs = [policy.pmf(choice) for choice, _ in probes]
        tv_prev, kl_prev = divergence(pmfs, [previous.pmf(c) for c, _ in probes])
        tv_first, kl_first = divergence(pmfs, [first.pmf(c) for c, _ in probes])
        mass: dict[str, list[float]] = {}
        before: dict[str, list[float]] = {}
        for (choice, models), pmf in zip(probes, pmfs, strict=True):
            for model, p, q in zip(models, pmf, previous.pmf(choice), strict=True):
                mass.setdefault(model, []).append(p)
                before.setdefault(model, []).append(q)
        self.drift.append(
            DriftSample(
                self.clock(),
                version,
                tv_prev,
                kl_prev,
                tv_first,
                kl_first,
                policy.learned,
                {m: float(np.mean(v)) for m, v in mass.items()},
                {m: float(np.mean(v)) for m, v in before.items()},
                previous_version,
            )
        )
        self.metrics.drift.set(tv_prev)

    # Views for the dashboard's JSON endpoints. ``window_s`` 0 means everything kept.

    def _since(self, window_s: float) -> float:
        return self.clock() - window_s if window_s > 0 else -math.inf

    def _routes(self, window_s: float, tenant: str | None) -> tuple[float, list[RouteSample]]:
        """The window's start and its decisions (of one tenant, or all with None), copied first: the deques
        grow while a view reads them."""
        start = self._since(window_s)
        return start, [r for r in list(self.routes) if r.t >= start and (tenant is None or r.tenant == tenant)]

    def _rewards(self, window_s: float, tenant: str | None) -> tuple[float, list[RewardSample]]:
        start = self._since(window_s)
        return start, [r for r in list(self.rewards) if r.t >= start and (tenant is None or r.tenant == tenant)]

    def _edges(self, start: float, samples: Sequence[Any]) -> np.ndarray[Any, Any]:
        begin = max(start, samples[0].t) if samples else self.clock()
        return np.linspace(begin, self.clock() + 1e-9, BUCKETS + 1)

    @staticmethod
    def _width(edges: np.ndarray[Any, Any]) -> float:
        """Seconds per bucket, which the charts show beside their titles."""
        return float(edges[1] - edges[0])

    def shares(self, window_s: float, task: str = "", tenant: str | None = None) -> dict[str, Any]:
        """Share of decisions per model in each time bucket (overall, or of one task); None in a bucket without
        decisions, a gap in the chart rather than a drop to zero."""
        start, samples = self._routes(window_s, tenant)
        everything = samples
        samples = [r for r in samples if not task or r.task == task]
        edges = self._edges(start, samples)
        models = sorted({r.model for r in samples})
        counts = np.zeros((len(models), BUCKETS))
        for r in samples:
            b = min(BUCKETS - 1, int(np.searchsorted(edges, r.t, side="right")) - 1)
            counts[models.index(r.model), b] += 1
        totals = counts.sum(axis=0)
        share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        return {
            "t": [float(t) for t in edges[1:]],
            "bucket_s": self._width(edges),
            "decisions": [int(x) for x in totals],
            "share": {
                m: [float(x) if n > 0 else None for x, n in zip(share[i], totals, strict=True)]
                for i, m in enumerate(models)
            },
            "tasks": sorted({r.task for r in everything}),
            "task": task,
        }

    def rewards_view(self, window_s: float, tenant: str | None = None) -> dict[str, Any]:
        """Mean reward, quality, cost and energy per bucket, and energy split by its source; None where a bucket
        has no rewards (of that source)."""
        start, samples = self._rewards(window_s, tenant)
        edges = self._edges(start, samples)
        buckets: list[list[RewardSample]] = [[] for _ in range(BUCKETS)]
        for r in samples:
            buckets[min(BUCKETS - 1, int(np.searchsorted(edges, r.t, side="right")) - 1)].append(r)

        def mean(field: str) -> list[float | None]:
            return [float(np.mean([getattr(r, field) for r in b])) if b else None for b in buckets]

        sources = sorted({r.energy_source for r in samples} | {"measured", "reported", "estimated"})
        return {
            "t": [float(t) for t in edges[1:]],
            "bucket_s": self._width(edges),
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

    def exploration(self, window_s: float, tenant: str | None = None) -> dict[str, Any]:
        """Mean pmf entropy and mean probability of the chosen action per bucket."""
        start, samples = self._routes(window_s, tenant)
        edges = self._edges(start, samples)
        buckets: list[list[RouteSample]] = [[] for _ in range(BUCKETS)]
        for r in samples:
            buckets[min(BUCKETS - 1, int(np.searchsorted(edges, r.t, side="right")) - 1)].append(r)
        return {
            "t": [float(t) for t in edges[1:]],
            "bucket_s": self._width(edges),
            "mean_entropy": [float(np.mean([r.entropy for r in b])) if b else None for b in buckets],
            "mean_chosen_probability": [float(np.mean([r.probability for r in b])) if b else None for b in buckets],
        }

    def drift_view(self, window_s: float) -> dict[str, Any]:
        start = self._since(window_s)
        samples = [d for d in list(self.drift) if d.t >= start]
        return {
            "t": [d.t for d in samples],
            "version": [d.version for d in samples],
            "tv_previous": [d.tv_previous for d in samples],
            "kl_previous": [d.kl_previous for d in samples],
            "tv_first": [d.tv_first for d in samples],
            "kl_first": [d.kl_first for d in samples],
            "model_mass": {
                m: [d.model_mass.get(m, 0.0) for d in samples]
                for m in sorted({k for d in samples for k in d.model_mass})
            },
            "probes": len(self.probes),
        }

    def ope(self, window_s: float, z: float = 1.96, tenant: str | None = None) -> dict[str, Any]:
        """Off-policy estimates, on the window's rewarded decisions, of the live (logging) policy, uniform
        random and each single model: IPS and SNIPS with intervals of ``z`` standard errors. A tenant's view
        estimates its reward; a view pooled over several tenants estimates quality (``value`` says which), which
        every tenant reports within [0, 1]: one tenant's accepted extremes of energy or cost would otherwise
        decide every pooled figure."""
        _, samples = self._rewards(window_s, tenant)
        if not samples:
            return {"n": 0, "policies": {}}
        models = sorted({m for r in samples for m in r.models})
        actions = [0] * len(samples)
        propensities = [r.probability for r in samples]
        value = "quality" if len({r.tenant for r in samples}) > 1 else "reward"
        rewards = [r.quality if value == "quality" else r.reward for r in samples]
        targets: dict[str, list[list[float]]] = {
            # The logging policy gave the logged action its logged probability: every weight is 1.
            "live policy": [[r.probability] for r in samples],
            # The policy itself, which differs from what was served where a tenant is in apprentice mode.
            "bandit policy": [[r.policy_probability] for r in samples],
            "uniform random": [[1.0 / len(r.models)] for r in samples],
        }
        for m in models:
            targets[f"always {m}"] = [[float(r.models[r.index] == m)] for r in samples]
        result: dict[str, Any] = {}
        for name, target in targets.items():
            entry = {"ips": dataclasses.asdict(ips(target, actions, propensities, rewards, z=z))}
            if any(t[0] > 0 for t in target):
                entry["snips"] = dataclasses.asdict(snips(target, actions, propensities, rewards, z=z, resamples=200))
            result[name] = entry
        return {"n": len(samples), "z": z, "value": value, "policies": result}

    def alerts(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Drift alerts: a served policy that moved beyond the threshold within the last ``alert_hold_s``, with
        the models that gained and lost probability on the probes, by how much, and when; and a shift of the
        mean reward between the last two ``shift_window`` rewards. A young policy moves a lot as it learns; its
        swaps raise no alert before it has learned ``shift_window`` events."""
        found: list[dict[str, Any]] = []
        since = self.clock() - self.config.alert_hold_s
        for d in list(self.drift):
            if d.t >= since and d.learned >= self.config.shift_window and d.tv_previous > self.config.drift_alert_tv:
                change = {
                    m: d.model_mass.get(m, 0.0) - d.previous_mass.get(m, 0.0)
                    for m in sorted(set(d.model_mass) | set(d.previous_mass))
                }
                found.append(
                    {
                        "kind": "drift",
                        "t": d.t,
                        "version": d.version,
                        "previous": d.previous_version,
                        "text": (
                            f"{time.strftime('%H:%M:%S UTC', time.gmtime(d.t))}: policy {d.version} moved "
                            f"{d.tv_previous:.2f} in total variation from the one before it on the probes (alert above "
                            f"{self.config.drift_alert_tv:g}); {movers(change)}"
                        ),
                        "change": change,
                        "before": dict(d.previous_mass),
                        "after": dict(d.model_mass),
                    }
                )
        n = self.config.shift_window
        recent = [r.reward for r in list(self.rewards) if tenant is None or r.tenant == tenant][-2 * n :]
        if len(recent) == 2 * n:
            before, after = float(np.mean(recent[:n])), float(np.mean(recent[n:]))
            if abs(after - before) > self.config.reward_shift_alert:
                found.append(
                    {
                        "kind": "reward",
                        "t": self.clock(),
                        "text": (
                            f"mean reward of the last {n} rewards is {after:.3f}, {before:.3f} the {n} before "
                            f"(alert beyond {self.config.reward_shift_alert:g})"
                        ),
                    }
                )
        return found

    def health(self, learner_lag: int | None, expired: int | None, tenant: str | None = None) -> dict[str, Any]:
        """``expired`` is the store's count, over every replica; the monitor's own is this replica's. A tenant's
        view counts its own pending decisions and reward delays (None for the pooled figures)."""
        delays = [r.delay_s for r in list(self.rewards) if tenant is None or r.tenant == tenant][-1000:]
        pending = [t for t, who in list(self.outstanding.values()) if tenant is None or who == tenant]
        return {
            "pending": len(pending),
            "expired": expired,
            "learner_lag_events": learner_lag,
            "reward_delay_s": {
                "p50": float(np.percentile(delays, 50)) if delays else None,
                "p95": float(np.percentile(delays, 95)) if delays else None,
            },
            "decisions": len(self.routes) if tenant is None else sum(r.tenant == tenant for r in list(self.routes)),
            "rewards": len(self.rewards) if tenant is None else sum(r.tenant == tenant for r in list(self.rewards)),
        }
