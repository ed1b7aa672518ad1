"""Drift scenarios for replays: price changes, degradation, models added or removed, mix shifts, lost rewards.

A scenario is a small YAML file::

    events:
      - {at: 200, kind: degrade, model: llama-3.3-70b-instruct, quality_factor: 0.3}
      - {at: "50%", kind: price, model: gpt-4o, factor: 2.5}
      - {at: 100, kind: add, model: mixtral-8x7b-instruct}     # unavailable before step 100
      - {at: 400, kind: remove, model: llama-3.2-3b-instruct}  # unavailable from step 400
      - {at: 300, kind: mix, tasks: [math, code], share: 0.8}  # from step 300, 80% of queries are these tasks
      - {at: 500, kind: corrupt, until: 560}   # a broken judge: rewards of queries 500-559 report 1 - quality
    rewards:
      delay: 20    # each reward is sent 20 queries after its Route
      drop: 0.1    # a tenth of the rewards are never sent (seeded)

``at`` is a step (0-based query index) or a percentage of the stream. Every policy, the bandit and the
baselines alike, sees the same changed stream, the same delays, the same lost and corrupted rewards; the
report scores every policy on the true outcomes.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bandit_router.errors import InputError
from bandit_router.traffic.format import Record

KINDS = ("price", "degrade", "add", "remove", "mix", "corrupt")
# Fields each kind takes beside ``at`` and ``kind``, and whether they are required.
KIND_FIELDS: dict[str, dict[str, bool]] = {
    "price": {"model": True, "factor": True},
    "degrade": {"model": True, "quality_factor": True},
    "add": {"model": True},
    "remove": {"model": True},
    "mix": {"tasks": True, "share": True},
    "corrupt": {"until": True},
}


class ScenarioError(InputError):
    """A scenario breaks the format; the message names the event, the field, the rule and the value."""


@dataclasses.dataclass(frozen=True)
class Event:
    at: int
    kind: str
    model: str = ""
    factor: float = 1.0
    quality_factor: float = 1.0
    tasks: tuple[str, ...] = ()
    share: float = 0.0
    until: int = 0

    def label(self) -> str:
        if self.kind == "price":
            return f"{self.model} price x{self.factor:g}"
        if self.kind == "degrade":
            return f"{self.model} quality x{self.quality_factor:g}"
        if self.kind == "mix":
            return f"mix: {self.share:.0%} {'/'.join(self.tasks)}"
        if self.kind == "corrupt":
            return f"rewards corrupted until {self.until}"
        return f"{self.model} {'added' if self.kind == 'add' else 'removed'}"

    def to_json(self) -> dict[str, Any]:
        fields = KIND_FIELDS[self.kind]
        body = {k: getattr(self, k) for k in fields}
        if "tasks" in body:
            body["tasks"] = list(self.tasks)
        return {"at": self.at, "kind": self.kind, **body, "label": self.label()}


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A scenario resolved against one stream: event steps are query indices into it."""

    events: tuple[Event, ...] = ()
    reward_delay: int = 0
    reward_drop: float = 0.0
    name: str = ""

    def stream(self, records: Sequence[Record], seed: int) -> list[Record]:
        """The records in the order the scenario's mix shifts put them (the same records, reordered)."""
        stream = list(records)
        start = 0
        for event in sorted((e for e in self.events if e.kind == "mix"), key=lambda e: e.at):
            stream[start:] = _shift(stream[start:], event.at - start, event, random.Random(seed + event.at))
            start = event.at
        return stream

    def available(self, step: int, model: str) -> bool:
        """Whether the model can be routed to at this step (``add`` and ``remove`` events)."""
        changes = [e for e in self.events if e.model == model and e.kind in ("add", "remove")]
        state = not changes or min(changes, key=lambda e: e.at).kind != "add"
        for event in sorted(changes, key=lambda e: e.at):
            if event.at <= step:
                state = event.kind == "add"
        return state

    def price_factor(self, step: int, model: str) -> float:
        factor = 1.0
        for event in sorted(self.events, key=lambda e: e.at):
            if event.kind == "price" and event.model == model and event.at <= step:
                factor = event.factor
        return factor

    def quality_factor(self, step: int, model: str) -> float:
        factor = 1.0
        for event in sorted(self.events, key=lambda e: e.at):
            if event.kind == "degrade" and event.model == model and event.at <= step:
                factor = event.quality_factor
        return factor

    def corrupted(self, step: int) -> bool:
        """Whether the reward sent for this step reports 1 - quality (a broken quality judge)."""
        return any(e.kind == "corrupt" and e.at <= step < e.until for e in self.events)

    def dropped(self, steps: int, seed: int) -> list[bool]:
        """Which steps' rewards are never sent: the same seeded draw for every policy."""
        rng = random.Random(f"drop:{seed}")
        return [rng.random() < self.reward_drop for _ in range(steps)]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "events": [e.to_json() for e in sorted(self.events, key=lambda e: e.at)],
            "reward_delay": self.reward_delay,
            "reward_drop": self.reward_drop,
        }


def _shift(segment: list[Record], split: int, event: Event, rng: random.Random) -> list[Record]:
    """Reorders the segment so that after ``split`` the event's tasks make up its share of the
    queries (as far as the records allow); the records left over come before the split."""
    chosen = [r for r in segment if r.task in event.tasks]
    others = [r for r in segment if r.task not in event.tasks]
    after = len(segment) - split
    wanted = min(len(chosen), round(event.share * after))
    wanted = max(wanted, after - len(others))
    tail = chosen[:wanted] + others[: after - wanted]
    head = chosen[wanted:] + others[after - wanted :]
    rng.shuffle(head)
    rng.shuffle(tail)
    return head + tail


def _step(where: str, field: str, value: Any, steps: int) -> int:
    """A step of the stream from a query index or a percentage. ``at`` is a query in [0, steps - 1];
    ``until`` (exclusive) may also be the stream's end, ``steps``."""
    last = steps if field == "until" else steps - 1
    if isinstance(value, str) and value.endswith("%"):
        try:
            percent = float(value[:-1])
        except ValueError:
            raise ScenarioError(f"{where}: {field} must be a step or a percentage like '40%', got {value!r}") from None
        if not 0 <= percent <= 100:
            raise ScenarioError(f"{where}: {field} must be a percentage in [0%, 100%], got {value!r}")
        return min(last, int(steps * percent / 100))
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(f"{where}: {field} must be a step or a percentage like '40%', got {value!r}")
    if not 0 <= value <= last:
        raise ScenarioError(f"{where}: {field} must be a step in [0, {last}] (the stream has {steps}), got {value}")
    return value


def _positive(where: str, field: str, value: Any, high: float = float("inf")) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
        bound = "a number >= 0" if high == float("inf") else f"a number in [0, {high:g}]"
        raise ScenarioError(f"{where}: {field} must be {bound}, got {value!r}")
    return float(value)


def _event(where: str, item: Any, models: set[str], tasks: set[str], steps: int) -> Event:
    """One scenario event, validated against the stream's models, tasks and length."""
    if not isinstance(item, dict):
        raise ScenarioError(f"{where} must be a mapping, got {item!r}")
    kind = item.get("kind")
    if kind not in KINDS:
        raise ScenarioError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    fields = KIND_FIELDS[kind]
    extra = sorted(set(item) - set(fields) - {"at", "kind"})
    if extra:
        raise ScenarioError(f"{where}: a {kind} event takes at, {', '.join(fields)}; got unknown {extra}")
    missing = [f for f, required in fields.items() if required and f not in item] + ([] if "at" in item else ["at"])
    if missing:
        raise ScenarioError(f"{where}: a {kind} event needs {', '.join(missing)}")
    values: dict[str, Any] = {"at": _step(where, "at", item["at"], steps), "kind": kind}
    if "model" in fields:
        if item["model"] not in models:
            raise ScenarioError(
                f"{where}: model must be one of the traffic's models {sorted(models)}, got {item['model']!r}"
            )
        values["model"] = item["model"]
    if kind == "price":
        values["factor"] = _positive(where, "factor", item["factor"])
    if kind == "degrade":
        values["quality_factor"] = _positive(where, "quality_factor", item["quality_factor"], 1.0)
    if kind == "corrupt":
        until = _step(where, "until", item["until"], steps)
        if until <= values["at"]:
            raise ScenarioError(f"{where}: until must be after at ({values['at']}), got {item['until']!r}")
        values["until"] = until
    if kind == "mix":
        chosen = item["tasks"]
        if not isinstance(chosen, list) or not chosen or any(t not in tasks for t in chosen):
            raise ScenarioError(
                f"{where}: tasks must be a non-empty list of the traffic's tasks {sorted(tasks)}, got {chosen!r}"
            )
        values["tasks"] = tuple(chosen)
        values["share"] = _positive(where, "share", item["share"], 1.0)

    return Event(**values)


def parse_scenario(raw: Any, records: Sequence[Record], name: str = "scenario") -> Scenario:
    """Validates a parsed scenario against the stream it will change."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{name}: must be a mapping with events and rewards, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"events", "rewards", "name"})
    if unknown:
        raise ScenarioError(f"{name}: unknown keys {unknown}; a scenario has events and rewards")
    models = set(records[0].outcomes)
    tasks = {r.task for r in records}
    events_raw = raw.get("events") or []
    if not isinstance(events_raw, list):
        raise ScenarioError(f"{name}: events must be a list, got {events_raw!r}")
    events = []
    for number, item in enumerate(events_raw):
        events.append(_event(f"{name}: events[{number}]", item, models, tasks, len(records)))
    rewards = raw.get("rewards") or {}
    if not isinstance(rewards, dict) or set(rewards) - {"delay", "drop"}:
        raise ScenarioError(f"{name}: rewards must be a mapping with delay and drop, got {rewards!r}")
    delay = rewards.get("delay", 0)
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
        raise ScenarioError(f"{name}: rewards.delay must be a whole number of queries >= 0, got {delay!r}")
    drop = _positive(f"{name}", "rewards.drop", rewards.get("drop", 0.0), 1.0)
    if drop == 1.0:
        raise ScenarioError(f"{name}: rewards.drop must be below 1 (some reward must arrive), got {drop!r}")
    scenario = Scenario(tuple(events), delay, drop, str(raw.get("name", name)))
    for step in range(len(records)):
        if not any(scenario.available(step, m) for m in models):
            raise ScenarioError(f"{name}: no model is available at step {step}; add or keep one")
    return scenario


def load_scenario(path: str | Path, records: Sequence[Record]) -> Scenario:
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML ({exc})") from None
    return parse_scenario(raw, records, name=str(path))
