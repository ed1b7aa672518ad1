"""The monitor's records of routes, rewards and policy swaps, and the arithmetic of drift between two policies."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class RouteSample:
    t: float
    model: str
    task: str
    probability: float
    entropy: float
    # The caller's tenant ("" without authentication): a tenant's dashboard view shows its own samples only.
    tenant: str = ""


@dataclasses.dataclass(frozen=True)
class RewardSample:
    t: float
    model: str
    task: str
    reward: float
    quality: float
    cost_usd: float
    energy_joules: float
    energy_source: str
    delay_s: float
    models: tuple[str, ...]
    index: int
    probability: float
    tenant: str = ""
    # The policy's own probability of the action (the logged one but in apprentice mode).
    policy_probability: float = 0.0
    # The logging pmf over ``models`` (what an off-policy estimate's support is read from).
    pmf: tuple[float, ...] = ()
    # The logging policy's predicted quality of each of ``models`` when it decided, and each one's penalty (expected
    # energy and cost at the request's weights): the doubly robust estimates' reward model. Empty where this router
    # did not route the decision (another replica did).
    predicted: tuple[float, ...] = ()
    penalties: tuple[float, ...] = ()
    # The control share the decision was drawn under (None: none), and whether it was drawn into the control group.
    control_share: float | None = None
    control: bool = False


@dataclasses.dataclass(frozen=True)
class DriftSample:
    t: float
    version: str
    tv_previous: float
    kl_previous: float
    tv_first: float
    kl_first: float
    # Events the policy had learned.
    learned: int
    # Each model's mean probability over the probes under this policy, and under the one it replaced.
    model_mass: dict[str, float]
    previous_mass: dict[str, float]
    previous_version: str


def entropy(pmf: Sequence[float]) -> float:
    return -sum(p * math.log(p) for p in pmf if p > 0)


def divergence(p: Sequence[Sequence[float]], q: Sequence[Sequence[float]]) -> tuple[float, float]:
    """Mean total variation and mean KL(p || q) over probes; q is floored at 1e-6 so KL stays finite."""
    tvs, kls = [], []
    for a, b in zip(p, q, strict=True):
        x, y = np.asarray(a), np.maximum(np.asarray(b), 1e-6)
        tvs.append(0.5 * float(np.abs(x - np.asarray(b)).sum()))
        kls.append(float(np.sum(np.where(x > 0, x * np.log(np.maximum(x, 1e-12) / y), 0.0))))
    return float(np.mean(tvs)), float(np.mean(kls))


def movers(change: dict[str, float], most: int = 3) -> str:
    """ "gained a +0.40, b +0.10; lost c -0.50": the models whose mean probability moved by 0.01 or more."""
    gained = sorted(((m, c) for m, c in change.items() if c >= 0.01), key=lambda mc: -mc[1])[:most]
    lost = sorted(((m, c) for m, c in change.items() if c <= -0.01), key=lambda mc: mc[1])[:most]
    parts = [
        f"{word} " + ", ".join(f"{m} {c:+.2f}" for m, c in movers)
        for word, movers in (("gained", gained), ("lost", lost))
        if movers
    ]
    return "; ".join(parts) or "no model moved by 0.01 or more"
