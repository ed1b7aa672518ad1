"""Soak test: Route + Reward against a real router process for a bounded time, watching errors and memory.

It starts its own Redis and ``bandit-router serve`` as a separate process, runs ``concurrency`` clients that
each route a query and reward the decision, in a loop, for ``duration_s``, sampling the server's resident
memory; then stops the server with SIGTERM (which drains the learner) and checks that nothing is pending,
every acknowledged reward was learned, and no call failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio as aioredis

from bandit_router.bench.load import free_port, queries, wait_serving
from bandit_router.config import load_config
from bandit_router.policy.vw import Snapshot
from bandit_router.store.embedded import start_embedded


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            # The fields after the parenthesised name: state, then the parent's pid.
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def own_mib(pid: int) -> float:
    """Resident set size of the process alone, from Linux /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _by_process(server: int, redis: int | None) -> dict[str, float]:
    """Each process's own resident MiB: the server, its children (named by what they run), the Redis."""
    found = {"server": own_mib(server)}
    for child in _children(server):
        with contextlib.suppress(OSError, RuntimeError):
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            kind = "embedding worker" if b"_worker_main" in command else "child"
            found[f"{kind} {child}"] = resident_mib(child)
    if redis is not None:
        with contextlib.suppress(OSError, RuntimeError):
            found["redis-server (the soak's)"] = resident_mib(redis)
    return found


def resident_mib(pid: int) -> float:
    """Resident set size of the process and all its descendants (the embedding workers, an embedded Redis),
    from Linux /proc."""
    total = own_mib(pid)
    for child in _children(pid):
        with contextlib.suppress(OSError, RuntimeError):
            total += resident_mib(child)
    return total


@dataclasses.dataclass
class _Tally:
    routes: int = 0
    rewards: int = 0
    errors: dict[str, int] = dataclasses.field(default_factory=dict)


async def _clients(target: str, texts: list[str], concurrency: int, deadline: float, tally: _Tally) -> None:
    """``concurrency`` clients doing Route then Reward until ``deadline``, counting calls and errors."""
    from bandit_router.v1 import router_pb2 as pb
    from bandit_router.v1 import router_pb2_grpc

    async def client(offset: int) -> None:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = router_pb2_grpc.RouterStub(channel)
            i = offset
            while time.monotonic() < deadline:
                text = texts[i % len(texts)]
                i += concurrency
                try:
                    decision = await stub.Route(pb.RouteRequest(query=text), timeout=30)
                    tally.routes += 1
                    quality = 0.9 if decision.model.startswith("gemma") else 0.5
                    await stub.Reward(pb.RewardRequest(decision_id=decision.decision_id, quality=quality), timeout=30)
                    tally.rewards += 1
                except grpc.aio.AioRpcError as exc:
                    tally.errors[exc.code().name] = tally.errors.get(exc.code().name, 0) + 1

    await asyncio.gather(*(client(i) for i in range(concurrency)))


async def _left_in(redis_url: str, prefix: str) -> tuple[int, int, int]:
    """What the stopped router left in Redis: pending decisions, events in its snapshot, stream backlog."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        pending = [k async for k in client.scan_iter(match=f"{prefix}:pending:*")]
        raw = await client.get(f"{prefix}:snapshot")
        learned = Snapshot.decode(raw).learned if isinstance(raw, bytes) else 0
        backlog = await client.xlen(f"{prefix}:events")
    finally:
        await client.aclose()
    return len(pending), learned, int(backlog)


def _reward_env(reward: dict[str, float]) -> dict[str, str]:
    """``reward`` settings as the environment gives them to a router (the configuration checks them there)."""
    return {f"BANDIT_ROUTER_REWARD_{name.upper()}": repr(value) for name, value in reward.items()}


async def _used_memory(client: aioredis.Redis) -> float:
    """What Redis holds for its data (``used_memory``), in MiB."""
    return int((await client.info("memory"))["used_memory"]) / 2**20


async def _soak_server(duration_s: float, concurrency: int, reward: dict[str, float]) -> dict[str, Any]:
    """Runs a router process on its own Redis under load for ``duration_s``, with ``reward`` settings changed
    (``wait_time_s``, ``retention_s``); the raw figures."""
    texts = queries(20_000, seed=3)
    prefix = "soak"
    tally = _Tally()
    memory: list[tuple[float, float]] = []
    redis_memory: list[tuple[float, float]] = []
    processes: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="br-soak-") as data_dir:
        redis = await start_embedded(Path(data_dir) / "redis")
        target = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "REDIS_URL": redis.url,
            "BANDIT_ROUTER_REDIS_KEY_PREFIX": prefix,
            "BANDIT_ROUTER_SERVER_LISTEN": target,
            "BANDIT_ROUTER_SERVER_DATA_DIR": data_dir,
            "BANDIT_ROUTER_DASHBOARD_LISTEN": "127.0.0.1:0",
            "BANDIT_ROUTER_HTTP_LISTEN": "127.0.0.1:0",
            **_reward_env(reward),
        }
        watcher = aioredis.Redis.from_url(redis.url)
        log_path = Path(data_dir) / "server.log"
        with open(log_path, "w") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "bandit_router", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            await wait_serving(target, timeout=120)
            started = time.monotonic()
            deadline = started + duration_s

            async def sample() -> None:
                # Every 5 s, or often enough that a short run still has a dozen samples.
                every = min(5.0, duration_s / 12)
                while time.monotonic() < deadline:
                    t = time.monotonic() - started
                    memory.append((t, resident_mib(server.pid)))
                    redis_memory.append((t, await _used_memory(watcher)))
                    for name, mib in _by_process(server.pid, redis.pid).items():
                        processes.setdefault(name, []).append((t, mib))
                    await asyncio.sleep(every)

            await asyncio.gather(sample(), _clients(target, texts, concurrency, deadline, tally))
            elapsed = time.monotonic() - started
        except Exception:
            print(log_path.read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            server.send_signal(signal.SIGTERM)
            exit_code = await asyncio.to_thread(server.wait, 120)
            await watcher.aclose()
        pending, learned, backlog = await _left_in(redis.url, prefix)
        await asyncio.to_thread(redis.stop)
    return {
        "duration_s": elapsed,
        "concurrency": concurrency,
        "routes": tally.routes,
        "rewards": tally.rewards,
        "route_reward_pairs_per_s": tally.rewards / elapsed,
        "errors": tally.errors,
        "pending_after": pending,
        "learned": learned,
        "stream_backlog_after": backlog,
        "server_exit_code": exit_code,
        "rss_samples": memory,
        "rss_by_process": processes,
        "redis_used_mib": redis_memory,
    }


# The memory the router (with its embedding workers) may hold at any time: the limit deploy/k8s/router.yaml gives
# its container. Exceeding it there is an OOM kill.
MAX_RSS_MIB = 3072.0
# Flatness is judged only on runs this long: the allocator and the caches warm up over the first minute.
FLAT_AFTER_S = 120.0


def _thirds(samples: list[tuple[float, float]]) -> tuple[float, float]:
    """The mean of the first third of ``samples`` and of the last third."""
    part = max(1, len(samples) // 3)
    return sum(m for _, m in samples[:part]) / part, sum(m for _, m in samples[-part:]) / part


async def run_soak(
    duration_s: float,
    concurrency: int,
    json_path: str | None = None,
    max_rss_mib: float = MAX_RSS_MIB,
    reward: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Soaks a router process, prints the figures and each check's verdict, and returns them. ``checks``
    holds every check judged; ``not_judged`` names any the run was too short for, and why. ``reward`` changes
    reward settings of the router: a short ``wait_time_s`` and ``retention_s`` let a run see Redis settle."""
    reward = dict(reward or {})
    result = await _soak_server(duration_s, concurrency, reward)
    memory = result["rss_samples"]
    early, late = _thirds(memory)
    rss = {"first_third": early, "last_third": late, "max": max(m for _, m in memory)}
    result["rss_mib"] = rss
    errors, rewards, elapsed = result["errors"], result["rewards"], result["duration_s"]
    checks = {
        "no errors": not errors,
        "nothing pending": not result["pending_after"],
        "every reward learned": result["learned"] == rewards and result["stream_backlog_after"] == 0,
        "clean exit": result["server_exit_code"] == 0,
        "memory bounded": rss["max"] <= max_rss_mib,
    }
    not_judged: dict[str, str] = {}
    if elapsed >= FLAT_AFTER_S:
        # Flat: the last third of the run within 10% of the first (allocator warm-up happens in the first).
        checks["memory flat"] = late <= 1.10 * early
    else:
        not_judged["memory flat"] = f"needs a run of at least {FLAT_AFTER_S:g} s; this one ran {elapsed:.0f} s"
    # Redis holds each decision's summary through its reward wait and the sweep's grace, and a marker of each
    # reward for the retention: once both have passed, what it holds stops growing at a steady rate.
    config = load_config(None, env=_reward_env(reward)).reward
    settle_s = max(config.wait_time_s + config.sweep_grace_s, config.retention_s)
    settled = [(t, m) for t, m in result["redis_used_mib"] if t >= settle_s]
    redis_early, redis_late = _thirds(settled) if settled else (0.0, 0.0)
    result["redis_used_mib_settled"] = {"settle_s": settle_s, "first_third": redis_early, "last_third": redis_late}
    if elapsed >= settle_s + FLAT_AFTER_S and len(settled) >= 6:
        checks["Redis memory flat"] = redis_late <= 1.10 * redis_early
    else:
        not_judged["Redis memory flat"] = (
            f"needs a run of at least {settle_s + FLAT_AFTER_S:g} s (the reward wait, its grace and the retention, "
            f"then {FLAT_AFTER_S:g} s); this one ran {elapsed:.0f} s"
        )
    result["checks"], result["not_judged"] = checks, not_judged
    print(
        f"soak: {elapsed:.0f} s at concurrency {concurrency}: {result['routes']} Route and {rewards} Reward calls "
        f"({rewards / elapsed:.1f} pairs/s), errors {errors or 'none'}, pending after {result['pending_after']}, "
        f"learned {result['learned']}, RSS of the server and its child processes {early:.0f} -> {late:.0f} MiB "
        f"(max {rss['max']:.0f})"
    )
    print("  RSS by process, mean of the first third -> the last third (MiB):")
    for name, samples in result["rss_by_process"].items():
        first, last = _thirds(samples)
        print(f"    {name}: {first:.0f} -> {last:.0f} ({100 * (last - first) / first:+.0f}%)")
    if settled:
        print(
            f"  Redis used_memory after {settle_s:g} s (the reward wait, its grace and the retention): "
            f"{redis_early:.1f} -> {redis_late:.1f} MiB, mean of the first third -> the last third"
        )
    for name, ok in checks.items():
        print(
            f"  {'ok  ' if ok else 'FAIL'} {name}"
            + (f" (max {rss['max']:.0f} <= {max_rss_mib:g} MiB)" if name == "memory bounded" else "")
        )
    for name, why in not_judged.items():
        print(f"  n/a  {name}: {why}")
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
    return result
