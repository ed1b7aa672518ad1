"""The served decision rule without the service: compare exploration settings on the shared data in seconds.

Each run routes one shuffled data set, query by query, with the router's own parts: the quality regressor
(``Policy``: VW and the evidence), a served copy of it rebuilt from a snapshot every
``policy.snapshot_every_events`` rewards, the trials in flight counted in between (``InFlight``) and the served
rule itself (``bandit_router.policy.rule.decide``: the optimistic pmf, the action drawn with the decision
id). Rewards come back at once and in order, and the
trade-off is quality only (penalties 0): what is measured is how well the rule learns and explores, not pricing,
the learner's timer, the quality gate or concurrency, which ``quality.py`` replays for real. So a run is
deterministic and 10 to 50 times faster than a replay (5 s against about a minute on LLMRouter train), and its
figures track the replays' at 0/0 within their run-to-run noise (LLMRouter test, 10 seeds: 0.920 of the best
single model here; 0.887-0.905 replayed, 5 seeds).

    .venv/bin/python simulations/rules.py                                    # the shipped settings, 10 seeds
    .venv/bin/python simulations/rules.py --variant wide='{"explore_model": 1.0, "explore_context": 0.6}'

A variant names ``policy`` settings to change (``vw_args`` as a list). The table gives, per data set and variant,
the mean quality (mean +- sd over the seeds) and its ratio to the best single model in hindsight and to the
best model per task in hindsight (what a router that knew every outcome could reach with the task alone).
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quality import SETS, mean_sd

from bandit_router.config import Config, load_config
from bandit_router.policy.exploration import InFlight
from bandit_router.policy.features import Complexity, Context
from bandit_router.policy.rule import decide
from bandit_router.policy.vw import Policy
from bandit_router.policy.vwlines import NS_TASK, Choice, vw_token
from bandit_router.traffic.format import Record

# The embedding's dimension does not matter here: no namespace the rule reads depends on it.
DIMENSION = 384


def with_policy(config: Config, changes: dict[str, Any]) -> Config:
    """``config`` with ``changes`` to its policy section (validated as a configuration file's would be)."""
    if "vw_args" in changes:
        changes = {**changes, "vw_args": tuple(changes["vw_args"])}
    return config.replace(policy=changes)


def route_all(records: Sequence[Record], config: Config, seed: int) -> float:
    """The mean quality the rule earns routing ``records`` in order, from nothing."""
    if tuple(config.features.context) != (NS_TASK,):
        raise SystemExit(
            f"features.context must be ['{NS_TASK}'] here (the rule sees tasks only), got "
            f"{list(config.features.context)}"
        )
    models = sorted(records[0].outcomes)
    actions = [f"|A {vw_token(m)}" for m in models]
    learner = Policy.of(config, DIMENSION)
    served = Policy.of(config, DIMENSION, learner.snapshot(0, "0-0"))
    in_flight = InFlight(max_age_s=float("inf"))
    unlearned: list[tuple[str, str, float]] = []
    total = 0.0
    for i, record in enumerate(records):
        context = Context(record.task.lower(), -1, Complexity.of(record.query, 1), "")
        shared = context.line(config.features.context)
        choice = Choice.of(shared, actions)
        index = decide(
            served.qualities(choice),
            served.widths(choice, in_flight.evidence),
            choice.penalties,
            epsilon=config.policy.epsilon,
            key=f"{seed}-{i}",
            seed=config.policy.seed,
        ).index
        quality = record.outcomes[models[index]].quality
        total += quality
        in_flight.add(models[index], served.cells(shared), now=float(i))
        unlearned.append((shared, actions[index], quality))
        if len(unlearned) >= config.policy.snapshot_every_events:
            for line, action, q in unlearned:
                learner.learn_quality(line, action, q)
            served = Policy.of(config, DIMENSION, learner.snapshot(0, "0-0"))
            in_flight.learned(len(unlearned))
            unlearned = []
    return total / len(records)


def hindsight(records: Sequence[Record]) -> tuple[float, float]:
    """The mean quality of the best single model, and of the best model per task, both chosen in hindsight."""
    models = sorted(records[0].outcomes)

    def mean_of(rows: Sequence[Record], model: str) -> float:
        return sum(r.outcomes[model].quality for r in rows) / len(rows)

    best_single = max(mean_of(records, m) for m in models)
    tasks = {r.task for r in records}
    per_task = sum(
        max(mean_of(rows, m) for m in models) * len(rows)
        for rows in ([r for r in records if r.task == t] for t in tasks)
    )
    return best_single, per_task / len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data", help="the shared data folder (default: %(default)s)")
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--seeds", type=int, default=10, help="seeds per cell (default: %(default)s)")
    parser.add_argument("--config", help="TOML configuration (default: the shipped one)")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="policy settings to compare with the configuration's own (repeatable)",
    )
    args = parser.parse_args()
    base = load_config(args.config)
    variants = {"configured": base}
    for text in args.variant:
        name, _, changes = text.partition("=")
        variants[name] = with_policy(base, json.loads(changes))
    print("| data set | queries | variant | seeds | mean quality | / best single | / best per task |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for set_name in args.sets:
        records = list(SETS[set_name](Path(args.data)))
        best_single, per_task = hindsight(records)
        for name, config in variants.items():
            earned = []
            for seed in range(args.seeds):
                shuffled = records[:]
                random.Random(seed).shuffle(shuffled)
                earned.append(route_all(shuffled, config, seed))
            print(
                f"| {set_name} | {len(records)} | {name} | {args.seeds} | {mean_sd(earned)} | "
                f"{mean_sd([e / best_single for e in earned])} | {mean_sd([e / per_task for e in earned])} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
