"""Turning estimated qualities into a pmf: optimism in proportion to how little each model has been seen.

For each candidate the policy knows an estimated quality q (learned), a width w (from how many rewards of
that model it has seen, overall and in this query's cells) and a penalty c (its expected energy and cost at
the request's weights, computed, not learned). Quality lies in [0, 1], so a model's optimistic score is
``min(q + w, 1) - c`` and its expected score ``q - c``. The leaders (the best optimistic score; ties share)
take ``1 - epsilon``; ``epsilon`` is shared by every model whose optimistic score reaches the best expected
score. A model that cannot be the best even if it answered perfectly gets probability 0: what is known rules
it out without a trial. The pmf is what the action is sampled from, so the logged probability is the true one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

# Scores closer than this count as a tie (VW computes in float32).
TIE = 1e-6


def optimistic_pmf(
    qualities: Sequence[float], widths: Sequence[float], penalties: Sequence[float], epsilon: float
) -> list[float]:
    """The pmf over candidates, in their order (see the module docstring)."""
    if not qualities:
        return []
    expected = [q - c for q, c in zip(qualities, penalties, strict=True)]
    optimistic = [min(q + w, 1.0) - c for q, w, c in zip(qualities, widths, penalties, strict=True)]
    top = max(optimistic)
    leaders = [i for i, u in enumerate(optimistic) if u >= top - TIE]
    best_expected = max(expected)
    plausible = [i for i, u in enumerate(optimistic) if u >= best_expected - TIE]
    pmf = [0.0] * len(qualities)
    for i in leaders:
        pmf[i] += (1.0 - epsilon) / len(leaders)
    for i in plausible:
        pmf[i] += epsilon / len(plausible)
    return pmf


class Evidence:
    """How many rewards each model has had, overall and per context feature (task, cluster)."""

    def __init__(self) -> None:
        self.model_to_count: dict[str, int] = {}
        self.cell_to_count: dict[tuple[str, str], int] = {}

    def add(self, model: str, cells: Iterable[str], weight: int = 1) -> None:
        self.model_to_count[model] = self.model_to_count.get(model, 0) + weight
        for cell in cells:
            key = (model, cell)
            self.cell_to_count[key] = self.cell_to_count.get(key, 0) + weight

    def width(self, model: str, cells: Sequence[str], explore_model: float, explore_context: float) -> float:
        """sqrt(a0^2 / (1 + n_model) + sum over cells of a1^2 / (1 + n_cell)): the diagonal of a ridge
        regression's posterior variance for one-hot features, scaled by how far the policy may be wrong."""
        total = explore_model**2 / (1 + self.model_to_count.get(model, 0))
        for cell in cells:
            total += explore_context**2 / (1 + self.cell_to_count.get((model, cell), 0))
        return math.sqrt(total)

    def to_json(self) -> dict[str, Any]:
        return {
            "models": self.model_to_count,
            "cells": [[m, c, n] for (m, c), n in self.cell_to_count.items()],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Evidence:
        evidence = cls()
        evidence.model_to_count = {m: int(n) for m, n in raw.get("models", {}).items()}
        evidence.cell_to_count = {(m, c): int(n) for m, c, n in raw.get("cells", [])}
        return evidence
