"""Drift alerts: a served policy that moved far on the probes, and a shift in the mean reward."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bandit_router.observability.monitor import Monitor
from bandit_router.observability.samples import movers


def alerts(monitor: Monitor, tenant: str | None = None) -> list[dict[str, Any]]:
    """Drift alerts: a served policy that moved beyond the threshold within the last ``alert_hold_s``, with
    the models that gained and lost probability on the probes, by how much, and when; and a shift of the
    mean reward between the last two ``shift_window`` rewards. A young policy moves a lot as it learns; its
    swaps raise no alert before it has learned ``shift_window`` events."""
    found: list[dict[str, Any]] = []
    since = monitor.clock() - monitor.config.alert_hold_s
    for d in list(monitor.drift):
        if d.t >= since and d.learned >= monitor.config.shift_window and d.tv_previous > monitor.config.drift_alert_tv:
            change = {
                m: d.model_mass.get(m, 0.0) - d.previous_mass.get(m, 0.0)
                for m in sorted(set(d.model_mass) | set(d.previous_mass))
            }
            found.append(
                {
                    "kind": "drift",
                    "t": d.t,
                    "version": d.version,
                    "previous": d.previous_version,
                    "text": (
                        f"{time.strftime('%H:%M:%S UTC', time.gmtime(d.t))}: policy {d.version} moved "
                        f"{d.tv_previous:.2f} in total variation from the one before it on the probes (alert above "
                        f"{monitor.config.drift_alert_tv:g}); {movers(change)}"
                    ),
                    "change": change,
                    "before": dict(d.previous_mass),
                    "after": dict(d.model_mass),
                }
            )
    n = monitor.config.shift_window
    recent = [r.reward for r in list(monitor.rewards) if tenant is None or r.tenant == tenant][-2 * n :]
    if len(recent) == 2 * n:
        before, after = float(np.mean(recent[:n])), float(np.mean(recent[n:]))
        if abs(after - before) > monitor.config.reward_shift_alert:
            found.append(
                {
                    "kind": "reward",
                    "t": monitor.clock(),
                    "text": (
                        f"mean reward of the last {n} rewards is {after:.3f}, {before:.3f} the {n} before "
                        f"(alert beyond {monitor.config.reward_shift_alert:g})"
                    ),
                }
            )
    return found
