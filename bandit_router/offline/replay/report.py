"""Writes a replay's report: report.json, report.md, PNG plots of regret and action share, and a sweep's
quality against cost and energy (sweep.json, sweep.md, pareto.png)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from bandit_router.observability.colours import model_colours, policy_colour
from bandit_router.offline.replay.run import BANDIT


def table_rows(report: dict[str, Any]) -> list[str]:
    rows = [
        "| policy | mean reward | mean quality | mean cost (USD) | mean energy (J) | cumulative regret | churn |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ranked = sorted(report["policies"].items(), key=lambda item: -item[1]["mean_reward"])
    for name, p in ranked:
        label = f"**{name}**" if name == BANDIT else name
        churn = f"{p['churn']['mean_tv']:.3f}" if p.get("churn") else "-"
        rows.append(
            f"| {label} | {p['mean_reward']:.4f} | {p['mean_quality']:.4f} | {p['mean_cost_usd']:.3g} | "
            f"{p['mean_energy_joules']:.1f} | {p['cumulative_regret']:.1f} | "
            f"{churn} |"
        )
    return rows


def warm_start_lines(report: dict[str, Any]) -> list[str]:
    warm = report.get("warm_start")
    if not warm:
        return ["Cold start: the router learned from nothing but this stream.", ""]
    verdict = warm["verdict"]
    ids = warm["record_ids"]
    rows = f"; records {ids[0]} ... {ids[-1]} (all {len(ids)} in report.json)" if ids else ""
    return [
        f"Warm start before the first query: {warm['source']}{rows}. The gate "
        f"{'promoted' if verdict['promoted'] else 'held back'} it as v{warm['version']} ({verdict['reason']}). "
        f"Baselines: {warm['baselines']}. Every figure below is on the {report['records']} routed queries only.",
        "",
    ]


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


def cadence_line(cadence: dict[str, Any]) -> str:
    """The schedule a replay assumed, in words."""
    return (
        f"queries at {cadence['time']}, each reward {cadence['answer_s']:g} s after its query, the learner's snapshot "
        f"served every {cadence['snapshot_every_events']} rewards or {cadence['snapshot_interval_s']:g} s "
        f"({cadence['snapshots']} snapshots over {cadence['virtual_seconds']:.0f} s), the baselines learning on the "
        "same schedule"
    )


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
            *(
                [
                    f"Energy unknown for {', '.join(report['energy_unknown_models'])} (no catalog profile, none in the "
                    "traffic): counted as 0 J in the means, and the energy weight does not apply to it."
                ]
                if report.get("energy_unknown_models")
                else []
            ),
            f"Replay: through gRPC in virtual time, {cadence_line(report['cadence'])}; the bandit ended at policy "
            f"{report['bandit_policy_version']}. Regret is to the per-query oracle. Churn: the mean total variation "
            "between the action shares of consecutive 200-query windows after the first fifth of the stream (a "
            "settled policy shows sampling noise only).",
            "",
            *warm_start_lines(report),
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
    colours = model_colours(report["models"])
    fig, ax = plt.subplots(figsize=(10, 5))
    for name, p in sorted(report["policies"].items(), key=lambda item: item[1]["cumulative_regret"]):
        if name.startswith(("oracle", "always ")):
            continue
        ax.plot(
            p["regret_curve"],
            label=name,
            linewidth=2.5 if name == BANDIT else 1.2,
            color=policy_colour(name, colours),
            linestyle="--" if name.startswith("best single") else "-",
        )
    ax.set(xlabel="query", ylabel="cumulative regret to the per-query oracle", title="Cumulative regret")
    mark_events(ax, report)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
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
    # A model the bandit never chose has no band, and no legend entry.
    labels = [m if chosen[:, j].any() else f"_{m}" for j, m in enumerate(models)]
    ax.stackplot(np.arange(shares.shape[1]) + window, shares, labels=labels, colors=[colours[m] for m in models])
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


def sweep_summary(reports: dict[float, dict[str, Any]]) -> dict[str, Any]:
    """Each policy's means at each swept weight (energy weight = cost weight = w)."""
    policies: dict[str, list[dict[str, float]]] = {}
    for weight, result in sorted(reports.items()):
        for name, p in result["policies"].items():
            if name.startswith("best single model"):
                continue  # one of the "always" policies, under another name at each weight
            if name.startswith("full information"):
                # The ridge chosen in hindsight may differ from weight to weight: one policy, one line.
                name = "full information (every outcome seen; best ridge in hindsight at each weight)"
            policies.setdefault(name, []).append(
                {
                    "weight": weight,
                    **{k: p[k] for k in ("mean_quality", "mean_cost_usd", "mean_energy_joules", "mean_reward")},
                }
            )
    first = next(iter(reports.values()))
    return {
        "weights": sorted(reports),
        "formula": first["reward"]["formula"],
        "energy_source": first["energy_source"],
        "policies": policies,
    }


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both counts (lower x, higher quality), by x."""
    front = [
        i
        for i, (x, q) in enumerate(points)
        if not any((x2 <= x and q2 >= q) and (x2 < x or q2 > q) for x2, q2 in points)
    ]
    return sorted(front, key=lambda i: points[i][0])


def sweep_markdown(summary: dict[str, Any], title: str) -> str:
    rows = [
        f"# {title}: sweep of reward weights",
        "",
        f"Energy weight = cost weight = w for w in {summary['weights']}; reward `{summary['formula']}`; energy "
        f"{summary['energy_source']}. Each cell: mean quality / mean cost (USD) / mean energy (J).",
        "",
        "| policy | " + " | ".join(f"w = {w:g}" for w in summary["weights"]) + " |",
        "| --- |" + " --- |" * len(summary["weights"]),
    ]
    for name, points in summary["policies"].items():
        cells = [f"{p['mean_quality']:.3f} / {p['mean_cost_usd']:.3g} / {p['mean_energy_joules']:.1f}" for p in points]
        rows.append(f"| {f'**{name}**' if name == BANDIT else name} | " + " | ".join(cells) + " |")
    return "\n".join([*rows, ""])


def _plain(value: float) -> str:
    """A tick in plain decimals with one significant figure or more: 0.00002, 0.0005, 20, 500."""
    if value <= 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, -math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"


def sweep_plot(summary: dict[str, Any], out: Path) -> Path:
    """Quality against cost and against energy for every policy and weight; each learning policy's
    Pareto front drawn as a line, the single models (the same at every weight) as crosses in their colours.
    The bandit's points are labelled with their weight; the legend sits outside the data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    singles = [n.removeprefix("always ") for n in summary["policies"] if n.startswith("always ")]
    colours = model_colours(singles)
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.5), layout="constrained")
    for ax, key, label, unit in (
        (axes[0], "mean_cost_usd", "mean cost per query (USD)", "$"),
        (axes[1], "mean_energy_joules", "mean energy per query (J)", ""),
    ):
        for name, points in summary["policies"].items():
            xy = [(p[key], p["mean_quality"]) for p in points]
            colour = policy_colour(name, colours)
            if name.startswith("always "):
                ax.scatter(*xy[0], marker="x", color=colour, label=name)
                continue
            front = pareto_front(xy)
            style = {"linewidth": 2.5} if name == BANDIT else {"linewidth": 1.0}
            ax.plot([xy[i][0] for i in front], [xy[i][1] for i in front], marker="o", label=name, color=colour, **style)
            ax.scatter([x for x, _ in xy], [q for _, q in xy], color=colour, s=10)
            if name == BANDIT:
                for (x, q), p in zip(xy, points, strict=True):
                    ax.annotate(f"w={p['weight']:g}", (x, q), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set(xlabel=label, ylabel="mean quality", xscale="log")
        # Plain numbers on the log axis (0.0002, 0.0005, ...), not powers of ten.
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _, unit=unit: unit + _plain(v)))
        ax.tick_params(axis="x", labelrotation=30)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="outside lower center", ncols=3)
    fig.suptitle(f"Quality against cost and energy, energy weight = cost weight w in {summary['weights']}")
    path = out / "pareto.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_sweep(reports: dict[float, dict[str, Any]], out: str | Path, title: str) -> list[Path]:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    summary = sweep_summary(reports)
    (folder / "sweep.json").write_text(json.dumps(summary, indent=1))
    (folder / "sweep.md").write_text(sweep_markdown(summary, title))
    return [folder / "sweep.json", folder / "sweep.md", sweep_plot(summary, folder)]
