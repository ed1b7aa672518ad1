"""How each model's backend is doing, as the gateway saw its calls: answers, failures and their latency, pooled
and per tenant, in /metrics, and each backend's breaker; a failure is shown by its class (status, timeout, ...),
never with what the backend said (that goes to the log only)."""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from bandit_router.observability.metrics import Metrics
from bandit_router.serving.breakers import STATES, Breakers

log = logging.getLogger(__name__)


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


def failure_class(reason: str) -> str:
    """What a failure may show to anyone who reads the health views: its status or kind, without the text the
    backend sent (which can echo another tenant's prompt) or its address. The whole reason goes to the log."""
    if reason.startswith("HTTP "):
        return reason.split(":", 1)[0]
    if reason.startswith("cannot reach "):
        return "cannot reach the backend"
    if reason.startswith(("no answer within", "the stream ran past")):
        return reason.split(" (", 1)[0]
    return reason.split(":", 1)[0]


class UpstreamHealth:
    """Per model, pooled and per tenant: calls, failures, the last failure's class, and running means (EWMA) of
    latency and time to first token."""

    def __init__(
        self,
        alpha: float = 0.1,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        breaker_failures: int = 0,
        breaker_cooldown_s: float = 30.0,
    ) -> None:
        self.alpha = alpha
        self._clock = clock
        self.metrics = metrics
        self.breakers = Breakers(breaker_failures, breaker_cooldown_s, on_change=self._breaker_changed)
        # Keyed by (tenant, model); the tenant None holds every tenant's calls pooled.
        self._by_key: dict[tuple[str | None, str], _Upstream] = collections.defaultdict(_Upstream)
        # The gateway writes on the router's loop; the dashboard reads on its own thread.
        self._lock = threading.Lock()

    def _mean(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.alpha * (new - old)

    def _breaker_changed(self, model: str, old: str, new: str, why: str) -> None:
        log.info("breaker of %s: %s -> %s (%s)", model, old, new, why)
        if self.metrics is not None:
            for state in STATES:
                self.metrics.breaker.labels(model, state).set(1.0 if state == new else 0.0)

    def answered(self, model: str, latency_ms: float, first_token_ms: float | None, tenant: str = "") -> None:
        self.breakers.answered(model)
        if self.metrics is not None:
            self.metrics.backend_calls.labels(model, "answered").inc()
            self.metrics.backend_latency.labels(model).observe(latency_ms / 1000)
            if first_token_ms is not None:
                self.metrics.backend_first_token.labels(model).observe(first_token_ms / 1000)
        with self._lock:
            for key in ((None, model), (tenant, model)):
                self._answered(self._by_key[key], latency_ms, first_token_ms)

    def _answered(self, u: _Upstream, latency_ms: float, first_token_ms: float | None) -> None:
        u.calls += 1
        u.recent.append(True)
        u.latency_ms = self._mean(u.latency_ms, latency_ms)
        if first_token_ms is not None:
            u.first_token_ms = self._mean(u.first_token_ms, first_token_ms)

    def failed(self, model: str, reason: str, tenant: str = "", decision_id: str = "") -> None:
        log.warning("backend of %s failed (decision %s, tenant %r): %s", model, decision_id or "-", tenant, reason)
        self.breakers.failed(model, failure_class(reason))
        if self.metrics is not None:
            self.metrics.backend_calls.labels(model, "failed").inc()
        with self._lock:
            for key in ((None, model), (tenant, model)):
                u = self._by_key[key]
                u.calls += 1
                u.failures += 1
                u.recent.append(False)
                u.last_failure = failure_class(reason)
                u.last_failure_at = self._clock()

    def none_healthy(self, models: Sequence[str]) -> str | None:
        """Why none of ``models``' backends can be called now (every breaker open); None while one can."""
        broken = set(self.breakers.open_models())
        if models and all(m in broken for m in models):
            return f"no backend of any routable model is healthy (breakers open: {', '.join(models)})"
        return None

    def view(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Each model's figures, by model id: every tenant's calls pooled (None), or one tenant's own."""
        with self._lock:
            upstreams = [
                (m, dataclasses.replace(u, recent=collections.deque(u.recent)))
                for (t, m), u in self._by_key.items()
                if t == tenant
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
                "breaker": self.breakers.state(model),
            }
            for model, u in sorted(upstreams, key=lambda mu: mu[0])
        ]
