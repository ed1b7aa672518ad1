"""A router's recent history, as the dashboard and /metrics read it: decisions, rewards, and policy drift.

The service tells the monitor of every decision, reward and newly served policy. Drift is measured on a
probe set, the last ``probe_size`` Route contexts: when a policy is swapped in, its pmfs on the probes are
compared with the previous policy's and with the first one's (total variation and KL divergence). What the
dashboard shows of it is computed on demand: the charts in :mod:`~bandit_router.observability.views`, alerts in
:mod:`~bandit_router.observability.alerts`, off-policy estimates in :mod:`~bandit_router.observability.estimates`.
"""

from __future__ import annotations

import collections
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bandit_router.config import DashboardConfig
from bandit_router.domain.records import LearningEvent
from bandit_router.domain.reward import bounded
from bandit_router.observability.metrics import Metrics
from bandit_router.observability.samples import DriftSample, RewardSample, RouteSample, divergence, entropy
from bandit_router.policy.vw import Policy
from bandit_router.policy.vwlines import Choice


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
        # The policy's predicted qualities of each routed decision's candidates, until its reward (bounded as above).
        self.predicted: dict[str, tuple[float, ...]] = {}
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
        predicted: Sequence[float] | None = None,
    ) -> None:
        """One decision: ``predicted`` is the policy's predicted quality of each candidate (in ``pmf``'s order)."""
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
        if predicted is not None:
            self.predicted[decision_id] = tuple(predicted)
            if len(self.predicted) > self.config.history:
                del self.predicted[next(iter(self.predicted))]
        self.metrics.decisions.labels(model).inc()

    def on_reward(self, decision_id: str, event: LearningEvent, tenant: str = "") -> None:
        now = self.clock()
        self.outstanding.pop(decision_id, None)
        own = self.policy_probability.pop(decision_id, None)
        predicted = self.predicted.pop(decision_id, ())
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
            tuple(p for _, p in event.pmf),
            predicted if len(predicted) == len(event.pmf) else (),
            tuple(event.penalties) if len(event.penalties) == len(event.pmf) else (),
            event.control_share,
            event.control,
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

    def on_dropped(self, decision_id: str) -> None:
        """A decision forgotten unlearned (its backend was unreachable or misconfigured)."""
        self.policy_probability.pop(decision_id, None)
        self.outstanding.pop(decision_id, None)

    def on_policy(
        self, policy: Policy, version: str, lock: contextlib.AbstractContextManager[Any] | None = None
    ) -> None:
        """Measures a newly served policy's drift from the one it replaces and from the first one seen, on
        today's probes. Calls VW on all three, each call under ``lock`` (the one Routes take to predict)."""
        guard = lock if lock is not None else contextlib.nullcontext()

        def pmfs_of(of: Policy) -> list[list[float]]:
            found = []
            for choice, _ in probes:
                with guard:
                    found.append(of.pmf(choice))
            return found

        probes = list(self.probes)
        first, previous = self._first or policy, self._previous or policy
        previous_version = self._previous_version or version
        self._first = first
        self._previous, self._previous_version = policy, version
        if not probes:
            return
        pmfs, before_pmfs = pmfs_of(policy), pmfs_of(previous)
        tv_prev, kl_prev = divergence(pmfs, before_pmfs)
        tv_first, kl_first = divergence(pmfs, pmfs_of(first))
        mass: dict[str, list[float]] = {}
        before: dict[str, list[float]] = {}
        for (_, models), pmf, previous_pmf in zip(probes, pmfs, before_pmfs, strict=True):
            for model, p, q in zip(models, pmf, previous_pmf, strict=True):
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


def since(monitor: Monitor, window_s: float) -> float:
    """When a window of ``window_s`` seconds began (0: everything kept)."""
    return monitor.clock() - window_s if window_s > 0 else -math.inf


def routes_in(monitor: Monitor, window_s: float, tenant: str | None) -> tuple[float, list[RouteSample]]:
    """The window's start and its decisions (of one tenant, or all with None), copied first: the deques
    grow while a view reads them."""
    start = since(monitor, window_s)
    return start, [r for r in list(monitor.routes) if r.t >= start and (tenant is None or r.tenant == tenant)]


def rewards_in(monitor: Monitor, window_s: float, tenant: str | None) -> tuple[float, list[RewardSample]]:
    start = since(monitor, window_s)
    return start, [r for r in list(monitor.rewards) if r.t >= start and (tenant is None or r.tenant == tenant)]
