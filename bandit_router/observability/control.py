"""The control group's A/B figure: routing against the baseline a random share of requests was served, measured.

With ``rollout.control_share`` s, each decision is drawn into the control group with probability s (by a number
derived from its id and the seed, and logged as such), where the baseline serves it, a named model, the app's
own, or uniform random over the candidates; the rest are routed. The two arms are a randomised experiment on the
same traffic, so their mean reward, quality, cost and energy compare directly. The difference of the means is
estimated from one term per rewarded decision, ``(r - b) / (1 - s)`` for a routed one and ``-(r - b) / s`` for a
control one, where ``b`` comes from the decisions before it (``s`` times the routed mean plus ``1 - s`` times the
control mean, which minimises the terms' variance): the terms' mean is the routed mean less the control mean
whatever ``b`` is, since the draw is independent of it, and such a ``b`` keeps the terms small (with ``b`` = 0,
40 control draws of an expected 30 on 300 decisions put the estimate near 0 where the arms' means differ by 0.15).
It comes with the same anytime-valid confidence sequence that apprentice promotion uses
(:func:`bandit_router.policy.apprentice.margin`): valid however often the dashboard looks.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from bandit_router.observability.monitor import Monitor, rewards_in
from bandit_router.observability.samples import RewardSample
from bandit_router.policy.apprentice import margin

FIGURES = ("reward", "quality", "cost_usd", "energy_joules")


def _means(samples: list[RewardSample]) -> dict[str, Any]:
    if not samples:
        return {"n": 0, **{figure: None for figure in FIGURES}}
    return {"n": len(samples), **{f: statistics.fmean(getattr(r, f) for r in samples) for f in FIGURES}}


def _drawn(samples: list[RewardSample]) -> list[tuple[RewardSample, float]]:
    """The decisions drawn under a control share, each with its share."""
    return [(r, r.control_share) for r in samples if r.control_share is not None]


def _baseline(arms: dict[bool, list[Any]], share: float) -> float:
    """``share * routed mean + (1 - share) * control mean`` so far: the ``b`` that minimises the terms' variance
    (each arm's deviation is weighted by the inverse of its probability), either arm's mean where the other has
    none yet, 0 before any."""
    (n_routed, routed), (n_control, control) = arms[False], arms[True]
    if not n_routed and not n_control:
        return 0.0
    if not n_routed or not n_control:
        return float((routed + control) / (n_routed + n_control))
    return float(share * routed / n_routed + (1.0 - share) * control / n_control)


def control_view(
    monitor: Monitor, window_s: float, tenant: str | None, confidence: float = 0.95, horizon: int = 5000
) -> dict[str, Any]:
    """Routing's and the control group's means on the window's rewarded decisions drawn under a control share, and
    the difference of the headline value (a tenant's reward; quality, pooled over tenants) with its ``confidence``
    sequence (tightest near ``horizon`` decisions)."""
    _, samples = rewards_in(monitor, window_s, tenant)
    drawn = _drawn(samples)
    routed = [r for r, _ in drawn if not r.control]
    control = [r for r, _ in drawn if r.control]
    value = "quality" if len({r.tenant for r, _ in drawn}) > 1 else "reward"
    body: dict[str, Any] = {"value": value, "routed": _means(routed), "control": _means(control), "n": len(drawn)}
    terms = []
    # Per arm: [count, sum] of the decisions before; the baseline is built from them alone, so it cannot depend on
    # this decision's draw.
    arms = {False: [0, 0.0], True: [0, 0.0]}
    for r, share in drawn:
        observed = getattr(r, value)
        terms.append((observed - _baseline(arms, share)) * (-1.0 / share if r.control else 1.0 / (1.0 - share)))
        arms[r.control][0] += 1
        arms[r.control][1] += observed
    if len(terms) < 2 or not control:
        body.update(difference=None, lower=None, upper=None)
        return body
    mean = statistics.fmean(terms)
    # Two-sided: each end holds with 1 - (1 - confidence) / 2.
    spread = margin(len(terms), statistics.stdev(terms), (1.0 - confidence) / 2, horizon)
    body.update(
        difference=mean,
        lower=mean - spread if math.isfinite(spread) else None,
        upper=mean + spread if math.isfinite(spread) else None,
        confidence=confidence,
    )
    return body


def against_best_single(ope: dict[str, Any]) -> dict[str, Any]:
    """From an off-policy view (:func:`bandit_router.observability.estimates.ope`): the live policy against the single
    model with the highest headline estimate among those estimable, or why none is."""
    key = ope.get("headline", "snips")
    policies = ope.get("policies", {})
    live = policies.get("live policy", {})
    singles = {n: p for n, p in policies.items() if n.startswith("always ") and key in p}
    if key not in live or not singles:
        refused = "; ".join(f"{n}: {p['not_estimable']}" for n, p in policies.items() if "not_estimable" in p)
        return {"method": key, "not_estimable": refused or "no rewarded decisions in the window"}
    best = max(singles, key=lambda n: singles[n][key]["value"])
    return {"method": key, "model": best.removeprefix("always "), "single": singles[best][key], "live": live[key]}
