"""Safe rollout: apprentice mode (the baseline serves most requests, the policy an exploration share) and the
control group (a random share served by a baseline, measured against routing), both with the true probabilities."""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

from bandit_router.config import RolloutConfig
from bandit_router.domain.requests import RouteInput
from bandit_router.policy.apprentice import Apprentices, Ledger
from bandit_router.policy.rule import uniform


def mode_of(rollout: RolloutConfig, tenant: str, promoted: Container[str]) -> str:
    """The mode ``tenant`` is served in: its configured one, but online once its policy was promoted (with
    ``rollout.auto_promote``; ``promoted`` lists the tenants the served policy's apprentice evidence promoted)."""
    mode = rollout.mode_of(tenant)
    if mode == "apprentice" and rollout.auto_promote and tenant in promoted:
        return "online"
    return mode


def baseline_of(
    rollout: RolloutConfig, request: RouteInput, candidates: Sequence[str], promoted: Container[str] = ()
) -> int | None:
    """The index among ``candidates`` of the model apprentice mode serves for ``request``; None when the tenant is
    online (configured, or promoted), or no baseline is named (configured, or the request's own) or left among the
    candidates."""
    if mode_of(rollout, request.tenant, promoted) != "apprentice":
        return None
    baseline = rollout.baseline or request.baseline
    return candidates.index(baseline) if baseline in candidates else None


def control_pmf(
    rollout: RolloutConfig, request: RouteInput, candidates: Sequence[str], decision_id: str, seed: int
) -> list[float] | None:
    """The pmf the control group serves ``request`` with where its decision is drawn into the group (with
    probability ``rollout.control_share``, by a number derived from the decision id, apart from the one that draws
    the action); None where it is routed. The control is a named model (``rollout.control``, or the request's own
    baseline for "app") where it is a candidate, else uniform random over the candidates."""
    if rollout.control_share <= 0 or not candidates or uniform(f"control:{decision_id}", seed) >= rollout.control_share:
        return None
    named = request.baseline if rollout.control == "app" else rollout.control
    if named in candidates:
        return [float(m == named) for m in candidates]
    return [1.0 / len(candidates)] * len(candidates)


def rollout_view(rollout: RolloutConfig, apprentices: Apprentices, tenant: str | None) -> list[dict[str, Any]]:
    """Each tenant's rollout as the dashboard shows it (only ``tenant``'s own; every one's for None): its mode as
    configured and as served, and the policy's and baseline's off-policy estimates on its apprentice traffic."""
    named = {entry.partition(":")[0] for entry in rollout.tenant_modes}
    tenants = sorted({"", *named, *apprentices.tenant_to_ledger}) if tenant is None else [tenant]
    promoted = apprentices.promoted()
    rows = []
    for name in tenants:
        ledger = apprentices.tenant_to_ledger.get(name, Ledger())
        rows.append(
            {
                "tenant": name,
                "configured": rollout.mode_of(name),
                "served": mode_of(rollout, name, promoted),
                "auto_promote": rollout.auto_promote,
                "confidence": rollout.promote_confidence,
                **ledger.view(rollout),
            }
        )
    return rows
