"""A router in its own process, and traffic against it, for the crash and shutdown tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import grpc
from streams import questions

from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc


def start(target: str, data_dir: Path, redis_url: str, prefix: str, **settings: str) -> subprocess.Popen[bytes]:
    """``settings`` are more BANDIT_ROUTER_* variables, or replace these. It logs to ``data_dir/server.log``
    (``helpers.wait_serving`` reads it to say where a slow start was)."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "REDIS_URL": redis_url,
        "BANDIT_ROUTER_REDIS_KEY_PREFIX": prefix,
        "BANDIT_ROUTER_SERVER_LISTEN": target,
        "BANDIT_ROUTER_SERVER_DATA_DIR": str(data_dir),
        "BANDIT_ROUTER_EMBEDDING_DEVICE": "cpu",
        "BANDIT_ROUTER_DASHBOARD_LISTEN": "",
        # Never the default port (8000): another process may hold it.
        "BANDIT_ROUTER_HTTP_LISTEN": "127.0.0.1:0",
        # Snapshots often, so the kill lands between snapshots with events learned but not yet acknowledged.
        "BANDIT_ROUTER_POLICY_SNAPSHOT_EVERY_EVENTS": "16",
        "BANDIT_ROUTER_POLICY_SNAPSHOT_INTERVAL_S": "0.2",
        **settings,
    }
    log = open(data_dir / "server.log", "ab")  # noqa: SIM115 - the child keeps it open
    return subprocess.Popen([sys.executable, "-m", "bandit_router", "serve"], env=env, stdout=log, stderr=log)


async def load(target: str, acknowledged: list[str], stop: asyncio.Event, workers: int = 16) -> None:
    """Route then Reward in a loop until told to stop or the router dies; keeps the acknowledged rewards."""
    texts = questions(10_000, seed=7)

    async def worker(offset: int) -> None:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = router_pb2_grpc.RouterStub(channel)
            for text in texts[offset::workers]:
                if stop.is_set():
                    return
                try:
                    decision = await stub.Route(pb.RouteRequest(query=text), timeout=10)
                    quality = 1.0 if decision.model.startswith("gemma") else 0.2
                    await stub.Reward(pb.RewardRequest(decision_id=decision.decision_id, quality=quality), timeout=10)
                except grpc.aio.AioRpcError:
                    return  # the router is gone
                acknowledged.append(decision.decision_id)

    await asyncio.gather(*(worker(i) for i in range(workers)))
