"""gRPC across replicas: a client balancing calls round robin (as through a headless Service) reaches every
replica, and connections that age out (``server.max_connection_age_s``, so clients re-resolve and find replicas
added since) fail no call."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from helpers import Routers, make_config

from bandit_router.config import Config
from bandit_router.runtime.process import RouterProcess
from bandit_router.serving.router import RouterService
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc


@pytest.fixture
async def replicas(tmp_path: Path, redis_url: str, routers: Routers) -> AsyncIterator[list[RouterProcess]]:
    started: list[RouterProcess] = []
    base = make_config(tmp_path / "a", redis_url)
    for name in ("a", "b"):
        config: Config = base.replace(
            server={"data_dir": str(tmp_path / name), "learner": name == "a", "max_connection_age_s": 0.5}
        )
        process = RouterProcess(await routers(config), "127.0.0.1:0")
        await process.start()
        started.append(process)
    yield started
    for process in started:
        await process.stop(0)


def _decided(service: RouterService) -> float:
    registry = service.monitor.metrics.registry
    return sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "bandit_router_decisions"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def test_round_robin_over_the_replicas_reaches_each(replicas: list[RouterProcess]) -> None:
    # What a client of the headless Service does with dns:///bandit-router-headless:50051: every replica's
    # address, calls spread over them.
    target = "ipv4:" + ",".join(p.address for p in replicas)
    options = [("grpc.lb_policy_name", "round_robin")]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        for i in range(20):
            await stub.Route(pb.RouteRequest(query=f"question {i}?"), wait_for_ready=True)
    counts = [_decided(p.service) for p in replicas]
    assert sum(counts) == 20 and min(counts) >= 5, counts


def _client_ports(server_port: int) -> set[int]:
    """Local ports of the established TCP connections to ``server_port`` (Linux /proc; gRPC may use IPv6 sockets
    for IPv4 addresses)."""
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/self/net/{table}").read_text().splitlines()[1:]:
            local, remote, state = line.split()[1:4]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


async def test_connections_that_age_out_fail_no_call(replicas: list[RouterProcess]) -> None:
    """Each connection lasts 0.5 s: calls made until the client has had three connections all succeed (the
    server's GOAWAY lets in-flight calls finish, and the channel reconnects for the next)."""
    calls = 0
    port = int(replicas[0].address.rsplit(":", 1)[1])
    seen: set[int] = set()
    async with grpc.aio.insecure_channel(replicas[0].address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        deadline = time.monotonic() + 120
        while len(seen) < 3:
            assert time.monotonic() < deadline, f"the connection was not renewed: ports {seen} in {calls} calls"
            decision = await stub.Route(pb.RouteRequest(query=f"question {calls}?"), wait_for_ready=True)
            await stub.Reward(pb.RewardRequest(decision_id=decision.decision_id, quality=0.5))
            calls += 1
            seen |= _client_ports(port)
    assert _decided(replicas[0].service) == calls
