"""serve --workers 2: two routing processes on one port (SO_REUSEPORT) and the learner in the parent."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
import redis.asyncio as aioredis
from helpers import START_TIMEOUT_S, free_port, wait_serving

from bandit_router.policy.vw import Snapshot
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc

# Sixteen connections, spread by the kernel's hash: all on one worker by chance once in 2**15 runs.
CLIENTS, CALLS = 16, 3


async def until_up(http: httpx.AsyncClient, url: str, parent: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        assert parent.poll() is None, log.read_text()[-3000:]
        with contextlib.suppress(httpx.HTTPError):
            if (await http.get(url)).status_code == 200:
                return
        assert time.monotonic() < deadline, f"{url} did not answer within {START_TIMEOUT_S} s"
        await asyncio.sleep(0.2)


def free_pair() -> int:
    """A port p with p + 1 free as well."""
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def routes(metrics: httpx.Response) -> float:
    """The Routes a worker answered, from its own /metrics."""
    metrics.raise_for_status()
    counts = re.findall(r"^bandit_router_route_seconds_count(?:\{[^}]*\})? (\S+)$", metrics.text, flags=re.M)
    assert len(counts) == 1, metrics.text[:2000]
    return float(counts[0])


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("shared", [False, True], ids=["own-embedders", "shared-embedding-servers"])
async def test_two_workers_share_the_port_and_one_learner_learns_everything(
    tmp_path: Path, redis_url: str, shared: bool
) -> None:
    target, prefix = f"127.0.0.1:{free_port()}", f"workers{os.getpid()}-{shared}"
    # Worker i serves its dashboard (and /metrics) on this port + i; its HTTP API on a free port of its own.
    dashboard = free_pair()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "REDIS_URL": redis_url,
        "BANDIT_ROUTER_REDIS_KEY_PREFIX": prefix,
        "BANDIT_ROUTER_SERVER_LISTEN": target,
        "BANDIT_ROUTER_SERVER_DATA_DIR": str(tmp_path),
        "BANDIT_ROUTER_EMBEDDING_DEVICE": "cpu",
        "BANDIT_ROUTER_EMBEDDING_SHARED": str(shared).lower(),
        # The torch backend, whose worker processes the parent shares with embedding.shared (the static default
        # runs in each routing process).
        "BANDIT_ROUTER_EMBEDDING_BACKEND": "torch",
        "BANDIT_ROUTER_DASHBOARD_LISTEN": f"127.0.0.1:{dashboard}",
        "BANDIT_ROUTER_HTTP_LISTEN": "127.0.0.1:0",
    }
    with open(tmp_path / "server.log", "wb") as log:
        parent = subprocess.Popen(
            [sys.executable, "-m", "bandit_router", "serve", "--workers", "2"], env=env, stdout=log, stderr=log
        )
    try:
        await wait_serving(parent, target, tmp_path / "server.log")
        # The port answers once one worker serves; the other may still be loading its model. Each worker's
        # dashboard comes up with its gRPC server.
        async with httpx.AsyncClient(timeout=5) as http:
            for i in range(2):
                await until_up(http, f"http://127.0.0.1:{dashboard + i}/metrics", parent, tmp_path / "server.log")
        children = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True, check=False)
        pids = children.stdout.split()
        # Two routing workers, and with `embedding.shared` the two embedding servers (embedding.processes)
        # they share; otherwise each worker starts its own.
        servers = [p for p in pids if "_worker_main" in Path(f"/proc/{p}/cmdline").read_text()]
        assert (len(pids), len(servers)) == ((4, 2) if shared else (2, 0)), children.stdout

        async def client(i: int) -> None:
            # A connection each: connections, not calls, are what SO_REUSEPORT spreads, and channels to one
            # target share one connection unless each has its own subchannel pool.
            async with grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                stub = router_pb2_grpc.RouterStub(channel)
                for j in range(CALLS):
                    d = await stub.Route(pb.RouteRequest(query=f"client {i} question {j}?"))
                    await stub.Reward(pb.RewardRequest(decision_id=d.decision_id, quality=0.5))

        await asyncio.gather(*(client(i) for i in range(CLIENTS)))
        # Both workers served: each counted Routes of its own, and together all of them.
        async with httpx.AsyncClient(timeout=30) as http:
            routed = [routes(await http.get(f"http://127.0.0.1:{dashboard + i}/metrics")) for i in range(2)]
        assert all(n > 0 for n in routed) and sum(routed) == CLIENTS * CALLS, routed
    finally:
        parent.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(parent.wait, 90)
    assert code == 0, (tmp_path / "server.log").read_text()[-3000:]
    client_ = aioredis.Redis.from_url(redis_url)
    try:
        snapshot = Snapshot.decode(await client_.get(f"{prefix}:snapshot"))
    finally:
        await client_.aclose()
    assert snapshot.learned == CLIENTS * CALLS
