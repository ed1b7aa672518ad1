"""Writes a replay's report: report.json, report.md, and PNG plots of regret and action share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bandit_router.replay.run import BANDIT


def table_rows(report: dict[str, Any]) -> list[str]:
    rows = [
        "| policy | mean reward | mean quality | mean cost (USD) | mean energy (J) | cumulative regret |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    ranked = sorted(report["policies"].items(), key=lambda item: -item[1]["mean_reward"])
    for name, p in ranked:
        label = f"**{name}**" if name == BANDIT else name
        rows.append(
            f"| {label} | {p['mean_reward']:.4f} | {p['mean_quality']:.4f} | {p['mean_cost_usd']:.3g} | "
            f"{p['mean_energy_joules']:.1f} | {p['cumulative_regret']:.1f} |"
        )
    return rows


def scenario_lines(report: dict[str, Any]) -> list[str]:
    scenario = report.get("scenario") or {}
    if not scenario.get("events") and not scenario.get("reward_delay") and not scenario.get("reward_drop"):
        return []
    lines = [f"Scenario {scenario['name']}:"]
    lines += [f"- step {e['at']}: {e['label']}" for e in scenario["events"]]
    if scenario["reward_delay"]:
        lines.append(f"- every reward sent {scenario['reward_delay']} queries after its Route")
    if scenario["reward_drop"]:
        lines.append(
            f"- {scenario['reward_drop']:.0%} of rewards never sent ({report['rewards_never_sent']} of "
            f"{report['records']}); the router never learns them, and neither do the baselines"
        )
    return [*lines, ""]


def markdown(report: dict[str, Any], title: str) -> str:
    r = report["reward"]
    energy = report["energy_source"]
    return "\n".join(
        [
            f"# {title}",
            "",
            f"{report['records']} queries, {len(report['models'])} models. Reward: `{r['formula']}` with energy weight "
            f"{r['energy_weight']:g}, cost weight {r['cost_weight']:g}, energy scale {r['energy_scale_joules']:g} J, "
            f"cost scale {r['cost_scale_usd']:g} USD.",
            "",
            f"Energy: {energy if isinstance(energy, str) else json.dumps(energy)} ({report['energy_basis']}).",
            f"Replay: {report['replay_queries_per_second']:.1f} queries/s through gRPC; the bandit ended at policy "
            f"{report['bandit_policy_version']}. Regret is to the per-query oracle.",
            "",
            *scenario_lines(report),
            *table_rows(report),
            "",
        ]
    )


def mark_events(ax: Any, report: dict[str, Any]) -> None:
    """A dashed line and a label at each scenario event's step."""
    for event in (report.get("scenario") or {}).get("events", []):
        ax.axvline(event["at"], color="black", linestyle="--", linewidth=0.8)
        ax.annotate(
            event["label"],
            (event["at"], 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            ha="right",
            va="top",
        )


def plot(report: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(9, 5))
    for name, p in sorted(report["policies"].items(), key=lambda item: item[1]["cumulative_regret"]):
        if name.startswith(("oracle", "always ")):
            continue
        ax.plot(p["regret_curve"], label=name, linewidth=2.5 if name == BANDIT else 1.2)
    ax.set(xlabel="query", ylabel="cumulative regret to the per-query oracle", title="Cumulative regret")
    mark_events(ax, report)
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(out / "regret.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    arms = report["policies"][BANDIT]["arms"]
    models = report["models"]
    window = max(10, len(arms) // 25)
    chosen = np.array([[a == m for m in models] for a in arms], dtype=float)
    kernel = np.ones(window) / window
    shares = np.array([np.convolve(chosen[:, j], kernel, mode="valid") for j in range(len(models))])
    fig, ax = plt.subplots(figsize=(9, 5))
    ax.stackplot(np.arange(shares.shape[1]) + window, shares, labels=models)
    ax.set(
        xlabel="query",
        ylabel=f"share of the last {window} queries",
        title="bandit-router: action share over time",
        ylim=(0, 1),
    )
    mark_events(ax, report)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    written.append(out / "action_share.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written


def write(report: dict[str, Any], out: str | Path, title: str) -> list[Path]:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=1))
    (folder / "report.md").write_text(markdown(report, title))
    return [folder / "report.json", folder / "report.md", *plot(report, folder)]
