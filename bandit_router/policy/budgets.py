"""Budgets: which candidates a request's cost, energy and latency limits leave, and why the others went."""

from __future__ import annotations

from collections.abc import Mapping

from bandit_router.config import ModelSpec
from bandit_router.domain.pricing import Expected
from bandit_router.domain.requests import BUDGETS, RouteInput
from bandit_router.domain.reward import RunningEstimate
from bandit_router.errors import FailedPrecondition


def _figures(figure: Expected, seen: RunningEstimate | None) -> dict[str, tuple[float | None, str] | None]:
    """Each budget's figure for one model and where it came from; None where nothing can be said."""
    source = "observed" if figure.observed else "catalog"
    return {
        "max_cost_usd": (figure.cost_usd, source),
        # A model whose energy is unknown cannot be shown to fit an energy budget.
        "max_energy_joules": (figure.energy_joules, source) if figure.energy_known else (None, "unknown"),
        # A model with no observed latency is kept: it could never be observed otherwise.
        "max_latency_ms": (seen.latency_ms, "observed") if seen and seen.latency_observations else None,
    }


def within_budget(
    request: RouteInput,
    candidates: list[ModelSpec],
    expected: Mapping[str, Expected],
    estimates: Mapping[str, RunningEstimate],
) -> tuple[list[ModelSpec], list[str]]:
    """Drops the candidates whose expected cost or energy for this query (observed, or before any observation
    the catalog's) or running latency (``estimates``, the tenant's) breaks a budget; returns those kept and
    why each other one went. Raises FailedPrecondition when none is left."""
    limits = {name: getattr(request, name) for name in BUDGETS if getattr(request, name) is not None}
    if not limits:
        return candidates, []
    kept: list[ModelSpec] = []
    excluded: list[str] = []
    by_budget: dict[str, list[str]] = {name: [] for name in limits}
    for model in candidates:
        figures = _figures(expected[model.id], estimates.get(model.id))
        broken = []
        for name, limit in limits.items():
            found = figures[name]
            if found is None:
                continue
            value, where = found
            if value is None:
                broken.append(f"{name}={limit:g} (energy unknown)")
                by_budget[name].append(f"{model.id} (energy unknown)")
            elif value > limit:
                broken.append(f"{name}={limit:g} ({where} {value:.6g})")
                by_budget[name].append(f"{model.id} ({value:.6g})")
        if broken:
            excluded.append(f"{model.id}: " + ", ".join(broken))
        else:
            kept.append(model)
    if not kept:
        reasons = "; ".join(
            f"{name}={limits[name]:g} excludes {', '.join(ids)}" for name, ids in by_budget.items() if ids
        )
        raise FailedPrecondition(f"budget: no candidate fits: {reasons}")
    return kept, excluded
