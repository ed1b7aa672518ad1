"""Quality gate (the AMRO-S idea): a new snapshot is served only if off-policy evaluation says it is not worse.

The learner learns every reward event into its candidate policy and persists it, so nothing learned is
lost; what the gate decides is which snapshot Route serves. On the last ``gate_window`` learned events it
compares the self-normalised IPS (SNIPS) estimates of the candidate and of the serving policy, each with
its exploration as served, and holds the candidate back only when it is worse beyond the tolerance with
confidence (a paired bootstrap interval of the difference). The candidate has learned those events, so
its estimate leans optimistic. A burst of corrupted rewards pulls the candidate towards what the corrupted
rewards favour, while the window, still mostly the uncorrupted events, scores that candidate lower than
the serving policy: the gate holds the serving policy until the candidate has learned its way back.

The router's gate judges quality, not reward: quality is what the policy learns and what every tenant reports
within [0, 1], while energy and cost are computed, the same way for both policies. So one tenant's accepted
extremes of reported energy or cost (a reward clipped at -1e6) cannot decide the verdict for the policy every
tenant is served; a tenant's quality reports weigh as its share of the window's decisions, as they should.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from typing import Any

import numpy as np

from bandit_router.config import PolicyConfig
from bandit_router.policy.ope import Estimate, Support, logged_only, snips, support
from bandit_router.policy.vw import Policy
from bandit_router.policy.vwlines import Choice


@dataclasses.dataclass(frozen=True)
class Logged:
    """One learned decision as the gate replays it: what the policy saw, the logged action, and the value judged
    (the learner's: the quality reported, bounded to [0, 1] whoever reported it)."""

    choice: Choice
    index: int
    probability: float
    value: float
    # The logging pmf over the choice's actions (None: only the logged action's probability is known).
    logging: tuple[float, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The gate's decision on one snapshot."""

    version: int
    promoted: bool
    reason: str
    window: int
    candidate: Estimate | None = None
    serving: Estimate | None = None
    # How much of the window can speak for the candidate, where it was measured, and whether that was enough.
    support: Support | None = None
    estimable: bool = True
    at: float = dataclasses.field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "at": self.at,
            "version": self.version,
            "promoted": self.promoted,
            "reason": self.reason,
            "window": self.window,
        }
        for name in ("candidate", "serving"):
            estimate = getattr(self, name)
            if estimate is not None:
                body[name] = {"snips": estimate.value, "low": estimate.low, "high": estimate.high}
        if self.support is not None:
            body["support"] = self.support.share
            body["ess"] = self.support.ess
            body["estimable"] = self.estimable
        return body


class Gate:
    """Keeps the recent window of learned decisions and judges candidate snapshots on it."""

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        # Each learned decision with its sequence number, the key of the probability caches below (an
        # object's id() is reused once the window drops it, and would hand a new event an old probability).
        self.window: collections.deque[tuple[int, Logged]] = collections.deque(maxlen=max(1, config.gate_window))
        self._observed = 0
        # The serving policy's probability of each windowed decision's action, kept until it changes:
        # only the candidate, new at every snapshot, has to be asked again.
        self._serving_policy: Policy | None = None
        self._serving_probability: dict[int, float] = {}
        self._candidate_probability: dict[int, float] = {}

    @property
    def enabled(self) -> bool:
        return self.config.gate_window > 0

    def observe(self, logged: Logged) -> None:
        if self.enabled:
            self.window.append((self._observed, logged))
            self._observed += 1

    def _serving_probabilities(self, serving: Policy, window: list[tuple[int, Logged]]) -> list[list[float]]:
        if serving is not self._serving_policy:
            self._serving_policy, self._serving_probability = serving, {}
        known, cache = self._serving_probability, {}
        for seq, e in window:  # only the decisions still in the window are kept
            cached = known.get(seq)
            cache[seq] = cached if cached is not None else serving.pmf(e.choice)[e.index]
        self._serving_probability = cache
        return [[cache[seq]] for seq, _ in window]

    def adopt(self, serving: Policy) -> None:
        """``serving`` is a copy of the candidate just promoted: its probabilities are the candidate's."""
        self._serving_policy, self._serving_probability = serving, self._candidate_probability

    def judge(self, version: int, candidate: Policy, serving: Policy) -> Verdict:
        """Promote or hold back ``candidate``. Calls VW on both policies: run it on the thread that owns them.

        Held back only when the candidate is worse beyond the tolerance with confidence: the upper end of
        a paired bootstrap interval (``gate_z`` standard errors wide) of the SNIPS difference, candidate
        minus serving, on the window is below ``-gate_tolerance``. Two policies that the window cannot tell
        apart are a promotion, so a learner is never stuck behind a tie."""
        window = list(self.window)
        events = [e for _, e in window]
        if not self.enabled:
            return Verdict(version, True, "gate off", 0)
        if len(events) < self.config.gate_min_events:
            return Verdict(version, True, f"window holds {len(events)} < {self.config.gate_min_events} events", 0)
        actions = [0] * len(events)
        propensities = [e.probability for e in events]
        rewards = [e.value for e in events]
        pmfs = [candidate.pmf(e.choice) for e in events]
        backing = support(
            pmfs,
            [
                list(e.logging) if e.logging else logged_only(e.index, e.probability, len(pmf))
                for e, pmf in zip(events, pmfs, strict=True)
            ],
            [e.index for e in events],
            propensities,
        )
        # One column per decision: the policy's probability of the logged action (action 0 below).
        p_new = [[pmf[e.index]] for pmf, e in zip(pmfs, events, strict=True)]
        try:
            p_old = self._serving_probabilities(serving, window)
            new = snips(p_new, actions, propensities, rewards, z=self.config.gate_z)
            old = snips(p_old, actions, propensities, rewards, z=self.config.gate_z)
        except ValueError as exc:  # a policy gives the logged actions no probability at all
            return Verdict(version, True, f"no estimate ({exc})", len(events))
        self._candidate_probability = {seq: p[0] for (seq, _), p in zip(window, p_new, strict=True)}
        upper = _paired_upper(p_new, p_old, propensities, rewards, self.config.gate_z)
        promoted = upper >= -self.config.gate_tolerance
        difference = new.value - old.value
        # A candidate the window cannot speak for as a whole is still judged on the decisions that can (a burst of
        # corrupted rewards makes exactly such a candidate: it turns to models the serving policy ruled out), but
        # its estimate is not shown as the candidate's value.
        estimable = backing.estimable(self.config.gate_min_support, self.config.gate_min_ess)
        caveat = "" if estimable else f"not estimable ({backing.describe()}), judged on the decisions that support it: "
        reason = caveat + (
            f"SNIPS {new.value:.4f} vs {old.value:.4f} serving, {'higher' if difference >= 0 else 'lower'} by "
            f"{abs(difference):.4f} ± {max(upper - difference, 0.0):.4f} ({self.config.gate_z:g} s.e., "
            f"{len(events)} events, {backing.describe()}): {'within' if promoted else 'beyond'} tolerance "
            f"{self.config.gate_tolerance:g}"
        )
        return Verdict(version, promoted, reason, len(events), new, old, backing, estimable)


def _paired_upper(
    p_new: list[list[float]],
    p_old: list[list[float]],
    propensities: list[float],
    rewards: list[float],
    z: float,
    resamples: int = 400,
    seed: int = 0,
) -> float:
    """Upper end of a bootstrap interval of SNIPS(new) - SNIPS(old), resampling decisions in pairs."""
    p = np.asarray(propensities)
    r = np.asarray(rewards)
    w_new = np.asarray(p_new)[:, 0] / p
    w_old = np.asarray(p_old)[:, 0] / p
    draws = np.random.default_rng(seed).integers(0, len(r), size=(resamples, len(r)))

    def snips_of(w: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        totals = w[draws].sum(axis=1)
        return np.asarray((w * r)[draws].sum(axis=1) / np.where(totals > 0, totals, np.nan))

    difference = snips_of(w_new) - snips_of(w_old)
    difference = difference[np.isfinite(difference)]
    if len(difference) == 0:
        return math.inf
    tail = 100 * (1 - math.erf(z / math.sqrt(2))) / 2
    return float(np.percentile(difference, 100 - tail))
