"""``bandit-router evaluate``: off-policy estimates, from an exported DSJSON log, of candidate policies.

Candidates: the logged policy itself, uniform random, each single model, and VW policies with other
arguments trained progressively on the log (each decision is predicted before it is learned, so no policy
is scored on what it has already seen). The doubly robust reward model is the running mean reward of each
(task, model) over the decisions before the one being scored.

The log keeps each decision's quality, cost and energy, so every candidate can also be scored under other
reward weights than the ones it was logged with (:func:`reweighted`): the trade-off to deploy, chosen
offline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from vowpal_wabbit_next import DSJsonFormatParser, Workspace

from bandit_router.config import RewardConfig
from bandit_router.domain.reward import scalar_reward
from bandit_router.errors import InputError
from bandit_router.policy.ope import MIN_ESS, MIN_SUPPORT, Estimate, Support, doubly_robust, ips, snips, support


@dataclasses.dataclass(frozen=True)
class LoggedDecision:
    task: str
    models: list[str]
    action: int
    probability: float
    reward: float
    pmf: list[float]
    line: str
    quality: float
    cost_usd: float
    energy_joules: float
    tenant: str = ""


class LogError(InputError):
    """A decision log is missing, empty or not what export-log writes; the message names the line."""


def _decision(row: Any, text: str) -> LoggedDecision:
    meta = row["_bandit_router"]
    models = meta["models"]
    pmf = [0.0] * len(models)
    for action, p in zip(row["a"], row["p"], strict=True):
        pmf[action - 1] = p
    if len(row["c"]["_multi"]) != len(models):
        raise LogError(f"_multi has {len(row['c']['_multi'])} actions, _bandit_router.models names {len(models)}")
    action = int(row["_labelIndex"])
    if not 0 <= action < len(models):
        raise LogError(f"_labelIndex must index the {len(models)} models offered, got {action}")
    return LoggedDecision(
        meta["task"],
        models,
        action,
        float(row["_label_probability"]),
        -float(row["_label_cost"]),
        pmf,
        text,
        float(meta["quality"]),
        float(meta["cost_usd"]),
        float(meta["energy_joules"]),
        str(meta.get("tenant", "")),  # logs exported before tenants were written are one pool
    )


def read_dsjson(path: str | Path) -> list[LoggedDecision]:
    """The decisions of a DSJSON log that ``bandit-router export-log`` wrote. Decisions may offer different
    models (a budget or candidate list narrowed one, a model was added mid-log)."""
    decisions = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = list(f)
    except (OSError, UnicodeDecodeError) as exc:
        raise LogError(f"decision log {str(path)!r} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        where = f"{path}:{number}"
        try:
            decisions.append(_decision(json.loads(text), text))
        except json.JSONDecodeError as exc:
            raise LogError(f"{where}: not a JSON object ({exc.msg})") from None
        except LogError as exc:
            raise LogError(f"{where}: {exc}") from None
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise LogError(
                f"{where}: not a decision as bandit-router export-log writes it ({type(exc).__name__}: {exc})"
            ) from None
    if not decisions:
        raise LogError(f"{path}: holds no decisions (bandit-router export-log writes them once rewards are learned)")
    return decisions


def judged(decisions: Sequence[LoggedDecision], tenant: str | None) -> tuple[list[LoggedDecision], str]:
    """What to estimate, and what it is: one tenant's decisions at their reward; or, where the log pools several
    tenants, every decision at its quality, which each tenant reports within [0, 1] (one tenant's accepted
    extremes of energy or cost would otherwise decide every estimate)."""
    if tenant is not None:
        own = [d for d in decisions if d.tenant == tenant]
        if not own:
            found = sorted({d.tenant for d in decisions})
            raise LogError(f"--tenant {tenant!r}: the log holds no decision of it (tenants: {found})")
        return own, f"tenant {tenant!r}'s reward"
    tenants = {d.tenant for d in decisions}
    if len(tenants) > 1:
        pooled = [_relabelled(d, d.quality) for d in decisions]
        return pooled, f"quality, pooled over {len(tenants)} tenants (--tenant NAME for one tenant's reward)"
    return list(decisions), "reward"


def reweighted(
    decisions: Sequence[LoggedDecision], energy_weight: float, cost_weight: float, scales: RewardConfig
) -> list[LoggedDecision]:
    """The decisions with the reward they would have had under other weights (same quality, cost and
    energy), their DSJSON label changed to match, so progressive VW candidates learn that reward."""
    return [
        _relabelled(d, scalar_reward(d.quality, d.energy_joules, d.cost_usd, energy_weight, cost_weight, scales))
        for d in decisions
    ]


def _relabelled(decision: LoggedDecision, reward: float) -> LoggedDecision:
    """``decision`` with another reward, its DSJSON label changed to match, so progressive VW candidates learn
    what the estimates are of."""
    row = json.loads(decision.line)
    row["_label_cost"] = -reward
    return dataclasses.replace(decision, reward=reward, line=json.dumps(row))


def reward_model(decisions: Sequence[LoggedDecision]) -> list[list[float]]:
    """Predicted reward of every action of every decision: the running (task, model) mean before it."""
    sums: dict[tuple[str, str], float] = {}
    counts: dict[tuple[str, str], int] = {}
    predicted = []
    for d in decisions:
        predicted.append([sums.get((d.task, m), 0.0) / max(counts.get((d.task, m), 0), 1) for m in d.models])
        key = (d.task, d.models[d.action])
        sums[key] = sums.get(key, 0.0) + d.reward
        counts[key] = counts.get(key, 0) + 1
    return predicted


def progressive_vw(decisions: Sequence[LoggedDecision], args: Sequence[str]) -> list[list[float]]:
    """The pmf a VW policy with ``args`` gives each decision, having learned every earlier one."""
    workspace = Workspace([*args, "--quiet"])
    parser = DSJsonFormatParser(workspace)
    targets = []
    for d in decisions:
        examples = parser.parse_json(d.line)
        pmf = [0.0] * len(d.models)
        for index, p in cast(list[tuple[int, float]], workspace.predict_one(examples)):
            pmf[index] = float(p)
        targets.append(pmf)
        workspace.learn_one(examples)
    return targets


def evaluate(
    decisions: Sequence[LoggedDecision], vw_candidates: Sequence[Sequence[str]] = (), z: float = 1.96
) -> dict[str, dict[str, Estimate]]:
    """Every candidate's IPS, SNIPS and DR estimates, with intervals of ``z`` standard errors, each carrying the
    candidate's support in the log and its weights' effective sample size (see :func:`estimable`).

    Each decision's probabilities are over the models it offered. "always M" takes M where it was offered,
    and acts as the logged policy where it was not (a policy can only choose among what is offered); the
    estimate's ``n`` counts the decisions it chose M on.
    """
    actions = [d.action for d in decisions]
    propensities = [d.probability for d in decisions]
    rewards = [d.reward for d in decisions]
    predicted = reward_model(decisions)
    candidates: dict[str, list[list[float]]] = {
        "logged policy": [d.pmf for d in decisions],
        "uniform random": [[1.0 / len(d.models)] * len(d.models) for d in decisions],
    }
    offered: dict[str, int] = {}
    models = list(dict.fromkeys(m for d in decisions for m in d.models))
    for model in models:
        rows = []
        for d in decisions:
            rows.append([float(m == model) for m in d.models] if model in d.models else d.pmf)
        candidates[f"always {model}"] = rows
        offered[f"always {model}"] = sum(model in d.models for d in decisions)
    for args in vw_candidates:
        candidates["vw " + " ".join(args)] = progressive_vw(decisions, args)
    results: dict[str, dict[str, Estimate]] = {}
    logging = [d.pmf for d in decisions]
    for name, target in candidates.items():
        results[name] = {
            "ips": ips(target, actions, propensities, rewards, z=z),
            "dr": doubly_robust(target, actions, propensities, rewards, predicted, z=z),
        }
        # A candidate that never takes a logged action gets no SNIPS: it would say nothing about it.
        with contextlib.suppress(ValueError):
            results[name]["snips"] = snips(target, actions, propensities, rewards, z=z)
        backing = support(target, logging, actions, propensities)
        n = offered.get(name)
        results[name] = {
            k: dataclasses.replace(e, n=e.n if n is None else n, support=backing.share, ess=backing.ess)
            for k, e in results[name].items()
        }
    return results


def estimable(estimate: Estimate, decisions: int, min_support: float = MIN_SUPPORT, min_ess: float = MIN_ESS) -> bool:
    """Whether enough of the ``decisions`` logged speak for the estimate's policy (policy/ope.py's rule)."""
    if estimate.support is None or estimate.ess is None:
        return True
    return Support(estimate.support, estimate.ess, decisions).estimable(min_support, min_ess)


def table(
    results: dict[str, dict[str, Estimate]],
    decisions: int,
    min_support: float = MIN_SUPPORT,
    min_ess: float = MIN_ESS,
) -> str:
    """The estimates as a Markdown table, best DR first; a policy too few decisions speak for comes last, as
    "not estimable (support 9%, ESS 4)" rather than as numbers."""
    rows = [
        "| policy | IPS [95% CI] | SNIPS [95% CI] | DR [95% CI] | support, ESS | decisions |",
        "| --- | --- | --- | --- | --- | --- |",
    ]

    def rank(item: tuple[str, dict[str, Estimate]]) -> tuple[bool, float]:
        return not estimable(item[1]["dr"], decisions, min_support, min_ess), -item[1]["dr"].value

    for name, estimates in sorted(results.items(), key=rank):
        dr = estimates["dr"]
        backing = f"{dr.support:.0%}, {dr.ess:.0f}" if dr.support is not None and dr.ess is not None else "-"
        if estimable(dr, decisions, min_support, min_ess):
            cells = []
            for key in ("ips", "snips", "dr"):
                e = estimates.get(key)
                cells.append(f"{e.value:.4f} [{e.low:.4f}, {e.high:.4f}]" if e else "undefined")
        else:
            cells = [f"not estimable (support {dr.support:.0%}, ESS {dr.ess:.0f})"] * 3
        cells.append(backing)
        n = dr.n
        cells.append(f"{n}" if n == decisions else f"{n} of {decisions} (offered; else as logged)")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot(estimates: dict[str, dict[str, dict[str, Estimate]]], path: str | Path, decisions: int = 0) -> Path:
    """Each candidate's estimates with their intervals, one panel per reward trade-off: DR as a dot, SNIPS as a
    diamond, each on its interval, best DR first; a candidate not estimable on ``decisions`` (when given) is left
    out of the plot, as the table says why."""
    if decisions:
        estimates = {
            label: {n: e for n, e in results.items() if estimable(e["dr"], decisions)}
            for label, results in estimates.items()
        }
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bandit_router.observability.colours import model_colours, policy_colour

    first = next(iter(estimates.values()))
    colours = model_colours(n.removeprefix("always ") for n in first if n.startswith("always "))
    fig, axes = plt.subplots(
        1, len(estimates), figsize=(6.5 * len(estimates), 0.45 * len(first) + 1.8), squeeze=False, sharey=True
    )
    names = sorted(first, key=lambda n: first[n]["dr"].value)
    for ax, (label, results) in zip(axes[0], estimates.items(), strict=True):
        for y, name in enumerate(names):
            colour = policy_colour(name, colours)
            for key, offset, marker in (("dr", -0.15, "o"), ("snips", 0.15, "D")):
                e = results[name].get(key)
                if e is None:
                    continue
                low, high = max(e.low, e.value - 10), min(e.high, e.value + 10)
                ax.errorbar(
                    e.value, y + offset, xerr=[[e.value - low], [high - e.value]], fmt=marker, color=colour, capsize=3
                )
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set(xlabel="estimated mean reward (DR ●, SNIPS ◆; intervals)", title=f"Reward {label}")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
