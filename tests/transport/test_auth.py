"""Bearer tokens and tenants on gRPC and the dashboard, and TLS on both."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import ManualClock, make_config

from bandit_router.config import Config, ConfigError
from bandit_router.embedding.model import Embedder
from bandit_router.runtime.process import RouterProcess
from bandit_router.runtime.root import open_router
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc

DATA = Path(__file__).resolve().parents[1] / "data"
A, B = "token-for-tenant-a-0123456789", "token-for-tenant-b-9876543210"
DASHBOARD = "dashboard-token-0123456789"


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


async def serve(config: Config, embedder: Embedder, **kwargs: Any) -> RouterProcess:
    service = await open_router(config, embedder=embedder, **kwargs)
    server = RouterProcess(service, "127.0.0.1:0")
    await server.start()
    return server


@pytest.fixture
async def tenants(tmp_path: Path, redis_url: str, embedder: Embedder) -> AsyncIterator[RouterProcess]:
    config = make_config(
        tmp_path,
        redis_url,
        auth={"tokens": (f"alpha:{A}", f"beta:{B}"), "dashboard_token": DASHBOARD, "admin_tenants": ("alpha",)},
    )
    server = await serve(config, embedder)
    yield server
    await server.stop(0)


async def test_calls_need_a_known_token_but_health_does_not(tenants: RouterProcess) -> None:
    async with grpc.aio.insecure_channel(tenants.address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        for metadata, why in ((None, "a bearer token is required"), (bearer("not-a-known-token-at-all"), "unknown")):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Route(pb.RouteRequest(query="hello"), metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert why in (caught.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetStats(pb.GetStatsRequest(), metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert (await stub.ListModels(pb.ListModelsRequest(), metadata=bearer(A))).models


async def test_only_admin_tenants_read_the_statistics_of_every_tenant(tenants: RouterProcess) -> None:
    async with grpc.aio.insecure_channel(tenants.address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        decision = await stub.Route(pb.RouteRequest(query="What is 3 + 4?"), metadata=bearer(B))
        await stub.Reward(
            pb.RewardRequest(decision_id=decision.decision_id, quality=1.0, latency_ms=123.0), metadata=bearer(B)
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetStats(pb.GetStatsRequest(), metadata=bearer(B))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "tenant 'beta' is not in auth.admin_tenants" in (caught.value.details() or "")
        assert (await stub.GetStats(pb.GetStatsRequest(), metadata=bearer(A))).policy_version


async def test_a_tenant_can_neither_reward_nor_replay_another_tenants_decision(tenants: RouterProcess) -> None:
    async with grpc.aio.insecure_channel(tenants.address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        mine = await stub.Route(pb.RouteRequest(query="What is 2 + 2?", request_id="req-1"), metadata=bearer(A))
        assert mine.decision_id == "alpha.req-1"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Reward(pb.RewardRequest(decision_id=mine.decision_id, quality=1.0), metadata=bearer(B))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert "is unknown" in (caught.value.details() or "")
        # The same request id is a different decision for the other tenant, not a replay of the first.
        theirs = await stub.Route(pb.RouteRequest(query="What is 2 + 2?", request_id="req-1"), metadata=bearer(B))
        assert theirs.decision_id == "beta.req-1" and not theirs.replayed
        again = await stub.Route(pb.RouteRequest(query="What is 2 + 2?", request_id="req-1"), metadata=bearer(A))
        assert again.replayed and again.decision_id == mine.decision_id
        # The owner's reward still counts: the refused one took nothing.
        await stub.Reward(pb.RewardRequest(decision_id=mine.decision_id, quality=1.0), metadata=bearer(A))
        await stub.Reward(pb.RewardRequest(decision_id=theirs.decision_id, quality=0.0), metadata=bearer(B))


async def test_the_dashboard_asks_for_its_token(tenants: RouterProcess) -> None:
    assert tenants.dashboard is not None
    url = tenants.dashboard.url
    # unsafe: keep cookies of an IP host (127.0.0.1), as browsers do.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        for path in ("", "api/summary", "metrics", "static/vendor/chart.umd.min.js"):
            async with session.get(url + path) as response:
                assert response.status == 401, path
                assert "a token is required" in await response.text()
        async with session.get(url + "api/summary", headers={"Authorization": f"Bearer {DASHBOARD}"}) as response:
            assert response.status == 200
        # The scheme is part of the header; a token in any script is refused with 401, not a 500.
        for header in (DASHBOARD, f"Bearer {DASHBOARD}é", "Bearer jeton-rené-ünïcode"):
            async with session.get(url + "api/summary", headers={"Authorization": header}) as response:
                assert response.status == 401, header
        async with session.get(url + "api/summary", params={"token": "ünïcode"}) as response:
            assert response.status == 401
        # A tenant that is no admin sees its own view, never the pooled metrics.
        async with session.get(url + "metrics", headers={"Authorization": f"Bearer {B}"}) as response:
            assert response.status == 403 and "admin" in await response.text()
        # A browser opens /?token=..., gets a cookie, and the page's own requests carry it.
        async with session.get(url + f"?token={DASHBOARD}") as response:
            assert response.status == 200 and "<canvas" in await response.text()
        async with session.get(url + "api/health") as response:
            assert response.status == 200


async def test_each_tenant_sees_its_own_traffic_on_the_dashboard(tenants: RouterProcess) -> None:
    """beta's token shows beta's decisions, rewards and tasks only, and none of the figures pooled over every
    tenant; the dashboard token and an admin tenant's (alpha's) show all of it."""
    assert tenants.dashboard is not None
    url = tenants.dashboard.url
    async with grpc.aio.insecure_channel(tenants.address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        for token, task, count in ((A, "alphatask", 5), (B, "betatask", 3)):
            for i in range(count):
                d = await stub.Route(pb.RouteRequest(query=f"question {i}", task=task), metadata=bearer(token))
                await stub.Reward(pb.RewardRequest(decision_id=d.decision_id, quality=0.5), metadata=bearer(token))
        await stub.Route(pb.RouteRequest(query="still pending", task="betatask"), metadata=bearer(B))

    async def view(token: str, path: str) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url + path, headers={"Authorization": f"Bearer {token}"}) as response,
        ):
            assert response.status == 200, (path, await response.text())
            body: dict[str, Any] = await response.json()
            return body

    beta = {p: await view(B, f"api/{p}?window=0") for p in ("summary", "shares", "rewards", "health", "ope", "drift")}
    assert beta["summary"]["viewer"] == "beta" and beta["summary"]["tasks"] == ["betatask"]
    assert beta["summary"]["events_learned"] is None and beta["summary"]["gate_promotions"] is None
    assert sum(beta["shares"]["decisions"]) == 4 and beta["shares"]["tasks"] == ["betatask"]
    assert sum(beta["rewards"]["rewards"]) == 3 and beta["ope"]["n"] == 3 and beta["ope"]["value"] == "reward"
    assert beta["health"]["pending"] == 1 and beta["health"]["learner_lag_events"] is None
    assert all("reason" not in g for g in beta["drift"]["gate"])
    for token in (DASHBOARD, A):
        pooled = {p: await view(token, f"api/{p}?window=0") for p in ("summary", "shares", "rewards", "ope")}
        # Pooled over two tenants, the estimates are of quality (0.5 for every decision here), not of reward.
        assert pooled["ope"]["n"] == 8 and pooled["ope"]["value"] == "quality"
        assert pooled["ope"]["policies"]["live policy"]["snips"]["value"] == pytest.approx(0.5)
        assert pooled["summary"]["viewer"] == "all tenants"
        assert pooled["summary"]["tasks"] == ["alphatask", "betatask"]
        assert sum(pooled["shares"]["decisions"]) == 9 and sum(pooled["rewards"]["rewards"]) == 8


async def test_tls_on_grpc_and_the_dashboard(tmp_path: Path, redis_url: str, embedder: Embedder) -> None:
    cert, key = DATA / "tls-cert.pem", DATA / "tls-key.pem"
    config = make_config(tmp_path, redis_url, server={"tls_cert_file": str(cert), "tls_key_file": str(key)})
    server = await serve(config, embedder)
    try:
        trusted = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        async with grpc.aio.secure_channel(server.address, trusted) as channel:
            decision = await router_pb2_grpc.RouterStub(channel).Route(pb.RouteRequest(query="Over TLS?"))
            assert decision.model
        # A plaintext client gets nowhere.
        async with grpc.aio.insecure_channel(server.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await router_pb2_grpc.RouterStub(channel).Route(pb.RouteRequest(query="hi"), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert server.dashboard is not None and server.dashboard.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.dashboard.url + "api/health", ssl=context) as response,
        ):
            assert response.status == 200
    finally:
        await server.stop(0)


@pytest.mark.parametrize(
    ("auth", "match"),
    [
        ({"tokens": ("alpha:short",)}, "auth.tokens entries must be TENANT:TOKEN"),
        ({"tokens": ("Alpha:token-for-tenant-a-0123456789",)}, "auth.tokens entries must be TENANT:TOKEN"),
        ({"tokens": (f"alpha:{A}", f"beta:{A}")}, "auth.tokens must not repeat a token"),
        ({"dashboard_token": "short"}, "auth.dashboard_token must be empty or 16\\+ characters"),
        ({"tokens": (f"alpha:{A}",), "admin_tenants": ("gamma",)}, "auth.admin_tenants must be tenants of auth.tokens"),
    ],
)
def test_bad_auth_settings_are_refused(tmp_path: Path, auth: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_config(tmp_path, auth=auth)


def test_tls_files_come_in_pairs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls_cert_file and tls_key_file must be given together"):
        make_config(tmp_path, server={"tls_cert_file": str(DATA / "tls-cert.pem")})


async def test_a_tenant_at_its_quota_of_waiting_decisions_is_resource_exhausted_and_others_are_not(
    tmp_path: Path, redis_url: str, embedder: Embedder
) -> None:
    config = make_config(
        tmp_path,
        redis_url,
        auth={"tokens": (f"alpha:{A}", f"beta:{B}")},
        limits={"max_pending_per_tenant": 3},
        reward={"wait_time_s": 60.0},
    )
    # The wait passes when the test moves the router's clock, however slow the machine.
    clock = ManualClock()
    server = await serve(config, embedder, clock=clock)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = router_pb2_grpc.RouterStub(channel)
            held = [
                await stub.Route(pb.RouteRequest(query=f"q{i}", request_id=f"r{i}"), metadata=bearer(A))
                for i in range(3)
            ]
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Route(pb.RouteRequest(query="one too many"), metadata=bearer(A))
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "tenant 'alpha' has 3 decisions waiting for a reward, limits.max_pending_per_tenant = 3" in (
                caught.value.details() or ""
            )
            # A retry of a decision already made is answered, quota or not; another tenant is not held back.
            again = await stub.Route(pb.RouteRequest(query="q0", request_id="r0"), metadata=bearer(A))
            assert again.replayed and again.decision_id == held[0].decision_id
            await stub.Route(pb.RouteRequest(query="beta's own"), metadata=bearer(B))
            # A reward frees a place at once.
            await stub.Reward(pb.RewardRequest(decision_id=held[0].decision_id, quality=1.0), metadata=bearer(A))
            await stub.Route(pb.RouteRequest(query="after a reward"), metadata=bearer(A))
            # Full again; a decision whose wait has passed frees its place too, before any sweep.
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Route(pb.RouteRequest(query="full again"), metadata=bearer(A))
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            clock.advance(60.1)
            await stub.Route(pb.RouteRequest(query="after expiry"), metadata=bearer(A))
    finally:
        await server.stop(0)
