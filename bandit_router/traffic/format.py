"""The traffic format replays read: JSON Lines of queries with every model's logged outcome.

One record per line::

    {"id": str, "query": str, "task": str (optional), "timestamp": float (optional, seconds),
     "outcomes": {MODEL_ID: {"quality": float in [0, 1], "cost_usd": float, "input_tokens": int,
                             "output_tokens": int, "latency_ms": float, "energy_joules": float}}}

Every outcome field but ``quality`` is optional. A replay follows the records' timestamps (when the query came,
e.g. Unix time) where every record has one, else a stated traffic rate. The arm set is the models present in the
outcomes; the serving catalog, then the reference profiles shipped in ``known_models.toml``, supply prices and
energy profiles for what a record lacks. A model in neither needs a ``cost_usd`` in each of its outcomes;
its energy is then whatever the traffic reports, else unknown.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from bandit_router.config import ModelSpec
from bandit_router.errors import InputError

OPTIONAL_FIELDS = {
    "cost_usd": float,
    "input_tokens": int,
    "output_tokens": int,
    "latency_ms": float,
    "energy_joules": float,
}


class TrafficError(InputError):
    """A traffic line breaks the format; the message names the line, the field, the rule and the value."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    quality: float
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    energy_joules: float | None = None


@dataclasses.dataclass(frozen=True)
class Record:
    id: str
    query: str
    task: str
    outcomes: dict[str, Outcome]
    timestamp: float | None = None

    def to_json(self) -> str:
        outcomes = {
            m: {k: v for k, v in dataclasses.asdict(o).items() if v is not None} for m, o in self.outcomes.items()
        }
        body: dict[str, Any] = {"id": self.id, "query": self.query}
        if self.task:
            body["task"] = self.task
        if self.timestamp is not None:
            body["timestamp"] = self.timestamp
        body["outcomes"] = outcomes
        return json.dumps(body, ensure_ascii=False)


def _number(where: str, field: str, value: Any, kind: type, low: float = 0.0, high: float = math.inf) -> Any:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (kind is int and not float(value).is_integer())
    ):
        raise TrafficError(f"{where}: {field} must be a {kind.__name__}, got {value!r}")
    if not (math.isfinite(value) and low <= value <= high):
        raise TrafficError(f"{where}: {field} must be in [{low:g}, {high:g}], got {value!r}")
    return kind(value)


def parse_record(line: str, where: str) -> Record:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TrafficError(f"{where}: not a JSON object ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise TrafficError(f"{where}: must be a JSON object, got {type(raw).__name__}")
    for field in ("id", "query"):
        if not isinstance(raw.get(field), str) or not raw[field].strip():
            raise TrafficError(f"{where}: {field} must be a non-empty string, got {raw.get(field)!r}")
    task = raw.get("task", "")
    if not isinstance(task, str):
        raise TrafficError(f"{where}: task must be a string, got {task!r}")
    timestamp = raw.get("timestamp")
    if timestamp is not None:
        timestamp = _number(where, "timestamp", timestamp, float)
    outcomes_raw = raw.get("outcomes")
    if not isinstance(outcomes_raw, dict) or not outcomes_raw:
        raise TrafficError(f"{where}: outcomes must be a non-empty object, got {outcomes_raw!r}")
    outcomes = {}
    for model, fields in outcomes_raw.items():
        at = f"{where}: outcomes[{model!r}]"
        if not isinstance(fields, dict) or "quality" not in fields:
            raise TrafficError(f"{at} must be an object with a quality, got {fields!r}")
        unknown = sorted(set(fields) - set(OPTIONAL_FIELDS) - {"quality"})
        if unknown:
            raise TrafficError(f"{at} has unknown fields {unknown}")
        values = {k: _number(at, k, v, OPTIONAL_FIELDS[k]) for k, v in fields.items() if k != "quality"}
        outcomes[model] = Outcome(quality=_number(at, "quality", fields["quality"], float, 0.0, 1.0), **values)
    return Record(raw["id"], raw["query"], re.sub(r"[^A-Za-z0-9_.-]", "_", task)[:64], outcomes, timestamp)


def timestamps_of(records: Sequence[Record]) -> list[float] | None:
    """The records' timestamps where every record has one and they never go back (a shuffled or reordered stream's
    do), else None."""
    stamps = [r.timestamp for r in records]
    if any(t is None for t in stamps):
        return None
    times = [float(t) for t in stamps if t is not None]
    return times if all(b >= a for a, b in itertools.pairwise(times)) else None


def read_traffic(path: str | Path, limit: int | None = None) -> list[Record]:
    records: list[Record] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                records.append(parse_record(line, f"{path}:{number}"))
                if limit is not None and len(records) >= limit:
                    break
    if not records:
        raise TrafficError(f"{path}: holds no records")
    return records


def write_traffic(records: Iterable[Record], path: str | Path) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(record.to_json() + "\n")
            count += 1
    return count


def reference_models() -> dict[str, ModelSpec]:
    text = resources.files("bandit_router.data").joinpath("known_models.toml").read_text(encoding="utf-8")
    return {m["id"]: ModelSpec(**m) for m in tomllib.loads(text)["models"]}


def _from_traffic(model: str, records: Sequence[Record]) -> ModelSpec:
    """A catalog entry for a model no catalog knows, from what its outcomes carry: every one must carry its
    cost_usd, which the reward needs. Prices are the blended USD per token of those costs where the outcomes
    carry tokens too (else 0: the router then learns the mean cost from the rewards); energy likewise from
    energy_joules, else unknown."""
    outcomes = [r.outcomes[model] for r in records]
    lacking = next((r.id for r, o in zip(records, outcomes, strict=True) if o.cost_usd is None), None)
    if lacking is not None:
        raise TrafficError(
            f"model {model!r} is in neither the catalog nor the reference profiles, and record {lacking!r} has no "
            f"cost_usd for it: give each of its outcomes a cost_usd, or add it to the catalog (--config, "
            "[[models]] with its prices)"
        )
    tokens = [(o.input_tokens or 0) + (o.output_tokens or 0) for o in outcomes]
    counted = all(t > 0 for t in tokens)
    usd_per_mtok = sum(o.cost_usd or 0.0 for o in outcomes) / sum(tokens) * 1e6 if counted else 0.0
    energy = [o.energy_joules for o in outcomes]
    joules_per_token = (
        sum(e or 0.0 for e in energy) / sum(tokens) if counted and all(e is not None for e in energy) else None
    )
    outputs = [o.output_tokens for o in outcomes if o.output_tokens]
    return ModelSpec(
        id=model,
        input_usd_per_mtok=usd_per_mtok,
        output_usd_per_mtok=usd_per_mtok,
        energy_j_per_input_token=joules_per_token,
        energy_j_per_output_token=joules_per_token,
        energy_profile_source=(
            "estimated: the traffic's mean energy_joules per token of this model"
            if joules_per_token is not None
            else "unknown: in no catalog, and the traffic carries no energy for it"
        ),
        typical_output_tokens=sum(outputs) / len(outputs) if outputs else ModelSpec.typical_output_tokens,
    )


def arm_catalog(records: Sequence[Record], serving: Sequence[ModelSpec]) -> tuple[ModelSpec, ...]:
    """A catalog entry for every model in the traffic: the serving one, else the reference one, else one made
    from what the traffic carries (:func:`_from_traffic`)."""
    known = {**reference_models(), **{m.id: m for m in serving}}
    arms = sorted(records[0].outcomes)
    for record in records:
        if sorted(record.outcomes) != arms:
            # Baselines and regret compare every policy on every model; a record without some model's
            # outcome would leave them undefined.
            raise TrafficError(
                f"record {record.id!r} has outcomes for {sorted(record.outcomes)}, the first record for {arms}: "
                "every record must have an outcome for the same models"
            )
    return tuple(
        dataclasses.replace(known[a], enabled=True, gpus=(), node="") if a in known else _from_traffic(a, records)
        for a in arms
    )


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
