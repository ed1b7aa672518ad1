"""What a replay is asked to do: the trade-off, seed, traffic rate, task hints, scenario and warm start."""

from __future__ import annotations

import dataclasses

from bandit_router.learning.warm_start import Source
from bandit_router.offline.replay.cadence import DEFAULT_ANSWER_S, DEFAULT_RATE
from bandit_router.traffic.scenario import Scenario


@dataclasses.dataclass(frozen=True)
class ReplaySettings:
    energy_weight: float | None = None
    cost_weight: float | None = None
    seed: int = 0
    # Virtual time (offline.replay.cadence): queries per second where the records carry no timestamps, and how
    # long after its query a reward comes back.
    rate: float = DEFAULT_RATE
    answer_s: float = DEFAULT_ANSWER_S
    # Give the router each record's task as a hint; without it the router infers the task.
    task_hint: bool = True
    scenario: Scenario = dataclasses.field(default_factory=Scenario)
    # Fitted before the first query is routed (bandit-router warm-start's path, through its gate); evaluation
    # records warm-start the baselines too.
    warm_start: Source | None = None
    # rollout.control_share for the replayed router (None: the configuration's): that share of the queries goes
    # to the control baseline (rollout.control), and the report carries the A/B figure the dashboard would show.
    control_share: float | None = None
