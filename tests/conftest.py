"""Shared fixtures: one real embedded Redis and one embedding model per session; a fresh service per test."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bandit_router.config import Config, load_config
from bandit_router.embedding import Embedder
from bandit_router.redis_server import EmbeddedRedis
from bandit_router.server import Server
from bandit_router.service import RouterService
from bandit_router.v1 import router_pb2_grpc

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    # The configured model (BANDIT_ROUTER_EMBEDDING_MODEL may name another local one), on the CPU.
    return Embedder(dataclasses.replace(load_config().embedding, device="cpu"))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()


def make_config(data_dir: Path, redis_url: str = "", **sections: Any) -> Config:
    """The shipped defaults, pointed at a test's own data directory and key prefix."""
    base = load_config(env={}).replace(
        server={"data_dir": str(data_dir), "listen": "127.0.0.1:0", "grace_s": 1.0},
        redis={"url": redis_url, "key_prefix": f"test{next(_prefixes)}"},
        embedding={"device": "cpu"},
        policy={"snapshot_interval_s": 0.05, "snapshot_every_events": 32},
        dashboard={"listen": "127.0.0.1:0"},
    )
    return base.replace(**sections) if sections else base


@pytest.fixture
def config(tmp_path: Path, redis_url: str) -> Config:
    return make_config(tmp_path, redis_url)


@pytest.fixture
async def service(config: Config, embedder: Embedder) -> AsyncIterator[RouterService]:
    svc = await RouterService.open(config, embedder=embedder)
    yield svc
    await svc.close()


@pytest.fixture
async def server(service: RouterService) -> AsyncIterator[Server]:
    srv = Server(service, "127.0.0.1:0")
    await srv.start()
    yield srv
    await srv.grpc.stop(0)


@pytest.fixture
async def stub(server: Server) -> AsyncIterator[router_pb2_grpc.RouterStub]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield router_pb2_grpc.RouterStub(channel)
