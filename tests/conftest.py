"""Shared fixtures: one real embedded Redis and one embedding model per session; a fresh service per test."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from helpers import Routers, make_config

from bandit_router.config import Config, load_config
from bandit_router.embedding.backends import load_embedder
from bandit_router.embedding.model import Embedder, TorchEmbedder
from bandit_router.runtime.process import RouterProcess
from bandit_router.runtime.root import open_router
from bandit_router.serving.router import RouterService
from bandit_router.store.embedded import EmbeddedRedis
from bandit_router.v1 import router_pb2_grpc


def _stacks() -> str:
    """Where every thread is, and every asyncio task of the loop running on this thread."""
    out = io.StringIO()
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        out.write(f"--- thread {names.get(ident, ident)}\n{''.join(traceback.format_stack(frame, limit=20))}")
    loop = asyncio._get_running_loop()
    for task in asyncio.all_tasks(loop) if loop is not None else ():
        out.write(f"--- task {task.get_name()}\n")
        task.print_stack(file=out)
    return out.getvalue()


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """pytest-timeout's signal method, and the failure says where each thread and asyncio task stood.

    An async test that hangs waits in the event loop's select, where the main thread's traceback says
    nothing; the task stacks say which await never returned. CI once hung for its whole 90 minutes
    without a word; a hang now fails one test, with this report, and the run goes on."""
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None  # the plugin's own timer

    def on_timeout(signum: int, frame: FrameType | None) -> None:
        pytest.fail(f"Timeout > {settings.timeout} s; where everything stood:\n{_stacks()}", pytrace=False)

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel  # type: ignore[attr-defined]
    signal.signal(signal.SIGALRM, on_timeout)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    return True


DEFAULT_PORTS = (8000, 8080, 50051)  # http.listen, dashboard.listen, server.listen


@pytest.fixture(scope="session", autouse=True)
def default_ports_taken() -> Iterator[None]:
    """Holds the default ports for the whole run, as another process on a shared CI machine may: a test that
    binds one (instead of a free port) fails here every time, not only on the day the port is taken. A port
    already taken by something else serves the same purpose."""
    held = []
    for port in DEFAULT_PORTS:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
            held.append(s)
        except OSError:
            s.close()  # taken already
    yield
    for s in held:
        s.close()


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    # The configured model (BANDIT_ROUTER_EMBEDDING_MODEL may name another local one), on the CPU.
    return load_embedder(dataclasses.replace(load_config().embedding, device="cpu"))


@pytest.fixture(scope="session")
def torch_embedder(embedder: Embedder) -> TorchEmbedder:
    # The reference backend, whatever embedding.backend the configuration names.
    if isinstance(embedder, TorchEmbedder):
        return embedder
    return TorchEmbedder(dataclasses.replace(load_config().embedding, backend="torch", device="cpu"))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A redis-server of the test's own, for the tests that pause, stop or kill it."""
    redis = EmbeddedRedis(tmp_path / "redis")
    await asyncio.to_thread(redis.start)
    yield redis
    await asyncio.to_thread(redis.stop)


@pytest.fixture
def config(tmp_path: Path, redis_url: str) -> Config:
    return make_config(tmp_path, redis_url)


@pytest.fixture
async def routers(embedder: Embedder) -> AsyncIterator[Routers]:
    """Opens routers on configurations of a test's own (``await routers(config)``, or with another embedder,
    clock or id generator); every one still open when the test ends is closed, whatever the test did."""
    opened: list[RouterService] = []

    async def open_one(config: Config, **kwargs: Any) -> RouterService:
        kwargs.setdefault("embedder", embedder)
        service = await open_router(config, **kwargs)
        opened.append(service)
        return service

    yield open_one
    for service in reversed(opened):
        await service.close()


@pytest.fixture
async def service(config: Config, embedder: Embedder) -> AsyncIterator[RouterService]:
    svc = await open_router(config, embedder=embedder)
    yield svc
    await svc.close()


@pytest.fixture
async def server(service: RouterService) -> AsyncIterator[RouterProcess]:
    srv = RouterProcess(service, "127.0.0.1:0")
    await srv.start()
    yield srv
    await srv.stop(0)


@pytest.fixture
async def stub(server: RouterProcess) -> AsyncIterator[router_pb2_grpc.RouterStub]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield router_pb2_grpc.RouterStub(channel)
