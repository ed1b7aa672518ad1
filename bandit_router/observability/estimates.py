"""Off-policy estimates on the monitor's rewarded decisions: the live policy, uniform random, each single model."""

from __future__ import annotations

import dataclasses
from typing import Any

from bandit_router.observability.monitor import Monitor, rewards_in
from bandit_router.policy.ope import ips, snips


def ope(monitor: Monitor, window_s: float, z: float = 1.96, tenant: str | None = None) -> dict[str, Any]:
    """Off-policy estimates, on the window's rewarded decisions, of the live (logging) policy, uniform
    random and each single model: IPS and SNIPS with intervals of ``z`` standard errors. A tenant's view
    estimates its reward; a view pooled over several tenants estimates quality (``value`` says which), which
    every tenant reports within [0, 1]: one tenant's accepted extremes of energy or cost would otherwise
    decide every pooled figure."""
    _, samples = rewards_in(monitor, window_s, tenant)
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
