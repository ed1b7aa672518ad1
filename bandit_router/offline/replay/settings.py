"""What a replay is asked to do: the trade-off, seed, concurrency, task hints, scenario and warm start."""

from __future__ import annotations

import dataclasses

from bandit_router.learning.warm_start import Source
from bandit_router.traffic.scenario import Scenario


@dataclasses.dataclass(frozen=True)
class ReplaySettings:
    energy_weight: float | None = None
    cost_weight: float | None = None
    seed: int = 0
    concurrency: int = 8
    # Give the router each record's task as a hint; without it the router infers the task.
    task_hint: bool = True
    scenario: Scenario = dataclasses.field(default_factory=Scenario)
    # Fitted before the first query is routed (bandit-router warm-start's path, through its gate); evaluation
    # records warm-start the baselines too.
    warm_start: Source | None = None
