"""Circuit breakers, one per model's backend: failures open it, a timed half-open trial or a probe closes it.

``closed``: routed as usual. ``open`` (after ``failures`` failures in a row): never routed, and its backend is
probed; after ``cooldown_s``, or once a probe answers after one found the backend unreachable (it was down and is
back), it turns ``half_open``: routed again, and the next call decides (an answer closes it, a failure opens it
again for another cooldown). A backend that answers probes but fails calls waits out the cooldown. A model whose
breaker is open costs no request a failed attempt, so none of its failures are learned while the breaker explains
them.

Examples
--------
>>> now = [0.0]
>>> breakers = Breakers(failures=2, cooldown_s=5.0, clock=lambda: now[0])
>>> breakers.failed("m", "HTTP 503"); breakers.routable("m")
True
>>> breakers.failed("m", "HTTP 503"); breakers.state("m"), breakers.routable("m")
('open', False)
>>> now[0] = 5.0; breakers.state("m"), breakers.routable("m")
('half_open', True)
>>> breakers.answered("m"); breakers.state("m")
'closed'
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)

# (model, old state, new state, why): told of every change, for the log and the metrics.
OnChange = Callable[[str, str, str, str], None]


@dataclasses.dataclass
class _Breaker:
    state: str = CLOSED
    failures_in_a_row: int = 0
    opened_at: float = 0.0
    # A probe (or the start-up check) found the backend unreachable since the breaker opened.
    unreachable: bool = False


class Breakers:
    """Every model's breaker; ``failures`` 0 turns them off (always closed)."""

    def __init__(
        self,
        failures: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: OnChange | None = None,
    ) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._on_change = on_change
        self._by_model: dict[str, _Breaker] = {}
        # The gateway writes on the router's loop; the dashboard and /metrics read from other threads.
        self._lock = threading.Lock()

    def _move(self, model: str, breaker: _Breaker, new: str, why: str) -> None:
        old, breaker.state = breaker.state, new
        if new == OPEN:
            breaker.opened_at = self._clock()
            breaker.unreachable = False
        if new == CLOSED:
            breaker.failures_in_a_row = 0
        if old != new and self._on_change is not None:
            self._on_change(model, old, new, why)

    def _breaker(self, model: str) -> _Breaker:
        breaker = self._by_model.setdefault(model, _Breaker())
        if breaker.state == OPEN and self._clock() - breaker.opened_at >= self.cooldown_s:
            self._move(model, breaker, HALF_OPEN, f"{self.cooldown_s:g} s cooldown over: the next call is a trial")
        return breaker

    def state(self, model: str) -> str:
        with self._lock:
            return self._breaker(model).state

    def routable(self, model: str) -> bool:
        """Whether ``model`` may be routed to now (its breaker closed or half open)."""
        return self.state(model) != OPEN

    def answered(self, model: str, why: str = "a call answered") -> None:
        with self._lock:
            breaker = self._breaker(model)
            breaker.failures_in_a_row = 0
            if breaker.state != CLOSED:
                self._move(model, breaker, CLOSED, why)

    def failed(self, model: str, reason: str) -> None:
        if self.failures <= 0:
            return
        with self._lock:
            breaker = self._breaker(model)
            breaker.failures_in_a_row += 1
            if breaker.state == HALF_OPEN:
                self._move(model, breaker, OPEN, f"the trial call failed: {reason}")
            elif breaker.state == CLOSED and breaker.failures_in_a_row >= self.failures:
                self._move(model, breaker, OPEN, f"{breaker.failures_in_a_row} failures in a row, the last: {reason}")

    def trip(self, model: str, why: str) -> None:
        """Opens ``model``'s breaker at once (its backend did not answer a probe at start)."""
        if self.failures <= 0:
            return
        with self._lock:
            breaker = self._breaker(model)
            if breaker.state != OPEN:
                self._move(model, breaker, OPEN, why)
            breaker.unreachable = True

    def unreachable(self, model: str) -> None:
        """A probe of an open breaker's backend could not reach it (or it answered an error)."""
        with self._lock:
            breaker = self._breaker(model)
            if breaker.state == OPEN:
                breaker.unreachable = True

    def probed(self, model: str) -> None:
        """A probe of an open breaker's backend answered: after one found it unreachable, it is back, and routed
        again (half open: the next call is the trial)."""
        with self._lock:
            breaker = self._breaker(model)
            if breaker.state == OPEN and breaker.unreachable:
                self._move(model, breaker, HALF_OPEN, "a health probe answered: the backend is back")

    def is_unreachable(self, model: str) -> bool:
        with self._lock:
            breaker = self._breaker(model)
            return breaker.state == OPEN and breaker.unreachable

    def open_models(self) -> list[str]:
        with self._lock:
            return sorted(m for m in list(self._by_model) if self._breaker(m).state == OPEN)

    def states(self) -> dict[str, str]:
        with self._lock:
            return {m: self._breaker(m).state for m in sorted(self._by_model)}
