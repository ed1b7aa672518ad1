"""A held replay (``bandit-router demo --hold``) can be asked: it says where its gRPC and HTTP APIs listen, and both
answer while it holds."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from streams import FLAT, stream

from bandit_router.cli.replay import _announce
from bandit_router.config import Config
from bandit_router.embedding.model import Embedder
from bandit_router.offline.replay.run import replay
from bandit_router.offline.replay.settings import ReplaySettings
from bandit_router.runtime.process import RouterProcess


async def test_a_held_replay_names_its_ports_and_serves_the_http_api(
    config: Config, embedder: Embedder, capsys: pytest.CaptureFixture[str]
) -> None:
    started: list[RouterProcess] = []
    asked: dict[str, Any] = {}

    def on_start(server: RouterProcess) -> None:
        started.append(server)
        _announce(server)

    async def hold(result: dict[str, Any]) -> None:
        http = started[0].http
        assert http is not None
        async with (
            aiohttp.ClientSession() as session,
            session.post(http.url + "v1/route", json={"query": "What is 12 * 12?"}) as response,
        ):
            asked.update(status=response.status, body=await response.json())

    await replay(
        stream(40, 2, FLAT), config, ReplaySettings(seed=1), embedder, show_progress=False, on_start=on_start, hold=hold
    )
    assert asked["status"] == 200 and asked["body"]["model"]
    said = capsys.readouterr().err
    server = started[0]
    assert server.http is not None
    assert f"router: gRPC {server.address} (bandit-router route --target {server.address} ...)" in said
    assert f"HTTP {server.http.url}v1/" in said
