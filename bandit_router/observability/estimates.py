"""Off-policy estimates on the monitor's rewarded decisions: the live policy, uniform random, each single model."""

from __future__ import annotations

import dataclasses
from typing import Any

from bandit_router.observability.monitor import Monitor, rewards_in
from bandit_router.policy.ope import MIN_ESS, MIN_SUPPORT, doubly_robust, ips, logged_only, snips, support


def ope(
    monitor: Monitor,
    window_s: float,
    z: float = 1.96,
    tenant: str | None = None,
    min_support: float = MIN_SUPPORT,
    min_ess: float = MIN_ESS,
) -> dict[str, Any]:
    """Off-policy estimates, on the window's rewarded decisions, of the live (logging) policy, uniform random and
    each single model: doubly robust (the headline, where this router decided every decision and so knows the
    quality it predicted for each candidate), IPS and SNIPS with intervals of ``z`` standard errors, each with its
    support (the share of decisions on which the logger could have taken every action the target may take) and
    the effective sample size of its weights. Below ``min_support`` or ``min_ess`` a policy gets no number, only
    ``not estimable (support 9%, ESS 4)``. A tenant's view estimates its reward; a view pooled over several tenants
    estimates quality (``value`` says which), which every tenant reports within [0, 1]: one tenant's accepted
    extremes of energy or cost would otherwise decide every pooled figure."""
    _, samples = rewards_in(monitor, window_s, tenant)
    if not samples:
        return {"n": 0, "policies": {}}
    models = sorted({m for r in samples for m in r.models})
    actions = [r.index for r in samples]
    propensities = [r.probability for r in samples]
    # Samples from before they kept the logging pmf know only the logged action's probability.
    logging = [list(r.pmf) or logged_only(r.index, r.probability, len(r.models)) for r in samples]
    value = "quality" if len({r.tenant for r in samples}) > 1 else "reward"
    rewards = [r.quality if value == "quality" else r.reward for r in samples]
    # The doubly robust reward model, where this router decided every sample: the logging policy's predicted
    # quality of each candidate when it decided, less its computed penalty where the value is a tenant's reward.
    predicted = (
        [
            [q - c for q, c in zip(r.predicted, r.penalties or [0.0] * len(r.predicted), strict=True)]
            if value == "reward"
            else list(r.predicted)
            for r in samples
        ]
        if all(r.predicted for r in samples)
        else None
    )
    targets: dict[str, list[list[float]]] = {
        "live policy": logging,
        "uniform random": [[1.0 / len(r.models)] * len(r.models) for r in samples],
    }
    for m in models:
        # Where M was not offered, "always M" takes what was logged: a policy chooses among what it is offered.
        targets[f"always {m}"] = [
            [float(x == m) for x in r.models] if m in r.models else logged
            for r, logged in zip(samples, logging, strict=True)
        ]
    result: dict[str, Any] = {}
    for name, target in targets.items():
        result[name] = _entry(target, logging, actions, propensities, rewards, z, min_support, min_ess, predicted)
    # The policy itself, which differs from what was served where a tenant is in apprentice mode: only its
    # probability of the logged action is known, and the apprentice's logger keeps at least its exploration
    # share of every action the policy may take, so it is supported wherever it was logged.
    own = [[r.policy_probability] for r in samples]
    result["bandit policy"] = _entry(
        own, [[r.probability] for r in samples], [0] * len(samples), propensities, rewards, z, min_support, min_ess
    )
    return {"n": len(samples), "z": z, "value": value, "min_support": min_support, "min_ess": min_ess,
            "headline": "dr" if predicted is not None else "snips", "policies": result}  # fmt: skip


def _entry(
    target: list[list[float]],
    logging: list[list[float]],
    actions: list[int],
    propensities: list[float],
    rewards: list[float],
    z: float,
    min_support: float,
    min_ess: float,
    predicted: list[list[float]] | None = None,
) -> dict[str, Any]:
    """One policy's estimates (doubly robust too where there is a reward model), or why there are none."""
    backing = support(target, logging, actions, propensities)
    entry: dict[str, Any] = {"support": backing.share, "ess": backing.ess}
    if not backing.estimable(min_support, min_ess):
        entry["not_estimable"] = f"not estimable ({backing.describe()})"
        return entry
    entry["ips"] = dataclasses.asdict(ips(target, actions, propensities, rewards, z=z))
    if predicted is not None:
        entry["dr"] = dataclasses.asdict(doubly_robust(target, actions, propensities, rewards, predicted, z=z))
    if any(row[a] > 0 for row, a in zip(target, actions, strict=True)):
        entry["snips"] = dataclasses.asdict(snips(target, actions, propensities, rewards, z=z, resamples=200))
    return entry
