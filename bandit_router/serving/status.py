"""What a router reports of itself: its stats, a reward's outcome, and its learner's state."""

from __future__ import annotations

import dataclasses
from typing import Any

from bandit_router.domain.reward import Figure, RunningEstimate, Source


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
    verdicts: tuple[Any, ...]
