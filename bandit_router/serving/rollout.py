"""Apprentice mode: the baseline serves most requests, the policy an exploration share, with the true probabilities."""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

from bandit_router.config import RolloutConfig
from bandit_router.domain.requests import RouteInput
from bandit_router.policy.apprentice import Apprentices, Ledger


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
