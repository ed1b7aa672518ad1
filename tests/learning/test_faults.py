"""Fault injection against the learner: a failing disk, a paused Redis and a killed Redis under load. Whatever
fails, every Reward that returned OK is learned exactly once and logged once, and nothing is acknowledged or
trimmed from the stream before a snapshot holding it is on disk."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import signal
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from helpers import Routers, decision_logs, make_config, until

from bandit_router.domain.requests import RewardInput, RouteInput
from bandit_router.embedding.model import Embedder
from bandit_router.errors import Unavailable
from bandit_router.learning.decision_log import DecisionLog, read_log
from bandit_router.serving.router import RouterService
from bandit_router.store.embedded import EmbeddedRedis
from bandit_router.store.snapshots import SnapshotFiles


async def reward(service: RouterService, i: int) -> str | None:
    """The decision id of one routed and rewarded query, or None where the Reward was not acknowledged."""
    try:
        decision = await service.route(RouteInput(query=f"What is {i} times {i + 1}?"))
        await service.reward(RewardInput(decision_id=decision.decision_id, quality=(i % 5) / 4))
    except Unavailable:
        return None
    return decision.decision_id


async def load(service: RouterService, acknowledged: list[str | None], count: int) -> None:
    """Route and Reward ``count`` queries one after another, keeping each acknowledged decision id (or None)."""
    for i in range(count):
        acknowledged.append(await reward(service, i))


def assert_learned_once(service: RouterService, acknowledged: list[str | None]) -> None:
    """Every acknowledged reward is in the decision log, none twice, and the policy learned exactly those logged
    (a Reward that timed out may still have been appended once Redis came back: it may be learned too)."""
    log_ids = logged(service)
    assert len(log_ids) == len(set(log_ids))
    assert {a for a in acknowledged if a is not None} <= set(log_ids)
    assert service.learner is not None and service.learner.policy.learned == len(log_ids)


def logged(service: RouterService) -> list[str]:
    """Decision ids in the decision log as export reads it (repeats of a retried write dropped)."""
    return [event.decision_id for event in read_log(decision_logs(service.config.server.data_path))]


async def test_a_failing_disk_loses_no_acknowledged_reward(
    tmp_path: Path, redis_url: str, embedder: Embedder, monkeypatch: pytest.MonkeyPatch, routers: Routers
) -> None:
    # The snapshot folder and the decision log fail as a read-only or full disk does, for a while: as root a
    # chmod would not stop the writes, so the fault is injected where the files are written.
    failing = {"on": True, "snapshots": 0, "logs": 0}
    write, append = SnapshotFiles.write, DecisionLog.append

    def snapshot_write(files: SnapshotFiles, data: bytes, version: int) -> Path:
        if failing["on"]:
            failing["snapshots"] += 1
            raise OSError(errno.EROFS, "Read-only file system", str(files.directory))
        return write(files, data, version)

    def log_append(log: DecisionLog, name: str, lines: list[str]) -> None:
        if failing["on"] and failing["logs"] % 2 == 0:
            failing["logs"] += 1
            # Half a line reaches the file before the disk fills up.
            with open(log.directory / name, "a", encoding="utf-8") as f:
                f.write(lines[0][: len(lines[0]) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", name)
        failing["logs"] += 1
        append(log, name, lines)

    monkeypatch.setattr(SnapshotFiles, "write", snapshot_write)
    monkeypatch.setattr(DecisionLog, "append", log_append)
    config = make_config(tmp_path, redis_url, policy={"snapshot_interval_s": 0.05, "snapshot_every_events": 8})
    service = await routers(config)
    try:
        assert service.learner is not None
        acknowledged = [await reward(service, i) for i in range(60)]
        await until(lambda: failing["snapshots"] >= 3, 60, "three failed snapshots")
        assert service.learner.problem is not None and "Read-only file system" in service.learner.problem
        assert "Read-only" in (service.health_problem() or "")
        # Nothing was acknowledged, and the stream still holds every event.
        store = service.store
        assert await store.client.xlen(store.events_key) == 60
        failing["on"] = False
        acknowledged += [await reward(service, i) for i in range(60, 80)]
        await service.learner.wait_learned(80, timeout=60)
        assert service.learner.policy.learned == 80
        assert service.learner.problem is None
    finally:
        await service.close()
    assert sorted(logged(service)) == sorted(a for a in acknowledged if a is not None)
    # Snapshots and the decision log hold request metadata: readable by their owner only.
    data = service.config.server.data_path
    for path in [*(data / "snapshots").glob("*.snap"), *(data / "decisions").glob("*.jsonl")]:
        assert path.stat().st_mode & 0o077 == 0, path
    # A restart relearns nothing: every event is in the snapshot it loads.
    again = await routers(config)
    try:
        assert again.learner is not None and again.learner.policy.learned == 80
        assert again.learner.skipped == 0
    finally:
        await again.close()


async def test_a_redis_pause_under_load_loses_no_acknowledged_reward_and_learns_none_twice(
    tmp_path: Path, own_redis: EmbeddedRedis, embedder: Embedder, routers: Routers
) -> None:
    config = make_config(tmp_path / "data", own_redis.url, policy={"snapshot_every_events": 16})
    service = await routers(config)
    admin = aioredis.Redis.from_url(own_redis.url)
    acknowledged: list[str | None] = []
    try:
        assert service.learner is not None
        traffic = asyncio.create_task(load(service, acknowledged, 150))
        await until(lambda: len(acknowledged) >= 40, 60, "40 rewards")
        # Longer than the client's 5 s socket timeout: the learner's commands fail in the middle of its work.
        await admin.execute_command("CLIENT", "PAUSE", "6500", "ALL")
        await traffic
        learned_ids = [a for a in acknowledged if a is not None]
        await until(
            lambda: service.learner is not None and service.learner.published >= len(learned_ids), 120, "learning"
        )
    finally:
        await service.close()
        await admin.aclose()
    assert_learned_once(service, acknowledged)


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_kill_9_of_redis_at_a_random_point_under_load_loses_no_acknowledged_reward_and_learns_none_twice(
    tmp_path: Path, own_redis: EmbeddedRedis, embedder: Embedder, seed: int, routers: Routers
) -> None:
    # Where the kill lands (mid-batch, mid-snapshot, between the two) is drawn, seeded so a failure replays.
    kill_after = random.Random(seed).randint(5, 110)
    config = make_config(tmp_path / "data", own_redis.url, policy={"snapshot_every_events": 16})
    service = await routers(config)
    acknowledged: list[str | None] = []
    try:
        assert service.learner is not None
        traffic = asyncio.create_task(load(service, acknowledged, 150))
        await until(lambda: len(acknowledged) >= kill_after, 60, f"{kill_after} rewards")
        # Redis's append-only file is written before it answers, so what it acknowledged outlives its process.
        assert own_redis.pid is not None
        os.kill(own_redis.pid, signal.SIGKILL)
        await until(lambda: not own_redis.alive(), 30, "redis-server to die")
        await until(lambda: len(acknowledged) >= kill_after + 10, 60, "rewards refused while Redis is down")
        await asyncio.to_thread(own_redis.start)
        await traffic
        learned_ids = [a for a in acknowledged if a is not None]
        assert len(learned_ids) < len(acknowledged)  # some were refused meanwhile, as UNAVAILABLE
        await until(
            lambda: service.learner is not None and service.learner.published >= len(learned_ids), 120, "learning"
        )
    finally:
        await service.close()
    assert_learned_once(service, acknowledged)
