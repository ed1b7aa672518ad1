"""What a model is expected to cost and consume on a query: catalog rates times known and predicted tokens,
corrected by what its rewards have shown, per model and per task.

The input tokens are known at Route time; the output tokens are predicted from the model's observed answers
(per task, shrunk towards the model's own mean, which starts at the catalog's typical answer). Cost and energy
are then the catalog's prices and energy profile at those tokens, plus the mean residual of what was reported
or measured over what the catalog would have said at the tokens observed: zero while costs are computed from
tokens, the real price difference where a provider bills otherwise, NVML's correction where energy is
measured. Expected cost and energy are linear in the tokens, so these means give the expected penalty exactly
when the estimates are right.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bandit_router.config import ModelSpec, RewardConfig
from bandit_router.domain.reward import Figure, Tokens, cost_of, energy_of, weighted_penalty

# A cell (model, task) counts as this many observations of the model's own mean before its own are added.
PRIOR_WEIGHT = 2.0
# Means are running means over at most this many observations, then exponentially weighted, so a price
# change or a model that starts answering at greater length is followed.
HORIZON = 200


@dataclasses.dataclass
class Mean:
    """A running mean over the last ~``HORIZON`` observations."""

    value: float = 0.0
    n: int = 0

    def add(self, x: float) -> None:
        self.n += 1
        self.value += (x - self.value) / min(self.n, HORIZON)

    def shrunk(self, prior: float) -> float:
        """The mean, pulled towards ``prior`` as if the prior were ``PRIOR_WEIGHT`` observations."""
        weight = min(self.n, HORIZON)
        return (weight * self.value + PRIOR_WEIGHT * prior) / (weight + PRIOR_WEIGHT)


@dataclasses.dataclass
class Observed:
    """One model's (or one model-and-task cell's) observed output tokens and residuals."""

    output_tokens: Mean = dataclasses.field(default_factory=Mean)
    cost_residual: Mean = dataclasses.field(default_factory=Mean)
    energy_residual: Mean = dataclasses.field(default_factory=Mean)

    def to_json(self) -> list[float]:
        return [
            self.output_tokens.value,
            self.output_tokens.n,
            self.cost_residual.value,
            self.cost_residual.n,
            self.energy_residual.value,
            self.energy_residual.n,
        ]

    @classmethod
    def from_json(cls, raw: list[float]) -> Observed:
        return cls(Mean(raw[0], int(raw[1])), Mean(raw[2], int(raw[3])), Mean(raw[4], int(raw[5])))


@dataclasses.dataclass(frozen=True)
class Expected:
    energy_joules: float
    cost_usd: float
    output_tokens: float
    # True once the model has been observed (its estimate is no longer the catalog's alone).
    observed: bool
    # False for a model without an energy profile whose energy has never been measured or reported: its
    # energy_joules (0) says nothing, and the energy weight does not apply to it.
    energy_known: bool = True


def catalog_energy(model: ModelSpec, input_tokens: float, output_tokens: float) -> float:
    """The catalog profile's energy at these tokens; 0 for a model without one, whose energy is unknown until
    measured (then the residual carries all of it)."""
    if model.energy_j_per_input_token is None or model.energy_j_per_output_token is None:
        return 0.0
    return input_tokens * model.energy_j_per_input_token + output_tokens * model.energy_j_per_output_token


def catalog_cost(model: ModelSpec, input_tokens: float, output_tokens: float) -> float:
    return (input_tokens * model.input_usd_per_mtok + output_tokens * model.output_usd_per_mtok) / 1e6


def penalty(expected: Expected, energy_weight: float, cost_weight: float, scales: RewardConfig) -> float:
    """The part of the reward known before the answer, at the request's weights."""
    return weighted_penalty(expected.energy_joules, expected.cost_usd, energy_weight, cost_weight, scales)


@dataclasses.dataclass(frozen=True)
class Priced:
    """What an answered (or expired) decision cost, with the catalog's figures at the same tokens."""

    tokens: Tokens
    cost: Figure
    energy: Figure
    catalog_cost_usd: float
    catalog_energy_joules: float


def price_outcome(
    model: ModelSpec,
    tokens: Tokens,
    reported_cost: float | None = None,
    reported_energy: float | None = None,
    measured: Figure | None = None,
    unmeasured: str = "",
) -> Priced:
    """The cost and energy of one answer (see ``cost_of`` and ``energy_of`` for which figure wins), priced the
    same way for a Reward and for an expiry's default reward."""
    return Priced(
        tokens,
        cost_of(model, reported_cost, tokens),
        energy_of(model, reported_energy, tokens, measured, unmeasured),
        catalog_cost(model, tokens.input, tokens.output),
        catalog_energy(model, tokens.input, tokens.output),
    )


class Pricing:
    """Per-model and per-(model, task) observations, and the expected energy and cost they imply.

    With tenants, each tenant's pricing is its own, learned from its own rewards only (``tenant``): what one
    tenant reports (its tokens, its bills, its energy) prices the models for it alone, so that no report,
    however extreme within the bounds Reward checks, moves another tenant's routing. The tenant "" (no
    authentication) is this object's own.
    """

    def __init__(self) -> None:
        self.model_to_observed: dict[str, Observed] = {}
        self.cell_to_observed: dict[tuple[str, str], Observed] = {}
        self.tenant_to_pricing: dict[str, Pricing] = {}

    def of(self, tenant: str) -> Pricing:
        """The pricing ``tenant`` routes with (created, from the catalog's figures, at its first reward)."""
        if not tenant:
            return self
        found = self.tenant_to_pricing.get(tenant)
        return found if found is not None else Pricing()

    def expected(self, model: ModelSpec, task: str, input_tokens: int, tenant: str = "") -> Expected:
        if tenant:
            return self.of(tenant).expected(model, task, input_tokens)
        overall = self.model_to_observed.get(model.id)
        if overall is None:
            tokens = model.typical_output_tokens
            return Expected(
                catalog_energy(model, input_tokens, tokens),
                catalog_cost(model, input_tokens, tokens),
                tokens,
                False,
                model.energy_known,
            )
        cell = self.cell_to_observed.get((model.id, task), Observed())
        out = overall.output_tokens.value if overall.output_tokens.n else model.typical_output_tokens
        out = cell.output_tokens.shrunk(out) if cell.output_tokens.n else out
        cost_residual = cell.cost_residual.shrunk(overall.cost_residual.value)
        energy_residual = cell.energy_residual.shrunk(overall.energy_residual.value)
        return Expected(
            max(0.0, catalog_energy(model, input_tokens, out) + energy_residual),
            max(0.0, catalog_cost(model, input_tokens, out) + cost_residual),
            out,
            True,
            model.energy_known or overall.energy_residual.n > 0,
        )

    def observe(
        self,
        model: str,
        task: str,
        output_tokens: int | None,
        cost_residual: float,
        energy_residual: float | None,
        tenant: str = "",
    ) -> None:
        """One rewarded answer: its output tokens (None if not reported), and how far its cost and energy were
        from the catalog's figures at the tokens it was priced with (energy None: unknown, not learned); into
        ``tenant``'s own pricing when there is one."""
        if tenant:
            own = self.tenant_to_pricing.setdefault(tenant, Pricing())
            own.observe(model, task, output_tokens, cost_residual, energy_residual)
            return
        for observed in (
            self.model_to_observed.setdefault(model, Observed()),
            self.cell_to_observed.setdefault((model, task), Observed()),
        ):
            if output_tokens is not None:
                observed.output_tokens.add(output_tokens)
            observed.cost_residual.add(cost_residual)
            if energy_residual is not None:
                observed.energy_residual.add(energy_residual)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "models": {m: o.to_json() for m, o in self.model_to_observed.items()},
            "cells": [[m, t, o.to_json()] for (m, t), o in self.cell_to_observed.items()],
        }
        if self.tenant_to_pricing:
            body["tenants"] = {t: p.to_json() for t, p in self.tenant_to_pricing.items()}
        return body

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Pricing:
        pricing = cls()
        pricing.model_to_observed = {m: Observed.from_json(o) for m, o in raw.get("models", {}).items()}
        pricing.cell_to_observed = {(m, t): Observed.from_json(o) for m, t, o in raw.get("cells", [])}
        pricing.tenant_to_pricing = {t: cls.from_json(p) for t, p in raw.get("tenants", {}).items()}
        return pricing
