"""The decision-quality harness: every shared data set, three trade-offs, several seeds, cold and warm.

Each run is a real replay (``bandit_router.offline.replay.run.replay``: an in-process gRPC router on its own embedded
Redis, Route and Reward for every query, the learner and its gate as served), shuffled with the seed. Cold:
the whole stream is routed from nothing. Warm: the first half of the shuffled stream warm-starts the router
(and the baselines) with every model's outcome, the second half is routed. The table gives, over the seeds,
the bandit's mean reward (mean +- sd) and its ratios to the best single model in hindsight, LinUCB and the
full-information ridge (each ratio's mean +- sd), with the churn of its action share.

    .venv/bin/python simulations/quality.py                      # everything: about an hour on 2 CPUs
    .venv/bin/python simulations/quality.py --sets routeprofile --seeds 2 --modes cold
    .venv/bin/python simulations/quality.py --backend static --no-task-hint   # another embedding; tasks inferred

With ``--no-task-hint`` the records' task names are dropped, so the router infers each query's task from its
embedding, as it must for gateway traffic (the baselines see the same features).

Every query is embedded once (an SQLite cache by model and text, under the output folder). Each run's
figures are appended to ``runs.jsonl`` as it finishes, and a rerun skips the runs already there.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bandit_router.config import EMBEDDING_BACKENDS, load_config
from bandit_router.embedding.backends import load_embedder
from bandit_router.embedding.cache import CachingEmbedder
from bandit_router.learning.warm_start import Source
from bandit_router.offline.replay.run import BANDIT, replay
from bandit_router.offline.replay.settings import ReplaySettings
from bandit_router.traffic.convert import shared_sets

SETS = shared_sets()
# Energy and cost weights: quality only, the server defaults, frugal.
WEIGHTS = ((0.0, 0.0), (0.1, 0.1), (1.0, 1.0))
WARM_FRACTION = 0.5


def figures(report: dict[str, Any]) -> dict[str, Any]:
    policies = report["policies"]

    def find(prefix: str) -> float:
        return float(next(p["mean_reward"] for n, p in policies.items() if n.startswith(prefix)))

    bandit = policies[BANDIT]
    return {
        "bandit": float(bandit["mean_reward"]),
        "best_single": find("best single model"),
        "linucb": find("LinUCB"),
        "full_information": find("full information"),
        "epsilon_greedy": find("epsilon-greedy"),
        "random": find("random"),
        "oracle": find("oracle"),
        "churn": (bandit["churn"] or {}).get("mean_tv"),
        "routed": report["records"],
        "snapshots": report["cadence"]["snapshots"],
        "policy_version": report["bandit_policy_version"],
    }


def mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def table(runs: list[dict[str, Any]]) -> str:
    """One row per (set, trade-off, mode), over the seeds."""
    rows = [
        "| data set | queries routed | energy / cost weight | start | seeds | bandit reward | / best single "
        "| / LinUCB | / full information | churn |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    keys = sorted({(r["set"], r["energy_weight"], r["cost_weight"], r["mode"]) for r in runs}, key=str)
    order = {name: i for i, name in enumerate(SETS)}
    keys.sort(key=lambda k: (order.get(k[0], 99), k[1], k[2], k[3]))
    for key in keys:
        group = [r for r in runs if (r["set"], r["energy_weight"], r["cost_weight"], r["mode"]) == key]
        f = [r["figures"] for r in group]
        churn = [x["churn"] for x in f if x["churn"] is not None]
        rows.append(
            f"| {key[0]} | {f[0]['routed']} | {key[1]:g} / {key[2]:g} | {key[3]} | {len(group)} | "
            f"{mean_sd([x['bandit'] for x in f])} | {mean_sd([x['bandit'] / x['best_single'] for x in f])} | "
            f"{mean_sd([x['bandit'] / x['linucb'] for x in f])} | "
            f"{mean_sd([x['bandit'] / x['full_information'] for x in f])} | {mean_sd(churn)} |"
        )
    return "\n".join(rows)


async def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "runs.jsonl"
    done = []
    if log_path.exists():
        done = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    variant = {"backend": args.backend, "task_hint": not args.no_task_hint}
    seen = {
        (r["set"], r["energy_weight"], r["cost_weight"], r["mode"], r["seed"])
        for r in done
        if r.get("backend", "torch") == args.backend and r.get("task_hint", True) == variant["task_hint"]
    }
    # No dashboard: nobody watches, and runs of the harness side by side would contend for its port.
    config = load_config(args.config).replace(dashboard={"listen": ""}, embedding={"backend": args.backend})
    embedder = CachingEmbedder(
        await asyncio.to_thread(load_embedder, config.embedding),
        args.embedding_cache or out / "embeddings.sqlite",
        config.embedding.head_tokens,
    )
    data = Path(args.data)
    for name in args.sets:
        records = list(SETS[name](data))
        if args.no_task_hint:
            records = [dataclasses.replace(r, task="") for r in records]
        for seed in range(args.seeds):
            shuffled = records[:]
            random.Random(seed).shuffle(shuffled)
            cut = round(len(shuffled) * WARM_FRACTION)
            for energy_weight, cost_weight in args.weights:
                for mode in args.modes:
                    key = (name, energy_weight, cost_weight, mode, seed)
                    if key in seen:
                        continue
                    warm = mode == "warm"
                    settings = ReplaySettings(
                        energy_weight=energy_weight,
                        cost_weight=cost_weight,
                        seed=seed,
                        warm_start=Source(
                            f"the first {cut} of {len(shuffled)} shuffled {name} prompts", records=tuple(shuffled[:cut])
                        )
                        if warm
                        else None,
                    )
                    stream = shuffled[cut:] if warm else shuffled
                    started = time.perf_counter()
                    report = await replay(stream, config, settings, embedder, show_progress=False)
                    row = {
                        "set": name,
                        "energy_weight": energy_weight,
                        "cost_weight": cost_weight,
                        "mode": mode,
                        "seed": seed,
                        **variant,
                        "seconds": time.perf_counter() - started,
                        "figures": figures(report),
                    }
                    with open(log_path, "a", encoding="utf-8") as f:
                        f.write(json.dumps(row) + "\n")
                    done.append(row)
                    x = row["figures"]
                    print(
                        f"{name} {energy_weight:g}/{cost_weight:g} {mode} seed {seed}: bandit {x['bandit']:.4f}, "
                        f"best single {x['best_single']:.4f}, LinUCB {x['linucb']:.4f}, full information "
                        f"{x['full_information']:.4f} ({row['seconds']:.0f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
    embedder.close()
    wanted = [r for r in done if r["set"] in args.sets and r["mode"] in args.modes and r["seed"] < args.seeds]
    wanted = [r for r in wanted if {k: r.get(k, d) for k, d in (("backend", "torch"), ("task_hint", True))} == variant]
    wanted = [r for r in wanted if (r["energy_weight"], r["cost_weight"]) in args.weights]
    text = table(wanted)
    (out / "quality.md").write_text(text + "\n")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data", help="the shared data folder (default: %(default)s)")
    parser.add_argument("--out", default="simulations/results/quality", help="output folder (default: %(default)s)")
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--seeds", type=int, default=5, help="seeds per cell (default: %(default)s)")
    parser.add_argument("--modes", nargs="+", choices=["cold", "warm"], default=["cold", "warm"])
    parser.add_argument(
        "--weights",
        nargs="+",
        type=lambda text: tuple(float(v) for v in text.split(",")),
        default=list(WEIGHTS),
        metavar="ENERGY,COST",
        help="trade-offs (default: 0,0 0.1,0.1 1,1)",
    )
    parser.add_argument("--config", help="TOML configuration (default: the shipped one)")
    parser.add_argument("--backend", default="torch", choices=EMBEDDING_BACKENDS, help="embedding.backend")
    parser.add_argument("--no-task-hint", action="store_true", help="drop the task names: the router infers them")
    parser.add_argument("--embedding-cache", help="SQLite embedding cache (default: OUT/embeddings.sqlite)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
