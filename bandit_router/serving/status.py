"""What a router reports of itself: its stats, a reward's outcome, and its learner's state (and what it needs
of a learner attached to it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Protocol

from bandit_router.domain.reward import Figure, RunningEstimate, Source
from bandit_router.policy.gate import Verdict
from bandit_router.policy.vw import Policy


@dataclasses.dataclass(frozen=True)
class Stats:
    policy_version: str
    events_learned: int
    estimates: dict[str, RunningEstimate]
    embedding_device: str
    queries_embedded: int
    embedding_energy: Figure
    # None when the router's energy is not measured (CPU, or no NVML).
    embedding_energy_source: Source | None


@dataclasses.dataclass(frozen=True)
class RewardOutcome:
    decision_id: str
    model: str
    reward: float
    cost: Figure
    energy: Figure


@dataclasses.dataclass(frozen=True)
class LearnerState:
    """What the learner attached to this router has done: its checkpoint's version and the gate's verdicts."""

    version: int
    promotions: int
    rejections: int
    verdicts: tuple[Verdict, ...]


class AttachedLearner(Protocol):
    """What a router needs of the learner the runtime attaches to it (``bandit_router.learning.learner.Learner``;
    serving never imports learning): its checkpoint policy, the gate's counts and verdicts, why it is failing
    (None when well), and stopping it."""

    @property
    def policy(self) -> Policy: ...

    @property
    def promotions(self) -> int: ...

    @property
    def rejections(self) -> int: ...

    @property
    def verdicts(self) -> Collection[Verdict]: ...

    @property
    def problem(self) -> str | None: ...

    def start(self) -> None: ...

    async def stop(self, timeout: float) -> None: ...

    async def wait_learned(self, count: int, timeout: float) -> None: ...

    async def publish_through(self, count: int, timeout: float) -> None: ...
