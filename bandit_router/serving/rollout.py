"""Apprentice mode: the baseline serves most requests, the policy an exploration share, with the true probabilities."""

from __future__ import annotations

from collections.abc import Sequence

from bandit_router.config import RolloutConfig
from bandit_router.domain.requests import RouteInput


def baseline_of(rollout: RolloutConfig, request: RouteInput, candidates: Sequence[str]) -> int | None:
    """The index among ``candidates`` of the model apprentice mode serves for ``request``; None when the tenant is
    online, or no baseline is named (configured, or the request's own) or left among the candidates."""
    if rollout.mode_of(request.tenant) != "apprentice":
        return None
    baseline = rollout.baseline or request.baseline
    return candidates.index(baseline) if baseline in candidates else None


def apprentice_pmf(policy_pmf: Sequence[float], baseline: int, exploration: float) -> list[float]:
    """The pmf actually sampled: the baseline with probability 1 - ``exploration``, else the policy's own draw.

    Every model the policy gives a chance keeps a logged probability of at least ``exploration`` times it, so
    off-policy estimates of the policy stay unbiased on apprentice traffic."""
    pmf = [exploration * p for p in policy_pmf]
    pmf[baseline] += 1.0 - exploration
    return pmf
