"""serve --workers 2: two routing processes on one port (SO_REUSEPORT) and the learner in the parent."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

from bandit_router.offline.load import free_port, wait_serving
from bandit_router.policy.vw import Snapshot
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc


@pytest.mark.parametrize("shared", [False, True], ids=["own-embedders", "shared-embedding-servers"])
async def test_two_workers_share_the_port_and_one_learner_learns_everything(
    tmp_path: Path, redis_url: str, shared: bool
) -> None:
    target, prefix = f"127.0.0.1:{free_port()}", f"workers{os.getpid()}-{shared}"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "REDIS_URL": redis_url,
        "BANDIT_ROUTER_REDIS_KEY_PREFIX": prefix,
        "BANDIT_ROUTER_SERVER_LISTEN": target,
        "BANDIT_ROUTER_SERVER_DATA_DIR": str(tmp_path),
        "BANDIT_ROUTER_EMBEDDING_DEVICE": "cpu",
        "BANDIT_ROUTER_EMBEDDING_SHARED": str(shared).lower(),
        "BANDIT_ROUTER_DASHBOARD_LISTEN": "127.0.0.1:0",
    }
    with open(tmp_path / "server.log", "wb") as log:
        parent = subprocess.Popen(
            [sys.executable, "-m", "bandit_router", "serve", "--workers", "2"], env=env, stdout=log, stderr=log
        )
    try:
        await wait_serving(target, timeout=120)
        children = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True, check=False)
        pids = children.stdout.split()
        # Two routing workers, and with `embedding.shared` the two embedding servers (embedding.processes)
        # they share; otherwise each worker starts its own.
        servers = [p for p in pids if "_worker_main" in Path(f"/proc/{p}/cmdline").read_text()]
        assert (len(pids), len(servers)) == ((4, 2) if shared else (2, 0)), children.stdout

        async def client(i: int) -> None:
            # A channel each: connections, not calls, are what SO_REUSEPORT spreads.
            async with grpc.aio.insecure_channel(target) as channel:
                stub = router_pb2_grpc.RouterStub(channel)
                for j in range(5):
                    d = await stub.Route(pb.RouteRequest(query=f"client {i} question {j}?"))
                    await stub.Reward(pb.RewardRequest(decision_id=d.decision_id, quality=0.5))

        await asyncio.gather(*(client(i) for i in range(8)))
    finally:
        parent.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(parent.wait, 90)
    assert code == 0, (tmp_path / "server.log").read_text()[-3000:]
    client_ = aioredis.Redis.from_url(redis_url)
    try:
        snapshot = Snapshot.decode(await client_.get(f"{prefix}:snapshot"))
    finally:
        await client_.aclose()
    assert snapshot.learned == 40
