"""Redis keys and commands of GPU energy: per-GPU cumulative samples, and the decisions in flight on each GPU."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class GpuWindow:
    """What Redis holds on one GPU for a decision at its Reward.

    ``samples`` are ``(time, cumulative joules)`` in time order, from the newest at or before the decision's
    start on; ``flown`` are ``(route time, reward time or None while unrewarded)`` of every decision routed to
    the GPU since the reward wait before the start.
    """

    gpu: int
    samples: list[tuple[float, float]]
    flown: list[tuple[float, float | None]]


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def parse_samples(members: Iterable[bytes | str]) -> list[tuple[float, float]]:
    pairs = []
    for member in members:
        t, joules = _text(member).split(" ")
        pairs.append((float(t), float(joules)))
    pairs.sort()
    return pairs


class EnergyRecords:
    """Energy state of every node sharing one Redis, under one key prefix.

    Keys per GPU: ``{prefix}:energy:{node}:{gpu}`` (a sorted set of ``"time joules"`` scored by time),
    ``{prefix}:flight:{node}:{gpu}`` (decision id scored by its Route time) and
    ``{prefix}:landed:{node}:{gpu}`` (decision id scored by its Reward time).
    """

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def sample_key(self, node: str, gpu: int) -> str:
        return f"{self.prefix}:energy:{node}:{gpu}"

    def _flight_key(self, node: str, gpu: int) -> str:
        return f"{self.prefix}:flight:{node}:{gpu}"

    def _landed_key(self, node: str, gpu: int) -> str:
        return f"{self.prefix}:landed:{node}:{gpu}"

    async def append_samples(self, node: str, now: float, totals: dict[int, float], retention_s: float) -> None:
        """Appends each GPU's cumulative joules at ``now`` and drops samples older than ``retention_s``."""
        async with self.client.pipeline(transaction=False) as pipe:
            for gpu, joules in totals.items():
                key = self.sample_key(node, gpu)
                pipe.zadd(key, {f"{now!r} {joules!r}": now})
                pipe.zremrangebyscore(key, "-inf", now - retention_s)
            await pipe.execute()

    async def take_off(self, node: str, gpus: Sequence[int], decision_id: str, start: float) -> None:
        """Records the decision in flight on ``gpus`` from ``start``."""
        async with self.client.pipeline(transaction=False) as pipe:
            for gpu in gpus:
                pipe.zadd(self._flight_key(node, gpu), {decision_id: start})
            await pipe.execute()

    async def land(
        self, node: str, gpus: Sequence[int], decision_id: str, start: float, end: float, wait_time_s: float
    ) -> list[GpuWindow]:
        """Marks the decision rewarded at ``end`` and reads, per GPU, what its energy is attributed from."""
        horizon = start - wait_time_s
        async with self.client.pipeline(transaction=False) as pipe:
            for gpu in gpus:
                flight, landed = self._flight_key(node, gpu), self._landed_key(node, gpu)
                samples = self.sample_key(node, gpu)
                pipe.zadd(landed, {decision_id: end}, nx=True)
                pipe.zrangebyscore(flight, horizon, end, withscores=True)
                # The newest sample at or before the start, then every one after it.
                pipe.zrevrangebyscore(samples, start, "-inf", start=0, num=1)
                pipe.zrangebyscore(samples, f"({start}", "+inf")
                # Nothing still needed ends before the oldest decision that can still be rewarded.
                pipe.zremrangebyscore(flight, "-inf", end - 2 * wait_time_s)
                pipe.zremrangebyscore(landed, "-inf", end - 2 * wait_time_s)
            replies = await pipe.execute()
        windows = []
        for n, gpu in enumerate(gpus):
            _, flown, before, after, _, _ = replies[6 * n : 6 * n + 6]
            ids = [_text(m) for m, _ in flown]
            landed_at = await self.client.zmscore(self._landed_key(node, gpu), ids) if ids else []
            windows.append(
                GpuWindow(
                    gpu,
                    parse_samples([*before, *after]),
                    [(float(s), None if e is None else float(e)) for (_, s), e in zip(flown, landed_at, strict=True)],
                )
            )
        return windows
