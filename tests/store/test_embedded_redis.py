"""The embedded Redis is supervised: restarted when it dies (health NOT_SERVING meanwhile, nothing pending
lost), never orphaned by a router killed with -9, never two on one data directory; and every stop ends in
time, even with Redis hanging."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import Routers, free_port, make_config, until, wait_serving
from routerprocess import start

from bandit_router.domain.requests import RewardInput, RouteInput
from bandit_router.embedding.model import Embedder
from bandit_router.runtime.process import RouterProcess
from bandit_router.serving.router import RouterService
from bandit_router.store.embedded import EmbeddedRedis, EmbeddedRedisError
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited: only its entry in the process table is left.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def in_redis_call(task: asyncio.Task[Any]) -> bool:
    """Whether ``task`` is suspended inside redis-py: its chain of awaits reaches a frame of the redis package."""
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None and f"{os.sep}redis{os.sep}" in frame.f_code.co_filename:
            return True
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return False


def test_a_second_server_on_one_data_directory_is_refused(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path / "redis")
    first.start()
    try:
        second = EmbeddedRedis(tmp_path / "redis", start_timeout_s=0.3)
        with pytest.raises(EmbeddedRedisError, match=rf"another redis-server \(pid {first.pid}\) serves"):
            second.start()
        assert first.alive()
    finally:
        first.stop()
    # Stopped, it lets the next one in.
    third = EmbeddedRedis(tmp_path / "redis")
    third.start()
    third.stop()


async def test_a_killed_embedded_redis_is_restarted_and_health_says_so_meanwhile(
    tmp_path: Path, embedder: Embedder, routers: Routers
) -> None:
    service = await routers(make_config(tmp_path))
    server = RouterProcess(service, "127.0.0.1:0")
    await server.start()
    statuses: list[int] = []
    try:
        assert service._embedded is not None
        pending = await service.route(RouteInput(query="What is the capital of France?"))
        async with grpc.aio.insecure_channel(server.address) as channel:
            stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))

            async def watch() -> None:
                async for reply in stream:
                    statuses.append(reply.status)

            watcher = asyncio.create_task(watch())
            await until(lambda: statuses, 30, "the first health status")
            old = service._embedded.pid
            assert old is not None
            os.kill(old, signal.SIGKILL)
            await until(lambda: health_pb2.HealthCheckResponse.NOT_SERVING in statuses, 30, "NOT_SERVING")
            await until(lambda: statuses[-1] == health_pb2.HealthCheckResponse.SERVING, 60, "SERVING again")
            assert not running(old)  # reaped, not a zombie
            assert service._embedded.pid != old and service._embedded.alive()
            # The decision made before the kill is still pending (the append-only file), and rewardable.
            stub = router_pb2_grpc.RouterStub(channel)
            for _ in range(100):
                try:
                    await stub.Reward(pb.RewardRequest(decision_id=pending.decision_id, quality=1.0))
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                    assert "/tmp/" not in (exc.details() or "")  # no socket path leaks to the caller
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("Reward still refused after the embedded Redis came back")
            assert service.learner is not None
            await service.learner.wait_learned(1, timeout=60)
            stream.cancel()
            watcher.cancel()
    finally:
        await server.stop(1.0)
    assert statuses[0] == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.timeout(1500)  # two router starts, each allowed helpers.START_TIMEOUT_S
async def test_kill_9_of_the_router_takes_its_embedded_redis_down_and_a_restart_serves(tmp_path: Path) -> None:
    target = f"127.0.0.1:{free_port()}"
    first = start(target, tmp_path, "", "orphan")
    try:
        await wait_serving(first, target, tmp_path / "server.log")
        lock = tmp_path / "redis" / "redis.lock"
        pid = int(lock.read_text().strip())
        assert running(pid)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        await until(lambda: not running(pid), 30, f"redis-server {pid} to exit after its router died")
    finally:
        if first.poll() is None:
            first.kill()
    second = start(target, tmp_path, "", "orphan")
    try:
        await wait_serving(second, target, tmp_path / "server.log")
    finally:
        second.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait, 60) == 0
    assert not running(int((tmp_path / "redis" / "redis.lock").read_text().strip()))


async def test_a_second_router_on_a_taken_port_fails_at_once(service: RouterService, server: RouterProcess) -> None:
    with pytest.raises(OSError, match=r"server.listen: cannot bind .* \(is another router listening there\?\)"):
        RouterProcess(service, server.address)


async def test_close_ends_in_time_while_redis_hangs(tmp_path: Path, embedder: Embedder, routers: Routers) -> None:
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    try:
        config = make_config(
            tmp_path / "data", redis.url, server={"stop_timeout_s": 2.0}, reward={"expiry_sweep_s": 0.05}
        )
        service = await routers(config)
        decision = await service.route(RouteInput(query="Name a prime number."))
        await service.reward(RewardInput(decision_id=decision.decision_id, quality=1.0))
        admin = aioredis.Redis.from_url(redis.url)
        await admin.execute_command("CLIENT", "PAUSE", "60000", "ALL")
        await admin.aclose()
        # The learner and the expiry sweep each wait in a Redis call that will not answer for a minute.
        assert service.learner is not None and service.learner._task is not None
        loops = [service.learner._task, *(t for t in service._tasks if t.get_name() == "expiry-sweep")]
        assert len(loops) == 2
        await until(lambda: all(in_redis_call(t) for t in loops), 60, "both loops to wait on the paused Redis")
        # Ends on its own (the learner's 2 s, the client's 5 s socket timeout), long before the pause would;
        # the bound only turns a hang into a failure.
        await asyncio.wait_for(service.close(), timeout=45)
    finally:
        redis.stop()


async def test_serve_on_a_taken_port_stops_with_one_line_and_leaves_no_redis(
    tmp_path: Path, server: RouterProcess
) -> None:
    import subprocess
    import sys

    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "REDIS_URL": "",
        "BANDIT_ROUTER_SERVER_LISTEN": server.address,
        "BANDIT_ROUTER_SERVER_DATA_DIR": str(tmp_path),
        "BANDIT_ROUTER_EMBEDDING_DEVICE": "cpu",
        "BANDIT_ROUTER_EMBEDDING_PROCESSES": "0",
        "BANDIT_ROUTER_DASHBOARD_LISTEN": "",
        "BANDIT_ROUTER_HTTP_LISTEN": "127.0.0.1:0",  # the gRPC port is the taken one
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bandit_router", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: server.listen: cannot listen on {server.address}: the port is taken"), done.stderr
    assert "BANDIT_ROUTER_SERVER_LISTEN" in last
    # Said before anything started: no model loaded, no raw gRPC log line, no Redis left behind.
    assert "Traceback" not in done.stderr and "add_port" not in done.stderr
    lock = tmp_path / "redis" / "redis.lock"
    assert not lock.exists() or not running(int(lock.read_text().strip()))
