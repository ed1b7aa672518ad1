"""The evidence behind each model's width: rewards seen per model and per context cell, and trials in flight.

:mod:`bandit_router.policy.rule` turns the widths into optimism; here is only what they are counted from.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Iterable, Sequence
from typing import Any


def _bump(counts: dict[Any, int], key: Any, weight: int) -> None:
    total = counts.get(key, 0) + weight
    if total:
        counts[key] = total
    else:
        counts.pop(key, None)


class Evidence:
    """How many rewards each model has had, overall and per context feature (task, cluster)."""

    def __init__(self) -> None:
        self.model_to_count: dict[str, int] = {}
        self.cell_to_count: dict[tuple[str, str], int] = {}

    def add(self, model: str, cells: Iterable[str], weight: int = 1) -> None:
        _bump(self.model_to_count, model, weight)
        for cell in cells:
            _bump(self.cell_to_count, (model, cell), weight)

    def count(self, model: str, cell: str | None = None) -> int:
        if cell is None:
            return self.model_to_count.get(model, 0)
        return self.cell_to_count.get((model, cell), 0)

    def width(
        self,
        model: str,
        cells: Sequence[str],
        explore_model: float,
        explore_context: float,
        pending: Evidence | None = None,
    ) -> float:
        """sqrt(a0^2 / (1 + n_model) + sum over cells of a1^2 / (1 + n_cell)): the diagonal of a ridge
        regression's posterior variance for one-hot features, scaled by how far the policy may be wrong.
        ``pending`` counts trials whose rewards are not learned yet: a variance depends on where a model was
        tried, not on what it earned, so a trial narrows it at once (as in batched UCB)."""

        def n(cell: str | None = None) -> int:
            return self.count(model, cell) + (pending.count(model, cell) if pending is not None else 0)

        total = explore_model**2 / (1 + n())
        for cell in cells:
            total += explore_context**2 / (1 + n(cell))
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


class InFlight:
    """Trials this router made that the policy it serves has not learned yet, oldest first.

    The served policy changes only with a snapshot (every 64 rewards or a second by default), so without them
    every query in between would see the same optimism and go to the same untried model. Entries leave in order
    as snapshots learn as many rewards (rewards mostly come back in the order of their decisions), or once
    older than the reward wait. Thread-safe."""

    def __init__(self, max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self.evidence = Evidence()
        self._entries: collections.deque[tuple[float, str, tuple[str, ...]]] = collections.deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, model: str, cells: Sequence[str], now: float) -> None:
        with self._lock:
            self._entries.append((now, model, tuple(cells)))
            self.evidence.add(model, cells)
            while self._entries and self._entries[0][0] < now - self.max_age_s:
                self._pop()

    def learned(self, count: int) -> None:
        """The newly served policy has learned ``count`` more rewards than the one before it."""
        with self._lock:
            for _ in range(min(count, len(self._entries))):
                self._pop()

    def _pop(self) -> None:
        _, model, cells = self._entries.popleft()
        self.evidence.add(model, cells, weight=-1)
