"""Ctrl-C during a replay --sweep: the command ends within its grace time and leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from streams import synthetic

from bandit_router.traffic.format import write_traffic


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from each /proc/PID/stat's parent), the embedded redis-server among them."""
    parent_of: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent_of[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    grew = True
    while grew:
        grew = False
        for child, parent in parent_of.items():
            if child not in found and (parent == pid or parent in found):
                found.add(child)
                grew = True
    return found


def is_redis(pid: int) -> bool:
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_ctrl_c_during_a_sweep_stops_everything_it_started(tmp_path: Path) -> None:
    traffic = tmp_path / "traffic.jsonl"
    write_traffic(synthetic(1500, seed=2), traffic)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BANDIT_ROUTER_DASHBOARD_LISTEN": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "bandit_router", "replay", str(traffic), "--sweep", "--out", str(tmp_path / "out")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # As at a terminal: a runner that started this test in the background may have left SIGINT ignored,
        # and a child inherits that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stderr is not None
        # Wait until the sweep itself runs (its second replay), then interrupt it as Ctrl-C does.
        seen = []
        for line in process.stderr:
            seen.append(line)
            if line.startswith("sweep: energy weight = cost weight = 0.1"):
                break
        else:
            raise AssertionError("the sweep never started:\n" + "".join(seen))
        # The sweep's replay runs its own embedded redis-server: interrupt once it is up.
        deadline = time.monotonic() + 60
        while not any(is_redis(pid) for pid in descendants(process.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        started = descendants(process.pid)
        assert any(is_redis(pid) for pid in started), "the sweep's replay never started its Redis"
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=120)[1]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, rest
    assert "Traceback" not in rest, rest
    # Everything it started is gone (waited for: a child may take a moment to exit after its parent).
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in started if alive(pid)]
