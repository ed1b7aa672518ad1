r"""Where the router stands against every single model: its quality, energy and cost as shares of each model's, and
whether it earns more reward, per run and along a sweep of trade-offs; wins and losses alike.

Examples
--------
>>> policies = {
...     "bandit-router": {"mean_quality": 0.72, "mean_cost_usd": 2e-5, "mean_energy_joules": 20.0, "mean_reward": 0.6},
...     "always big": {"mean_quality": 0.75, "mean_cost_usd": 5e-5, "mean_energy_joules": 50.0, "mean_reward": 0.5},
...     "always small": {"mean_quality": 0.40, "mean_cost_usd": 1e-5, "mean_energy_joules": 8.0, "mean_reward": 0.62},
... }
>>> for line in against_each(policies):
...     print(line.replace("; ", ";\n  "))
against always big (the strongest): 96% of its quality at 40% of its energy and 40% of its cost;
  reward 0.600 vs 0.500: wins
against always small (the most rewarded): 180% of its quality at 250% of its energy and 200% of its cost;
  reward 0.600 vs 0.620: loses
"""

from __future__ import annotations

from typing import Any

from bandit_router.offline.replay.run import BANDIT


def _share(mine: float, theirs: float) -> str:
    return f"{mine / theirs:.0%}" if theirs > 0 else "n/a (theirs is 0)"


def singles(policies: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The single-model policies ("always M") of a report."""
    return {name: p for name, p in policies.items() if name.startswith("always ")}


def against(mine: dict[str, Any], name: str, theirs: dict[str, Any], role: str = "") -> str:
    """One line: the router's quality, energy and cost as shares of ``theirs``, and which earns more reward."""
    verdict = "wins" if mine["mean_reward"] > theirs["mean_reward"] else "loses"
    return (
        f"against {name}{f' ({role})' if role else ''}: {_share(mine['mean_quality'], theirs['mean_quality'])} of its "
        f"quality at {_share(mine['mean_energy_joules'], theirs['mean_energy_joules'])} of its energy and "
        f"{_share(mine['mean_cost_usd'], theirs['mean_cost_usd'])} of its cost; reward {mine['mean_reward']:.3f} vs "
        f"{theirs['mean_reward']:.3f}: {verdict}"
    )


def against_each(policies: dict[str, dict[str, Any]], name: str = BANDIT) -> list[str]:
    """The router against every single model, the strongest (highest quality) and the most rewarded named."""
    models = singles(policies)
    if not models:
        return []
    strongest = max(models, key=lambda n: models[n]["mean_quality"])
    rewarded = max(models, key=lambda n: models[n]["mean_reward"])
    lines = []
    for model in sorted(models, key=lambda n: -models[n]["mean_quality"]):
        roles = [r for r, m in (("the strongest", strongest), ("the most rewarded", rewarded)) if m == model]
        lines.append(against(policies[name], model, models[model], " and ".join(roles)))
    return lines


def headline(report: dict[str, Any], name: str = BANDIT) -> str:
    """One line for a run: the router against the most rewarded single model and against the strongest."""
    policies = report["policies"]
    models = singles(policies)
    mine = policies[name]
    if not models:
        return f"{name}: mean reward {mine['mean_reward']:.4f}"
    strongest = max(models, key=lambda n: models[n]["mean_quality"])
    rewarded = max(models, key=lambda n: models[n]["mean_reward"])
    best = models[rewarded]["mean_reward"]
    verdict = "beats" if mine["mean_reward"] > best else "loses to"
    ratio = f"; ratio {mine['mean_reward'] / best:.3f}" if best > 0 else ""
    return (
        f"{name} {verdict} the best single model, {rewarded.removeprefix('always ')} (reward {mine['mean_reward']:.4f} "
        f"vs {best:.4f}{ratio}), with {_share(mine['mean_quality'], models[strongest]['mean_quality'])} of the "
        f"strongest model's ({strongest.removeprefix('always ')}) quality at "
        f"{_share(mine['mean_energy_joules'], models[strongest]['mean_energy_joules'])} of its energy and "
        f"{_share(mine['mean_cost_usd'], models[strongest]['mean_cost_usd'])} of its cost"
    )


def sweep_lines(reports: dict[float, dict[str, Any]], name: str = BANDIT) -> list[str]:
    """Along a sweep (energy weight = cost weight = w): each point's headline, then the router's path."""
    lines = [f"w = {w:g}: {headline(reports[w], name)}" for w in sorted(reports)]
    path = " -> ".join(
        f"w {w:g}: quality {p['mean_quality']:.3f}, ${p['mean_cost_usd']:.2g}, {p['mean_energy_joules']:.1f} J"
        for w in sorted(reports)
        for p in [reports[w]["policies"][name]]
    )
    wins = sum(_wins(reports[w], name) for w in reports)
    return [*lines, f"the router's path (pareto.png): {path}", f"wins at {wins} of {len(reports)} trade-offs"]


def _wins(report: dict[str, Any], name: str) -> bool:
    models = singles(report["policies"])
    best = max((p["mean_reward"] for p in models.values()), default=float("-inf"))
    return bool(report["policies"][name]["mean_reward"] > best)


def control_line(control: dict[str, Any]) -> str:
    r"""What a replay's control group measured (``report["control"]``): each arm's mean reward and the difference
    with its anytime-valid interval, or why there is none.

    >>> line = control_line({"share": 0.1, "baseline": "uniform", "value": "reward", "n": 60,
    ...     "routed": {"n": 54, "reward": 0.61}, "control": {"n": 6, "reward": 0.40},
    ...     "difference": 0.21, "lower": -0.35, "upper": 0.77, "confidence": 0.95})
    >>> print(line.replace("; ", ";\n  "))
    control group (10% of queries, served uniform): routed 0.610 mean reward on 54, control 0.400 on 6;
      difference +0.210, 95% anytime-valid interval [-0.350, +0.770]: too few to tell
    """
    routed, held = control["routed"], control["control"]
    value = control["value"]
    head = (
        f"control group ({control['share']:.0%} of queries, served {control['baseline']}): routed "
        + (f"{routed[value]:.3f} mean {value} on {routed['n']}" if routed["n"] else "nothing rewarded")
        + ", control "
        + (f"{held[value]:.3f} on {held['n']}" if held["n"] else "nothing rewarded")
    )
    if control.get("difference") is None:
        return f"{head}; too few control decisions for an interval"
    lower, upper = control.get("lower"), control.get("upper")
    if lower is None or upper is None:
        return f"{head}; difference {control['difference']:+.3f}, no finite interval yet"
    verdict = "routing earns more" if lower > 0 else "the control earns more" if upper < 0 else "too few to tell"
    return (
        f"{head}; difference {control['difference']:+.3f}, {control['confidence']:.0%} anytime-valid interval "
        f"[{lower:+.3f}, {upper:+.3f}]: {verdict}"
    )
