"""Virtual time for a replay: when each query arrives, when its reward comes back, and when the learner's snapshot
is served, as the live router would have them at a stated traffic rate.

A replay sends its calls as fast as the machine allows, hundreds a second, while the live learner serves a new
policy every ``policy.snapshot_every_events`` rewards or ``policy.snapshot_interval_s`` seconds: replayed in real
time, a short log would be routed almost entirely by the first policy. So a replay follows a schedule instead:
query ``i`` arrives at ``i / rate`` seconds (or at its record's own timestamp), its reward comes back ``answer_s``
later (and no sooner than query ``i + reward_delay`` arrives, for a scenario that delays rewards by queries), and
the learner serves what it has learned whenever the live one would (below). The router and every baseline follow
the same schedule, so each learns with the same delay, and the same seed gives the same report, to the digit.

The live learner reads each reward as it comes, and snapshots (then the gate judges, and Route serves what it
promotes) once ``snapshot_every_events`` rewards wait, or once ``snapshot_interval_s`` has passed since its last
snapshot and any reward waits; it drains what waits at the end.

Examples
--------
>>> cadence = Cadence(rate=2.0, answer_s=1.0, snapshot_every_events=64, snapshot_interval_s=1.0)
>>> [(round(op.at, 2), op.kind, op.step) for op in cadence.schedule(3)]  # doctest: +NORMALIZE_WHITESPACE
[(0.0, 'route', 0), (0.5, 'route', 1), (1.0, 'reward', 0), (1.0, 'publish', 1), (1.0, 'route', 2),
 (1.5, 'reward', 1), (2.0, 'reward', 2), (2.0, 'publish', 3)]
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import time
from collections.abc import Sequence
from typing import Any

ROUTE, REWARD, PUBLISH = "route", "reward", "publish"
# At one instant: a reward that comes back is learned before the snapshot due then, and both before the query that
# arrives then is routed (a live router serves what it published a moment before).
_ORDER = {REWARD: 0, PUBLISH: 1, ROUTE: 2}
# A few requests a second: what one application's live traffic sends, not what a replay machine can.
DEFAULT_RATE = 4.0
# An LLM's answer and its grading take seconds before a reward comes back.
DEFAULT_ANSWER_S = 2.0


@dataclasses.dataclass(frozen=True)
class Op:
    """One thing that happens in virtual time: a query routed, a reward sent, or the learner's snapshot served;
    ``step`` is the query's index, or for a snapshot how many rewards it has learned."""

    at: float
    kind: str
    step: int


@dataclasses.dataclass(frozen=True)
class Cadence:
    """The schedule's parameters: the traffic rate (queries per second; ignored where records carry timestamps),
    how long a reward takes to come back, and the live learner's snapshot settings."""

    rate: float = DEFAULT_RATE
    answer_s: float = DEFAULT_ANSWER_S
    snapshot_every_events: int = 64
    snapshot_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"rate must be a positive number of queries per second, got {self.rate!r}")
        if not (math.isfinite(self.answer_s) and self.answer_s >= 0):
            raise ValueError(f"answer_s must be a number of seconds >= 0, got {self.answer_s!r}")

    def arrivals(self, steps: int, timestamps: Sequence[float] | None = None) -> list[float]:
        """When each query arrives, in seconds from the first: its timestamp where every record has one (they must
        not go back in time), else one every 1 / rate seconds."""
        if timestamps is None:
            return [i / self.rate for i in range(steps)]
        if len(timestamps) != steps:
            raise ValueError(f"timestamps must have one per query ({steps}), got {len(timestamps)}")
        back = next((i for i in range(1, steps) if timestamps[i] < timestamps[i - 1]), None)
        if back is not None:
            raise ValueError(
                f"timestamps must not decrease, got {timestamps[back]!r} at query {back} after {timestamps[back - 1]!r}"
            )
        return [t - timestamps[0] for t in timestamps]

    def schedule(
        self,
        steps: int,
        dropped: Sequence[bool] | None = None,
        reward_delay: int = 0,
        timestamps: Sequence[float] | None = None,
    ) -> list[Op]:
        """Every query, reward (none for a dropped one) and served snapshot, in the order they happen."""
        arrival = self.arrivals(steps, timestamps)
        events: list[tuple[float, int, int, str]] = []
        for i, at in enumerate(arrival):
            events.append((at, _ORDER[ROUTE], i, ROUTE))
            if dropped is None or not dropped[i]:
                back = max(at + self.answer_s, arrival[min(i + reward_delay, steps - 1)])
                events.append((back, _ORDER[REWARD], i, REWARD))
        heapq.heapify(events)
        ops: list[Op] = []
        learned = waiting = 0
        last = 0.0

        def publish(at: float) -> None:
            nonlocal waiting, last
            ops.append(Op(at, PUBLISH, learned))
            waiting, last = 0, at

        while events:
            at, _, step, kind = heapq.heappop(events)
            # The timer: a snapshot one interval after the last, if a reward waits by then (one that comes back at that
            # very instant is read first, and is in it).
            if waiting and last + self.snapshot_interval_s < at:
                publish(last + self.snapshot_interval_s)
            if kind == REWARD:
                ops.append(Op(at, REWARD, step))
                learned += 1
                waiting += 1
                if waiting >= self.snapshot_every_events or at - last >= self.snapshot_interval_s:
                    publish(at)
            else:
                ops.append(Op(at, ROUTE, step))
        if waiting:
            publish(max(last + self.snapshot_interval_s, ops[-1].at))
        return ops

    def to_json(self, ops: Sequence[Op], timestamps: bool) -> dict[str, Any]:
        """What a report says of the schedule it assumed."""
        routes = [op.at for op in ops if op.kind == ROUTE]
        return {
            "time": "the records' timestamps" if timestamps else f"{self.rate:g} queries/s",
            "rate_per_s": (len(routes) - 1) / routes[-1] if len(routes) > 1 and routes[-1] > 0 else None,
            "answer_s": self.answer_s,
            "snapshot_every_events": self.snapshot_every_events,
            "snapshot_interval_s": self.snapshot_interval_s,
            "snapshots": sum(op.kind == PUBLISH for op in ops),
            "virtual_seconds": ops[-1].at if ops else 0.0,
        }


class VirtualClock:
    """The replayed router's clock: the schedule's time from an epoch (the wall clock at the start), set by the
    replay as it goes; once released (a held demo serving live calls), it runs on with the wall clock."""

    def __init__(self, epoch: float | None = None) -> None:
        self.epoch = time.time() if epoch is None else epoch
        self._at = 0.0
        self._released_at: float | None = None

    def set(self, at: float) -> None:
        self._at = at

    def release(self) -> None:
        self._released_at = time.time()

    def __call__(self) -> float:
        running = 0.0 if self._released_at is None else time.time() - self._released_at
        return self.epoch + self._at + running
