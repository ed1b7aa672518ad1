"""How each model's backend is doing, as the gateway saw its calls: answers, failures and their latency."""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass
class _Upstream:
    calls: int = 0
    failures: int = 0
    latency_ms: float | None = None
    first_token_ms: float | None = None
    last_failure: str = ""
    last_failure_at: float | None = None
    # Outcomes of the most recent calls (True: answered), for the recent failure rate.
    recent: collections.deque[bool] = dataclasses.field(default_factory=lambda: collections.deque(maxlen=100))


class UpstreamHealth:
    """Per model: calls, failures, the last failure, and running means (EWMA) of latency and time to first token."""

    def __init__(self, alpha: float = 0.1, clock: Callable[[], float] = time.time) -> None:
        self.alpha = alpha
        self._clock = clock
        self._by_model: dict[str, _Upstream] = collections.defaultdict(_Upstream)
        # The gateway writes on the router's loop; the dashboard reads on its own thread.
        self._lock = threading.Lock()

    def _mean(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.alpha * (new - old)

    def answered(self, model: str, latency_ms: float, first_token_ms: float | None) -> None:
        with self._lock:
            self._answered(self._by_model[model], latency_ms, first_token_ms)

    def _answered(self, u: _Upstream, latency_ms: float, first_token_ms: float | None) -> None:
        u.calls += 1
        u.recent.append(True)
        u.latency_ms = self._mean(u.latency_ms, latency_ms)
        if first_token_ms is not None:
            u.first_token_ms = self._mean(u.first_token_ms, first_token_ms)

    def failed(self, model: str, reason: str) -> None:
        with self._lock:
            u = self._by_model[model]
            u.calls += 1
            u.failures += 1
            u.recent.append(False)
            u.last_failure = reason
            u.last_failure_at = self._clock()

    def view(self) -> list[dict[str, Any]]:
        """Each model's figures, by model id: what the dashboard shows."""
        with self._lock:
            upstreams = [
                (m, dataclasses.replace(u, recent=collections.deque(u.recent))) for m, u in self._by_model.items()
            ]
        return [
            {
                "model": model,
                "calls": u.calls,
                "failures": u.failures,
                "recent_failure_rate": (u.recent.count(False) / len(u.recent)) if u.recent else None,
                "latency_ms": u.latency_ms,
                "first_token_ms": u.first_token_ms,
                "last_failure": u.last_failure,
                "last_failure_at": u.last_failure_at,
            }
            for model, u in sorted(upstreams, key=lambda mu: mu[0])
        ]
