"""The off-policy check: on each shared set's exported decision log, does each single model's doubly robust estimate
cover that model's true mean reward, and does it say so where it cannot give one?

For each set and seed: a cold replay of the shuffled stream (``bandit_router.offline.replay.run.replay``, in virtual
time, at the server's default trade-off), its decision log exported as the service writes it (DSJSON), and
``evaluate`` run on it as a user would. The truth is each model's mean reward on the same stream, known here because
the sets hold every model's outcome for every query (the replay report's "always M"). A model's estimate counts only
where ``evaluate`` shows a number (support and ESS above the thresholds); elsewhere it says "not estimable".

    .venv/bin/python simulations/ope.py --data ../shared/data --sets routeprofile llmrouter-test --seeds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bandit_router.config import load_config
from bandit_router.embedding.backends import load_embedder
from bandit_router.embedding.cache import CachingEmbedder
from bandit_router.learning.decision_log import export
from bandit_router.offline.evaluate import estimable, evaluate, read_dsjson
from bandit_router.offline.replay.run import replay
from bandit_router.offline.replay.settings import ReplaySettings
from bandit_router.runtime.process import RouterProcess
from bandit_router.traffic.convert import shared_sets

SETS = shared_sets()


async def check(records: list[Any], config: Any, seed: int, embedder: Any) -> list[dict[str, Any]]:
    """One replay's log through ``evaluate``: each single model's truth, DR estimate and whether it covers it."""
    logs: dict[str, Path] = {}

    def on_start(server: RouterProcess) -> None:
        logs["dir"] = server.service.config.server.data_path / "decisions"

    with tempfile.TemporaryDirectory(prefix="br-ope-") as folder:
        path = Path(folder) / "log.dsjson"

        async def hold(result: dict[str, Any]) -> None:
            # Every reward is learned and logged by now: the replay served its last snapshot.
            export(logs["dir"], path)

        report = await replay(
            records, config, ReplaySettings(seed=seed), embedder, show_progress=False, on_start=on_start, hold=hold
        )
        decisions = read_dsjson(path)
    results = evaluate(decisions)
    rows = []
    for name, policy in report["policies"].items():
        if not name.startswith("always "):
            continue
        dr = results[name]["dr"]
        shown = estimable(dr, len(decisions))
        rows.append(
            {
                "model": name.removeprefix("always "),
                "truth": policy["mean_reward"],
                "dr": dr.value,
                "low": dr.low,
                "high": dr.high,
                "support": dr.support,
                "ess": dr.ess,
                "estimable": shown,
                "covered": shown and dr.low <= policy["mean_reward"] <= dr.high,
            }
        )
    return rows


async def run(args: argparse.Namespace) -> None:
    config = load_config(args.config).replace(dashboard={"listen": ""})
    embedder = CachingEmbedder(await asyncio.to_thread(load_embedder, config.embedding))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in args.sets:
        records = list(SETS[name](Path(args.data)))
        for seed in range(args.seeds):
            shuffled = records[:]
            random.Random(seed).shuffle(shuffled)
            rows = await check(shuffled, config, seed, embedder)
            with open(out / "runs.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"set": name, "seed": seed, "rows": rows}) + "\n")
            shown = [r for r in rows if r["estimable"]]
            covered = sum(r["covered"] for r in shown)
            refused = len(rows) - len(shown)
            print(f"{name} seed {seed}: {covered} of {len(shown)} estimates cover the truth; {refused} not estimable")
            lines.append((name, seed, rows))
    embedder.close()
    print("\n| set | seeds | single models | estimable | covered | mean abs. error where missed | median ESS |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.sets:
        runs = [rows for n, _, rows in lines if n == name]
        every = [r for rows in runs for r in rows]
        shown = [r for r in every if r["estimable"]]
        missed = [abs(r["dr"] - r["truth"]) for r in shown if not r["covered"]]
        print(
            f"| {name} | {len(runs)} | {len(every)} | {len(shown)} | {sum(r['covered'] for r in shown)} | "
            f"{statistics.fmean(missed) if missed else 0:.3f} | "
            f"{statistics.median(r['ess'] for r in shown) if shown else 0:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data", help="the shared data folder (default: %(default)s)")
    parser.add_argument("--out", default="simulations/results/ope", help="output folder (default: %(default)s)")
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=["routeprofile", "llmrouter-test"])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per set (default: %(default)s)")
    parser.add_argument("--config", help="TOML configuration (default: the shipped one)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
