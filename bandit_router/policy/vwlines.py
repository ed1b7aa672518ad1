"""The VW line format of a decision: namespaces, feature tokens and numbers, action lines, and the Choice a
policy scores."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

from bandit_router.config import ModelSpec

# VW namespaces. The first letter is what --interactions refers to.
NS_TASK = "T"
NS_CLUSTER = "K"
NS_EMBEDDING = "E"
NS_COMPLEXITY = "X"
NS_ACTION = "A"
# Namespaces whose features name a cell (one feature of value 1): the policy counts rewards per model in each.
CATEGORICAL = (NS_TASK, NS_CLUSTER)


_VW_UNSAFE = re.compile(r"[\s|:]")


def vw_token(text: str) -> str:
    """A VW feature name cannot hold spaces, ':' or '|'."""
    return _VW_UNSAFE.sub("_", text)


def action_line(model: ModelSpec) -> str:
    """The action's features: its id alone, so each model has its own quality (and, crossed with the
    context, its own quality per task or cluster). Its price and energy are not features: they are known,
    and enter the decision as its penalty."""
    return f"|{NS_ACTION} {vw_token(model.id)}"


@dataclasses.dataclass(frozen=True)
class Choice:
    """One decision as a policy sees it: the context line, one line per candidate, and each candidate's
    penalty (expected energy and cost at the request's weights). A policy's pmf is a function of these
    alone, so the gate, the dashboard and evaluation can ask any policy what it would have done."""

    shared: str
    actions: tuple[str, ...]
    penalties: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.actions) != len(self.penalties):
            raise ValueError(
                f"a choice needs one penalty per action, got {len(self.penalties)} for {len(self.actions)} actions"
            )

    @classmethod
    def of(cls, shared: str, actions: Sequence[str], penalties: Sequence[float] | None = None) -> Choice:
        return cls(shared, tuple(actions), tuple(penalties) if penalties is not None else (0.0,) * len(actions))


def namespaces(line: str) -> dict[str, dict[str, float]]:
    """``"|T math |E e0:0.5"`` -> ``{"T": {"math": 1.0}, "E": {"e0": 0.5}}``; anything before the first
    namespace (a label, ``shared``) is dropped."""
    found: dict[str, dict[str, float]] = {}
    for chunk in line.split("|")[1:]:
        name, *features = chunk.split()
        group = found.setdefault(name, {})
        for feature in features:
            key, _, value = feature.partition(":")
            group[key] = float(value) if value else 1.0
    return found


def vw_number(value: float, bound: float = 1e6) -> str:
    """A number as VW's text parser reads it right: VW parses float32, so a value beyond its range
    becomes inf or NaN (and a NaN prediction); magnitudes are clamped to ``bound`` and those under 1e-9 are 0."""
    if not math.isfinite(value):
        value = math.copysign(bound, value) if math.isinf(value) else 0.0
    clamped = max(-bound, min(bound, value))
    return "0" if abs(clamped) < 1e-9 else f"{clamped:.6g}"
