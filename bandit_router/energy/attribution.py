"""Attribution of measured GPU energy to decisions: each shares its GPUs' draw, by time, with the others in flight.

How a decision's energy is measured
-----------------------------------
An energy agent (``bandit-router energy-agent`` on a GPU node, or the one the router runs for its own
GPUs) reads each GPU's cumulative energy counter at a fixed interval and appends ``(time, joules)`` to
Redis. The catalog says which node and GPUs serve each model. At Reward, the decision's energy is the
energy of its model's GPUs over ``[route time, reward time]``, split **by time** among the decisions in
flight on that GPU: every stretch of time between two breakpoints (a sample, or a decision starting or
ending) is shared equally by the decisions in flight during it. Tokens would be a finer key, but the
tokens of an overlapping decision are unknown until it is rewarded itself, and a reward must be priced
when it arrives. Power is taken as constant between two samples (their energy difference over their
time difference); after the newest sample it is extrapolated from the last interval, for at most
``max_sample_age_s``. With ``charge_idle`` false, ``idle_watts`` per GPU is subtracted first, so a
decision pays only the energy above idle; with it true (the default) the whole draw of the GPUs while
decisions are in flight is charged to them. Energy while no decision is in flight is charged to none.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any

from bandit_router.store.energy import EnergyRecords


class NotCovered(Exception):
    """The samples do not cover the window: the GPU is missing, or its agent is silent."""


@dataclasses.dataclass(frozen=True)
class Flight:
    """A decision in flight on a GPU: from its Route to its Reward (or, unrewarded, to its expiry)."""

    start: float
    end: float


def attribute(
    samples: Sequence[tuple[float, float]],
    flights: Sequence[Flight],
    window: Flight,
    *,
    idle_watts: float = 0.0,
    charge_idle: bool = True,
    max_sample_age_s: float = 2.0,
) -> float:
    """Joules of one GPU charged to the decision in flight over ``window`` (one of ``flights``).

    ``samples`` are ``(time, cumulative joules)`` in time order. Raises NotCovered when they do not
    reach back to the window's start, or end more than ``max_sample_age_s`` before its end.
    """
    if len(samples) < 2 or samples[0][0] > window.start or samples[-1][0] < window.end - max_sample_age_s:
        raise NotCovered("samples do not cover the decision's window")
    times = [t for t, _ in samples]
    cuts = {window.start, window.end}
    cuts.update(t for t in times if window.start < t < window.end)
    for f in flights:
        cuts.update(x for x in (f.start, f.end) if window.start < x < window.end)
    edges = sorted(cuts)
    total = 0.0
    for a, b in itertools.pairwise(edges):
        middle = (a + b) / 2
        # The sample interval holding this stretch, or the last one past the newest sample.
        i = min(max(bisect.bisect_right(times, middle), 1), len(samples) - 1)
        (t0, e0), (t1, e1) = samples[i - 1], samples[i]
        watts = (e1 - e0) / (t1 - t0) if t1 > t0 else 0.0
        if not charge_idle:
            watts = max(watts - idle_watts, 0.0)
        sharing = sum(1 for f in flights if f.start <= middle <= f.end)
        total += watts * (b - a) / max(sharing, 1)
    return total


@dataclasses.dataclass(frozen=True)
class Measurement:
    joules: float
    basis: str


class DecisionEnergy:
    """Records which decisions are in flight on which GPUs, and measures a decision's energy at Reward.

    An unrewarded decision counts as in flight until it expires.
    """

    def __init__(self, records: EnergyRecords, node: str, wait_time_s: float, config: Any) -> None:
        self.records = records
        self.node = node
        self.wait_time_s = wait_time_s
        self.config = config

    def placement(self, model: Any) -> tuple[str, tuple[int, ...]]:
        return (model.node or self.node), tuple(model.gpus)

    async def take_off(self, decision_id: str, model: Any, start: float) -> None:
        node, gpus = self.placement(model)
        if gpus:
            await self.records.take_off(node, gpus, decision_id, start)

    async def land(self, decision_id: str, model: Any, start: float, end: float, until: str = "Reward") -> Measurement:
        """Marks the decision rewarded and returns its measured energy; raises NotCovered if it cannot be measured."""
        node, gpus = self.placement(model)
        if not gpus:
            raise NotCovered(f"{model.id} has no GPUs in the catalog")
        windows = await self.records.land(node, gpus, decision_id, start, end, self.wait_time_s)
        total = 0.0
        most_sharing = 1
        for window in windows:
            flights = [Flight(s, e if e is not None else min(s + self.wait_time_s, end)) for s, e in window.flown]
            own = Flight(start, end)
            if not any(f == own for f in flights):
                flights.append(own)
            try:
                total += attribute(
                    window.samples,
                    flights,
                    own,
                    idle_watts=self.config.idle_watts,
                    charge_idle=self.config.charge_idle,
                    max_sample_age_s=self.config.max_sample_age_s,
                )
            except NotCovered:
                raise NotCovered(f"no energy samples of GPU {window.gpu} on node {node!r} cover the decision") from None
            most_sharing = max(most_sharing, sum(1 for f in flights if f.start < end and f.end > start))
        idle = "idle power charged" if self.config.charge_idle else f"above {self.config.idle_watts:g} W idle per GPU"
        basis = (
            f"NVML energy of GPUs {list(gpus)} on node {node!r} over {end - start:.3f} s from Route to {until}, "
            f"shared by time with up to {most_sharing} decisions in flight, {idle}"
        )
        return Measurement(total, basis)


class BusyWindows:
    """Energy one GPU drew during a series of busy windows (the router's own embedding batches),
    from that GPU's samples; each window is settled once samples reach past its end."""

    def __init__(self, gpu: int, keep_samples: int = 1200) -> None:
        self.gpu = gpu
        self._samples: collections.deque[tuple[float, float]] = collections.deque(maxlen=keep_samples)
        self._windows: collections.deque[tuple[float, float, int]] = collections.deque()
        self.joules = 0.0
        self.items = 0
        self.unmeasured_items = 0
        self._counted_until = -math.inf

    def add_window(self, start: float, end: float, items: int) -> None:
        # Batches of several embedding workers overlap; each instant of the GPU's energy counts once.
        start = max(start, self._counted_until)
        if self._windows and start < self._windows[-1][1]:
            first, last, earlier = self._windows.pop()
            start, end, items = min(first, start), max(last, end), earlier + items
        self._windows.append((start, end, items))

    def add_sample(self, t: float, joules: float) -> None:
        self._samples.append((t, joules))
        samples = list(self._samples)
        while self._windows and self._windows[0][1] <= t:
            start, end, items = self._windows.popleft()
            if end <= start:  # wholly inside a window already counted, which drew its energy
                self.items += items
                continue
            window = Flight(start, end)
            try:
                self.joules += attribute(samples, [window], window)
                self.items += items
            except NotCovered:
                self.unmeasured_items += items
            self._counted_until = max(self._counted_until, end)
