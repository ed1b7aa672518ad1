"""Quality gate (the AMRO-S idea): a new snapshot is served only if off-policy evaluation says it is not worse.

The learner learns every reward event into its candidate policy and persists it, so nothing learned is
lost; what the gate decides is which snapshot Route serves. On the last ``gate_window`` learned events it
compares the self-normalised IPS (SNIPS) estimates of the candidate and of the serving policy, each with
its exploration as served. The candidate has learned those events, so its estimate leans optimistic;
the tolerance absorbs that. A burst of corrupted rewards pulls the candidate towards what the corrupted
rewards favour, while the window, still mostly the uncorrupted events, scores that candidate lower than
the serving policy: the gate holds the serving policy until the candidate has learned its way back.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any

from bandit_router.config import PolicyConfig
from bandit_router.ope import Estimate, snips
from bandit_router.policy import Policy


@dataclasses.dataclass(frozen=True)
class Logged:
    """One learned decision as the gate replays it: its features, the logged action and its reward."""

    shared: str
    actions: tuple[str, ...]
    index: int
    probability: float
    reward: float


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The gate's decision on one snapshot."""

    version: int
    promoted: bool
    reason: str
    window: int
    candidate: Estimate | None = None
    serving: Estimate | None = None
    at: float = dataclasses.field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "at": self.at,
            "version": self.version,
            "promoted": self.promoted,
            "reason": self.reason,
            "window": self.window,
        }
        for name in ("candidate", "serving"):
            estimate = getattr(self, name)
            if estimate is not None:
                body[name] = {"snips": estimate.value, "low": estimate.low, "high": estimate.high}
        return body


class Gate:
    """Keeps the recent window of learned decisions and judges candidate snapshots on it."""

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        self.window: collections.deque[Logged] = collections.deque(maxlen=max(1, config.gate_window))

    @property
    def enabled(self) -> bool:
        return self.config.gate_window > 0

    def observe(self, logged: Logged) -> None:
        if self.enabled:
            self.window.append(logged)

    def _estimate(self, policy: Policy, events: list[Logged]) -> Estimate:
        # One column per decision: the policy's probability of the logged action (action 0 below).
        chosen = [[policy.pmf(e.shared, e.actions)[e.index]] for e in events]
        return snips(chosen, [0] * len(events), [e.probability for e in events], [e.reward for e in events])

    def judge(self, version: int, candidate: Policy, serving: Policy) -> Verdict:
        """Promote or hold back ``candidate``. Calls VW on both policies: run it on the thread that owns them."""
        events = list(self.window)
        if not self.enabled:
            return Verdict(version, True, "gate off", 0)
        if len(events) < self.config.gate_min_events:
            return Verdict(version, True, f"window holds {len(events)} < {self.config.gate_min_events} events", 0)
        try:
            new, old = self._estimate(candidate, events), self._estimate(serving, events)
        except ValueError as exc:  # neither policy gives the logged actions any probability
            return Verdict(version, True, f"no estimate ({exc})", len(events))
        promoted = new.value >= old.value - self.config.gate_tolerance
        relation = "within" if promoted else "beyond"
        reason = (
            f"candidate SNIPS {new.value:.4f} vs serving {old.value:.4f}: "
            f"{relation} tolerance {self.config.gate_tolerance:g}"
        )
        return Verdict(version, promoted, reason, len(events), new, old)
