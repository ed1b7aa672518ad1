"""The served decision rule without the service: compare exploration settings on the shared data in seconds.

Each run routes one shuffled data set, query by query, with the router's own parts: the quality regressor
(``Policy``: VW and the evidence), a served copy of it rebuilt from a snapshot every
``policy.snapshot_every_events`` rewards, the trials in flight counted in between (``InFlight``) and the served
rule itself (``bandit_router.policy.rule.decide``: the optimistic pmf, the action drawn with the decision
id). Rewards come back at once and in order. At a trade-off (``--weights``) each model's penalty is its mean
energy and cost penalty over the set (what the router computes from the catalog and the tokens it has seen, taken
as known here), and the reward is the router's (quality less the answer's own penalty). What is measured is how
well the rule learns and explores, not pricing, the learner's timer, the quality gate or concurrency, which
``quality.py`` replays for real. So a run is
deterministic and 10 to 50 times faster than a replay (5 s against about a minute on LLMRouter train), and its
figures track the replays' at 0/0 within their run-to-run noise (LLMRouter test, 10 seeds: 0.920 of the best
single model here; 0.887-0.905 replayed, 5 seeds).

    .venv/bin/python simulations/rules.py                                    # the shipped settings, 10 seeds
    .venv/bin/python simulations/rules.py --variant wide='{"explore_model": 1.0, "explore_context": 0.6}'
    .venv/bin/python simulations/rules.py --weights 0,0 0.1,0.1 1,1 --variant vw_alone='{"prior_strength": 0}'

A variant names ``policy`` settings to change (``vw_args`` as a list). The table gives, per data set, trade-off
and variant, the mean reward (mean +- sd over the seeds; at 0/0 the quality) and its ratio to the best single model
in hindsight and to the best model per task in hindsight (what a router that knew every outcome could reach with
the task alone).
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
from bandit_router.traffic.format import Record, arm_catalog
from bandit_router.traffic.table import build_table

# The embedding's dimension does not matter here: no namespace the rule reads depends on it.
DIMENSION = 384


def with_policy(config: Config, changes: dict[str, Any]) -> Config:
    """``config`` with ``changes`` to its policy section (validated as a configuration file's would be)."""
    if "vw_args" in changes:
        changes = {**changes, "vw_args": tuple(changes["vw_args"])}
    return config.replace(policy=changes)


def rewards_of(records: Sequence[Record], config: Config, weights: tuple[float, float]) -> tuple[list[str], Any]:
    """The models (sorted) and each record's reward under each at ``weights`` (energy, cost): a records x models
    array. A query's own tokens are taken as a quarter of its characters where a record gives none."""
    models = sorted(records[0].outcomes)
    at = config.replace(
        models=arm_catalog(records, config.models), reward={"energy_weight": weights[0], "cost_weight": weights[1]}
    )
    table = build_table(records, at, [len(r.query) // 4 for r in records])
    order = [table.arms.index(m) for m in models]
    return models, table.reward[:, order]


def route_all(records: Sequence[Record], config: Config, seed: int, rewards: Any) -> float:
    """The mean reward the rule earns routing ``records`` in order, from nothing; ``rewards`` as ``rewards_of``
    gives them."""
    if tuple(config.features.context) != (NS_TASK,):
        raise SystemExit(
            f"features.context must be ['{NS_TASK}'] here (the rule sees tasks only), got "
            f"{list(config.features.context)}"
        )
    models = sorted(records[0].outcomes)
    actions = [f"|A {vw_token(m)}" for m in models]
    # The penalty each model is known to cost: its mean over the set.
    penalties = [
        sum(r.outcomes[m].quality - rewards[i, j] for i, r in enumerate(records)) / len(records)
        for j, m in enumerate(models)
    ]
    learner = Policy.of(config, DIMENSION)
    served = Policy.of(config, DIMENSION, learner.snapshot(0, "0-0"))
    in_flight = InFlight(max_age_s=float("inf"))
    unlearned: list[tuple[str, str, float]] = []
    total = 0.0
    for i, record in enumerate(records):
        context = Context(record.task.lower(), -1, Complexity.of(record.query, 1), "")
        shared = context.line(config.features.context)
        choice = Choice.of(shared, actions, penalties)
        index = decide(
            served.qualities(choice),
            served.widths(choice, in_flight.evidence),
            choice.penalties,
            epsilon=config.policy.epsilon,
            key=f"{seed}-{i}",
            seed=config.policy.seed,
        ).index
        quality = record.outcomes[models[index]].quality
        total += rewards[i, index]
        in_flight.add(models[index], served.cells(shared), now=float(i))
        unlearned.append((shared, actions[index], quality))
        if len(unlearned) >= config.policy.snapshot_every_events:
            for line, action, q in unlearned:
                learner.learn_quality(line, action, q)
            served = Policy.of(config, DIMENSION, learner.snapshot(0, "0-0"))
            in_flight.learned(len(unlearned))
            unlearned = []
    return total / len(records)


def hindsight(records: Sequence[Record], rewards: Any) -> tuple[float, float]:
    """The mean reward of the best single model, and of the best model per task, both chosen in hindsight."""
    best_single = float(rewards.mean(axis=0).max())
    tasks = {r.task for r in records}
    per_task = sum(
        float(rewards[rows].mean(axis=0).max()) * len(rows)
        for rows in ([i for i, r in enumerate(records) if r.task == t] for t in tasks)
    )
    return best_single, per_task / len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data", help="the shared data folder (default: %(default)s)")
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--seeds", type=int, default=10, help="seeds per cell (default: %(default)s)")
    parser.add_argument(
        "--weights",
        nargs="+",
        type=lambda text: tuple(float(v) for v in text.split(",")),
        default=[(0.0, 0.0)],
        metavar="ENERGY,COST",
        help="trade-offs (default: 0,0, quality only)",
    )
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
    print("| data set | queries | energy / cost weight | variant | seeds | mean reward | / best single "
          "| / best per task |")  # fmt: skip
    print("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |")
    for set_name in args.sets:
        records = list(SETS[set_name](Path(args.data)))
        for weights in args.weights:
            _, rewards = rewards_of(records, base, weights)
            best_single, per_task = hindsight(records, rewards)
            for name, config in variants.items():
                earned = []
                for seed in range(args.seeds):
                    order = list(range(len(records)))
                    random.Random(seed).shuffle(order)
                    shuffled = [records[i] for i in order]
                    earned.append(route_all(shuffled, config, seed, rewards[order]))
                print(
                    f"| {set_name} | {len(records)} | {weights[0]:g} / {weights[1]:g} | {name} | {args.seeds} | "
                    f"{mean_sd(earned)} | {mean_sd([e / best_single for e in earned])} | "
                    f"{mean_sd([e / per_task for e in earned])} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
