"""scripts/gpu-check.sh: without a GPU it says so in one line and exits 3; its table holds each figure to its
target (the check itself runs on a GPU host, see the closing notes)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bandit_router.bench.gpu_check import table

ROOT = Path(__file__).resolve().parents[2]


def test_without_a_gpu_the_check_says_so_and_exits_3(tmp_path: Path) -> None:
    # An nvidia-smi that finds no GPU (as on a host with the driver but no device), ahead of any real one.
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'No devices were found' >&2\nexit 6\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu-check.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip() == (
        "gpu-check: no NVIDIA GPU here (nvidia-smi finds none): nothing to check; run it on a GPU host"
    )


def _figures(route_per_s: float, route_p99: float, added_c1: float) -> tuple[dict[str, object], dict[str, object]]:
    level = {
        "route": {"p50_ms": 2.0, "p99_ms": route_p99, "per_s": route_per_s},
        "embedding": {"p50_ms": 1.5, "p99_ms": 4.0, "per_s": route_per_s * 1.05},
    }
    gateway_level = {"added_p50_ms": added_c1, "added_p99_ms": 2 * added_c1, "gateway": {"per_s": 900.0}}
    return {"device": "cuda:0", "levels": {"512": level}}, {"variants": {"default": {"levels": {"1": gateway_level}}}}


def test_the_table_holds_each_figure_to_its_target() -> None:
    bench, gateway = _figures(6200.0, 21.0, 2.4)
    text, met = table(bench, gateway, 0, "GPU 0: NVIDIA H100")
    assert met and "met   routes/s at p99 <= 25 ms >= 5,000: 6,200" in text
    bench, gateway = _figures(6200.0, 31.0, 2.4)  # fast, but past the p99 bound
    text, met = table(bench, gateway, 0, "GPU 0: NVIDIA H100")
    assert not met and "MISSED  routes/s at p99 <= 25 ms >= 5,000: 0" in text
    bench, gateway = _figures(6200.0, 21.0, 4.1)
    text, met = table(bench, gateway, 1, "GPU 0: NVIDIA H100")
    assert not met and "MISSED  gateway added p50 at c=1 <= 3 ms: 4.10 ms" in text and "exit 1" in text
