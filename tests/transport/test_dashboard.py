"""The dashboard's JSON endpoints and /metrics, after real traffic through the gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers import Routers, make_config, until

from bandit_router.embedding.model import Embedder
from bandit_router.observability import views
from bandit_router.runtime.process import RouterProcess
from bandit_router.serving.router import RouterService
from bandit_router.transport.dashboard.web import ENDPOINTS, Dashboard, build_app
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc

ROUNDS = 80
OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


async def traffic(stub: router_pb2_grpc.RouterStub, server: RouterProcess) -> list[pb.RewardResponse]:
    replies = []
    for i in range(ROUNDS):
        task = "math" if i % 2 else "poetry"
        decision = await stub.Route(pb.RouteRequest(query=f"Question {i}: {task} please", task=task))
        quality = 0.9 if decision.model.startswith("gemma") else 0.4
        replies.append(await stub.Reward(pb.RewardRequest(decision_id=decision.decision_id, quality=quality)))
    assert server.service.learner is not None
    await server.service.learner.wait_learned(ROUNDS, timeout=30)
    return replies


async def get(session: aiohttp.ClientSession, server: RouterProcess, path: str) -> Any:
    assert server.dashboard is not None
    async with session.get(server.dashboard.url.rstrip("/") + path) as response:
        assert response.status == 200, await response.text()
        return await response.json() if path.startswith("/api") else await response.text()


async def test_every_endpoint_reports_the_traffic(server: RouterProcess, stub: router_pb2_grpc.RouterStub) -> None:
    replies = await traffic(stub, server)
    rewards = [r.reward for r in replies]
    async with aiohttp.ClientSession() as session:
        summary = await get(session, server, "/api/summary")
        assert summary["models"] == [m.id for m in server.service.list_models()]
        assert summary["events_learned"] == ROUNDS and summary["tasks"] == ["math", "poetry"]
        assert summary["gate_promotions"] >= 1 and set(summary["endpoints"]) >= {"/api/drift", "/api/ope"}

        shares = await get(session, server, "/api/shares")
        assert sum(shares["decisions"]) == ROUNDS
        for i, n in enumerate(shares["decisions"]):
            bucket = [s[i] for s in shares["share"].values()]
            # A bucket with decisions adds up to 1; one without is a gap (null), not a zero.
            assert sum(bucket) == pytest.approx(1.0) if n else bucket == [None] * len(bucket)
        math_only = await get(session, server, "/api/shares?task=math")
        assert sum(math_only["decisions"]) == ROUNDS // 2

        view = await get(session, server, "/api/rewards")
        assert sum(view["rewards"]) == ROUNDS
        energy = sum(x or 0.0 for v in view["energy_joules_by_source"].values() for x in v)
        assert energy == pytest.approx(sum(r.energy_joules for r in replies))
        # A CPU host measures nothing: no bar in any bucket.
        assert view["energy_joules_by_source"]["measured"] == [None] * len(view["t"])

        drift = await get(session, server, "/api/drift")
        assert drift["probes"] == 64 and drift["t"], drift
        assert all(0 <= v <= 1 for v in drift["tv_first"] if v is not None)
        for masses in zip(*drift["model_mass"].values(), strict=True):
            assert sum(masses) == pytest.approx(1.0)

        exploration = await get(session, server, "/api/exploration")
        values = [v for v in exploration["mean_entropy"] if v is not None]
        assert values and all(0 <= v <= math.log(len(summary["models"])) + 1e-9 for v in values)

        ope = await get(session, server, "/api/ope")
        assert ope["n"] == ROUNDS
        # On-policy, the live policy's IPS is the mean logged reward.
        assert ope["policies"]["live policy"]["ips"]["value"] == pytest.approx(sum(rewards) / ROUNDS)

        # Every tenant online, no apprentice traffic: one row, the default tenant's, with nothing estimated.
        (row,) = (await get(session, server, "/api/rollout"))["tenants"]
        assert row["tenant"] == "" and row["configured"] == row["served"] == "online"
        assert row["n"] == 0 and row["policy"] is None and row["lower"] is None and row["promoted_at"] == 0

        health = await get(session, server, "/api/health")
        assert health["pending"] == 0 and health["rewards"] == ROUNDS and health["learner_lag_events"] >= 0

        metrics = await get(session, server, "/metrics")
        decided = re.findall(r'^bandit_router_decisions_total\{model="[^"]+"\} (\S+)$', metrics, flags=re.M)
        assert sum(float(v) for v in decided) == ROUNDS
        assert re.search(rf"^bandit_router_route_seconds_count {ROUNDS}\.0$", metrics, flags=re.M)
        assert "bandit_router_learner_lag_events" in metrics and "bandit_router_policy_drift_tv" in metrics

        assert server.dashboard is not None
        async with session.get(server.dashboard.url + "api/rewards?window=-3") as response:
            assert response.status == 400
            assert "window must be a number of seconds >= 0 (0: everything), got '-3'" in await response.text()
        page = await get(session, server, "/")
        assert '<script src="/static/vendor/chart.umd.min.js">' in page
        script = await get(session, server, "/static/vendor/chart.umd.min.js")
        assert "Chart.js v4" in script[:200]


async def test_grafana_board_queries_only_metrics_the_router_exports(
    server: RouterProcess, stub: router_pb2_grpc.RouterStub
) -> None:
    board = json.loads((Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "bandit-router.json").read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 8
    queried = {m for p in board["panels"] for t in p["targets"] for m in re.findall(r"bandit_router_\w+", t["expr"])}
    decision = await stub.Route(pb.RouteRequest(query="What is 2 + 2?"))
    await stub.Reward(pb.RewardRequest(decision_id=decision.decision_id, quality=1.0))
    # The backend series appear once the gateway called a backend (tests/transport/test_backend_health.py makes
    # real calls); recorded here as the gateway records them.
    upstreams = server.service.upstreams
    upstreams.answered("m", 12.0, 4.0)
    upstreams.breakers.trip("m", "a test")
    async with aiohttp.ClientSession() as session:
        metrics = await get(session, server, "/metrics")
    exported = set(re.findall(r"^(bandit_router_\w+?)(?:\{| )", metrics, flags=re.M))
    assert queried <= exported, sorted(queried - exported)


async def test_idle_connections_are_closed_and_capped_while_the_dashboard_serves(
    tmp_path: Path, redis_url: str, embedder: Embedder, routers: Routers
) -> None:
    config = make_config(
        tmp_path, redis_url, dashboard={"listen": "127.0.0.1:0", "max_connections": 8, "header_timeout_s": 0.5}
    )
    service = await routers(config)
    dashboard = Dashboard(service, config.dashboard.listen)
    await dashboard.start()
    try:
        port = dashboard.site.port
        # Half-open clients that never finish a request head, more than the cap.
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(12)]
        for _, writer in idle[:4]:
            writer.write(b"GET /api/summary HTTP/1.1\r\nHost: x\r\n")  # no blank line: the head never ends
        # Beyond the cap they are refused; the rest are closed at their head's deadline.
        for reader, _ in idle:
            with contextlib.suppress(ConnectionResetError):  # closed with a reset: the same for the client
                assert await asyncio.wait_for(reader.read(), timeout=30) == b""
        connections = dashboard.site.connections
        assert connections.refused >= 4 and connections.timed_out >= 1, vars(connections)
        await until(lambda: not connections.open, 30, "every connection to be closed")
        # Nothing held: a real request is answered.
        async with aiohttp.ClientSession() as session, session.get(dashboard.url + "api/summary") as response:
            assert response.status == 200
        for _, writer in idle:
            writer.close()
    finally:
        await dashboard.stop()
        await service.close()


async def test_a_stuck_dashboard_view_does_not_hold_up_routing(
    server: RouterProcess, stub: router_pb2_grpc.RouterStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard runs on a thread and event loop of its own: a view stuck in computation holds its own
    loop only, and Route, Reward and the health check go on meanwhile."""
    stuck, released = threading.Event(), threading.Event()
    shares = views.shares

    def slow(*args: Any, **kwargs: Any) -> Any:
        stuck.set()
        released.wait(timeout=120)
        return shares(*args, **kwargs)

    monkeypatch.setattr(views, "shares", slow)
    async with aiohttp.ClientSession() as session:
        view = asyncio.ensure_future(get(session, server, "/api/shares"))
        try:
            await asyncio.to_thread(stuck.wait, 60)
            assert stuck.is_set()
            decision = await stub.Route(pb.RouteRequest(query="Routed while the dashboard is stuck"), timeout=60)
            await stub.Reward(pb.RewardRequest(decision_id=decision.decision_id, quality=1.0), timeout=60)
            # Answered while the view was still stuck: the two do not share a loop.
            assert not released.is_set() and not view.done()
        finally:
            released.set()
        assert sum((await view)["decisions"]) >= 1


def test_every_json_endpoint_is_listed_and_documented(service: RouterService) -> None:
    routes = {r.resource.canonical for r in build_app(service).router.routes() if r.resource is not None}
    api = {path for path in routes if path.startswith("/api/")}
    assert api == set(ENDPOINTS), api ^ set(ENDPOINTS)
    documented = set(re.findall(r"^\| `(/api/[a-z]+)` \|", OPERATIONS.read_text(), flags=re.M))
    assert documented == set(ENDPOINTS), documented ^ set(ENDPOINTS)
