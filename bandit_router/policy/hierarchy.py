"""A shrunk mean of each model's quality per context cell, the prior VW's estimate is read against.

VW's regressor extrapolates a model's quality into a cell (a task, a cluster) where it has never been tried from
weights learned elsewhere, and a model it once predicted low there is never tried there again: the lock-out a
long stream showed (the best model overall predicted 0.31 in a task where it answers 0.89). Here the same
rewards give an estimate that falls back the way an empirical-Bayes hierarchy does: a model's mean in a cell is
shrunk toward what the model earns overall moved by how that cell differs from the average (every model's
rewards in it), which is shrunk toward the overall mean; each level by ``strength`` pseudo-rewards.

:meth:`Policy.qualities <bandit_router.policy.vw.Policy.qualities>` reads VW's estimate through it: where the
model has ``n`` rewards in the query's least-seen cell the quality is ``(n * vw + strength * prior) / (n +
strength)``, so VW decides where it has seen the model and the hierarchy where it has not.

>>> means = Means()
>>> for q in (0.9, 0.8, 0.9):
...     means.add("big", ["T:code"], q)
>>> means.add("small", ["T:math"], 0.2)
>>> round(means.prior("big", ["T:math"], strength=2.0), 3)  # never tried on math: its own mean, moved by math's
0.629
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

# The key of every model's rewards together, beside the model ids.
EVERY_MODEL = ""


class Means:
    """Sums and counts of quality per model, per (model, cell) and per cell over every model."""

    def __init__(self) -> None:
        # (model or EVERY_MODEL, cell or "") -> [count, sum of quality]
        self.key_to_total: dict[tuple[str, str], list[float]] = {}

    def add(self, model: str, cells: Iterable[str], quality: float) -> None:
        cells = list(cells)
        for key in ((m, c) for m in (model, EVERY_MODEL) for c in ("", *cells)):
            total = self.key_to_total.setdefault(key, [0.0, 0.0])
            total[0] += 1
            total[1] += quality

    def count(self, model: str, cell: str = "") -> float:
        return self.key_to_total.get((model, cell), (0.0, 0.0))[0]

    def _shrunk(self, model: str, cell: str, toward: float, strength: float) -> float:
        n, total = self.key_to_total.get((model, cell), (0.0, 0.0))
        return (total + strength * toward) / (n + strength)

    def prior(self, model: str, cells: Sequence[str], strength: float) -> float:
        """The hierarchy's estimate of ``model`` in a context of ``cells`` (the mean over the cells)."""
        overall = self._shrunk(EVERY_MODEL, "", 0.5, strength)
        own = self._shrunk(model, "", overall, strength)
        if not cells:
            return own
        found = []
        for cell in cells:
            shift = self._shrunk(EVERY_MODEL, cell, overall, strength) - overall
            found.append(self._shrunk(model, cell, min(1.0, max(0.0, own + shift)), strength))
        return sum(found) / len(found)

    def blend(self, model: str, cells: Sequence[str], estimate: float, strength: float) -> float:
        """``estimate`` (VW's) read against the prior: weighted by the model's rewards in its least-seen cell."""
        if strength <= 0:
            return estimate
        n = min((self.count(model, c) for c in cells), default=self.count(model))
        prior = self.prior(model, cells, strength)
        return (n * estimate + strength * prior) / (n + strength)

    def to_json(self) -> list[list[Any]]:
        return [[m, c, n, s] for (m, c), (n, s) in self.key_to_total.items()]

    @classmethod
    def from_json(cls, raw: Sequence[Sequence[Any]]) -> Means:
        means = cls()
        means.key_to_total = {(str(m), str(c)): [float(n), float(s)] for m, c, n, s in raw}
        return means
