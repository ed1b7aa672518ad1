"""The decision log: learned events and gate verdicts on disk, read back once each, exported as DSJSON."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bandit_router.domain.records import LearningEvent
from bandit_router.domain.reward import bounded
from bandit_router.policy.vwlines import namespaces
from bandit_router.store.snapshots import private

log = logging.getLogger(__name__)


class DecisionLog:
    """The learner's logs on disk: each learned event (``decisions-YYYYMMDD.jsonl``) and each verdict of the
    quality gate (``gate.jsonl``), readable by their owner only."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def append_events(self, lines: list[str]) -> None:
        """Appends to today's log file. Written before the snapshot, so a crash can log an event twice
        (export drops the repeat) but never lose it."""
        self.append(time.strftime("decisions-%Y%m%d.jsonl", time.gmtime()), lines)

    def append(self, name: str, lines: list[str]) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.directory / name, "a+b", opener=private) as f:
            # A write that failed part way left a line unfinished: end it, so that the retry starts a line.
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write(("\n".join(lines) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())


def to_dsjson(event: LearningEvent) -> dict[str, Any]:
    """One learned event as a DSJSON object: cost = -reward, actions 1-based with the chosen one first."""
    index = event.index
    pmf = [p for _, p in event.pmf]
    order = [index, *(i for i in range(len(pmf)) if i != index)]
    return {
        "_label_cost": -bounded(event.reward),
        "_label_probability": event.probability,
        "_label_Action": index + 1,
        "_labelIndex": index,
        "a": [i + 1 for i in order],
        "c": {**namespaces(event.shared), "_multi": [namespaces(a) for a in event.actions]},
        "p": [pmf[i] for i in order],
        "EventId": event.decision_id,
        "Timestamp": datetime.fromtimestamp(event.created_at, UTC).isoformat().replace("+00:00", "Z"),
        # Everything else the reward was made of, for evaluating other trade-offs offline.
        "_bandit_router": {
            "models": [m for m, _ in event.pmf],
            # Each action's penalty at the decision's weights: with the context, what a policy's pmf depends on.
            "penalties": list(event.penalties),
            "task": event.task,
            # Whose reward it is: evaluate judges one tenant's rewards, or pools tenants on quality only.
            "tenant": event.tenant,
            "quality": event.quality,
            "cost_usd": event.cost_usd,
            "cost_source": event.cost_source,
            "energy_joules": event.energy_joules,
            "energy_source": event.energy_source,
            "energy_weight": event.energy_weight,
            "cost_weight": event.cost_weight,
            "policy_version": event.policy_version,
        },
    }


def read_log(paths: Iterable[Path]) -> Iterator[LearningEvent]:
    """Learned events from the decision log files, each once (a crash can log an event twice)."""
    seen: set[str] = set()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                try:
                    raw = json.loads(line)
                except json.JSONDecodeError:
                    # The unfinished line of a write that failed part way; the retry logged the event whole.
                    log.warning("%s:%d: skipping an unfinished line", path, number)
                    continue
                if raw["event_id"] not in seen:
                    seen.add(raw["event_id"])
                    yield LearningEvent.from_json(raw)


def export(log_dir: Path, out: Path) -> int:
    paths = sorted(log_dir.glob("decisions-*.jsonl"))
    count = 0
    with open(out, "w", encoding="utf-8") as f:
        for event in read_log(paths):
            f.write(json.dumps(to_dsjson(event)) + "\n")
            count += 1
    return count
