"""Summarizes replay reports against the targets: bandit >= best single, >= LinUCB, >= 95% of full information."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(folder: str) -> None:
    columns = ("replay", "bandit", "best single", "LinUCB", "full info", "/ best", "/ LinUCB", "/ full", "q/s")
    print("| " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * (len(columns) - 1))
    for path in sorted(Path(folder).glob("*/report.json")):
        report = json.loads(path.read_text())
        p = report["policies"]
        bandit = p["bandit-router"]["mean_reward"]
        best = next(v["mean_reward"] for k, v in p.items() if k.startswith("best single"))
        linucb = next(v["mean_reward"] for k, v in p.items() if k.startswith("LinUCB"))
        full = next(v["mean_reward"] for k, v in p.items() if k.startswith("full information"))
        print(
            f"| {path.parent.name} | {bandit:.4f} | {best:.4f} | {linucb:.4f} | {full:.4f} | {bandit / best:.3f} | "
            f"{bandit / linucb:.3f} | {bandit / full:.3f} | {report['replay_queries_per_second']:.1f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "simulations/results")
