"""The GPU check's table (scripts/gpu-check.sh): Route, the embedding alone and the gateway on the GPU, against
the targets, from the figures ``bench`` and ``gateway-bench`` wrote and the GPU tests' outcome."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# The fast path's targets on one H100 or H200.
ROUTES_PER_S = 5000.0
ROUTE_P99_MS = 25.0
GATEWAY_ADDED_MS = 3.0


def table(bench: dict[str, Any], gateway: dict[str, Any], tests_rc: int, gpus: str) -> tuple[str, bool]:
    """The table, and whether every target was met."""
    lines = [f"GPU check on {gpus.strip() or 'an unnamed GPU'} (embedding on {bench.get('device', '?')})"]
    lines.append(f"{'':24} {'p50 ms':>8} {'p99 ms':>8} {'per s':>9}")
    met = tests_rc == 0
    best = 0.0
    for level, figures in bench["levels"].items():
        route, alone = figures["route"], figures["embedding"]
        lines.append(f"{'Route c=' + level:24} {route['p50_ms']:8.2f} {route['p99_ms']:8.2f} {route['per_s']:9.0f}")
        lines.append(f"{'  embedding alone':24} {alone['p50_ms']:8.2f} {alone['p99_ms']:8.2f} {alone['per_s']:9.0f}")
        if route["p99_ms"] <= ROUTE_P99_MS:
            best = max(best, route["per_s"])
    levels = gateway["variants"]["default"]["levels"]
    for level, figures in levels.items():
        lines.append(
            f"{'gateway added c=' + level:24} {figures['added_p50_ms']:8.2f} {figures['added_p99_ms']:8.2f} "
            f"{figures['gateway']['per_s']:9.0f}"
        )
    added = levels["1"]["added_p50_ms"] if "1" in levels else float("inf")
    verdicts = [
        ("GPU tests (NVML energy attribution)", tests_rc == 0, "passed" if tests_rc == 0 else f"exit {tests_rc}"),
        (f"routes/s at p99 <= {ROUTE_P99_MS:g} ms >= {ROUTES_PER_S:,.0f}", best >= ROUTES_PER_S, f"{best:,.0f}"),
        (f"gateway added p50 at c=1 <= {GATEWAY_ADDED_MS:g} ms", added <= GATEWAY_ADDED_MS, f"{added:.2f} ms"),
    ]
    for name, ok, figure in verdicts:
        lines.append(f"{'met ' if ok else 'MISSED'}  {name}: {figure}")
        met = met and ok
    return "\n".join(lines), met


def main(folder: str) -> int:
    out = Path(folder)
    bench = json.loads((out / "bench.json").read_text())
    gateway = json.loads((out / "gateway.json").read_text())
    tests_rc = int((out / "tests.rc").read_text().strip())
    gpus = (out / "gpus.txt").read_text() if (out / "gpus.txt").exists() else ""
    text, met = table(bench, gateway, tests_rc, gpus.splitlines()[0] if gpus else "")
    print(text)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
