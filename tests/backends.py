"""A user's own OpenAI-compatible backends for the gateway's tests: one model per server, as a vLLM or llama.cpp
server runs (``GET /v1/models`` lists it, chat completions answered whole or streamed), written apart from the
project's scripted bench backend so the gateway is also tried against a server it was not built beside. Each can
fail, hang, be stopped and come back on the same port."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from helpers import make_config

from bandit_router.config import Config
from bandit_router.config.catalog import ModelSpec
from bandit_router.embedding.model import Embedder
from bandit_router.runtime.process import RouterProcess
from bandit_router.runtime.root import open_router


@dataclasses.dataclass
class UserBackend:
    """Serves ``model`` on 127.0.0.1: answers ``reply`` after ``delay_s`` (or ``status`` as an error, or never while
    ``hang``)."""

    model: str
    reply: str = "An answer."
    status: int = 200
    hang: bool = False
    delay_s: float = 0.0
    port: int = 0
    calls: int = 0
    runner: web.AppRunner | None = None
    # The headers of each chat request received.
    headers: list[dict[str, str]] = dataclasses.field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> UserBackend:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        if not self.port:
            server = site._server
            assert server is not None and server.sockets  # type: ignore[attr-defined]
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        self.headers.append(dict(request.headers))
        body = await request.json()
        if body.get("model") != self.model:
            return web.json_response({"error": {"message": f"model {body.get('model')!r} not served"}}, status=404)
        while self.hang:
            await asyncio.sleep(0.05)
        await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return web.json_response({"error": {"message": "backend trouble", "code": self.status}}, status=self.status)
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": self.model}
        usage = {"prompt_tokens": 10, "completion_tokens": len(self.reply.split()), "total_tokens": 0}
        if not body.get("stream"):
            message = {"role": "assistant", "content": self.reply}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return web.json_response({**base, "object": "chat.completion", "choices": [choice], "usage": usage})
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        for word in self.reply.split(" "):
            choice = {"index": 0, "delta": {"content": word + " "}, "finish_reason": None}
            chunk = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            await out.write(f"data: {json.dumps(chunk)}\n\n".encode())
        if (body.get("stream_options") or {}).get("include_usage"):
            chunk = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            await out.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await out.write(b"data: [DONE]\n\n")
        return out


@contextlib.asynccontextmanager
async def user_backends(*models: str, **script: Any) -> AsyncIterator[list[UserBackend]]:
    """A started backend per model (each answering as ``script`` says: ``reply``, ``delay_s``, ...), all stopped
    afterwards, whatever the test did."""
    started: list[UserBackend] = []
    try:
        for model in models:
            started.append(await UserBackend(model, **script).start())
        yield started
    finally:
        for backend in started:
            await backend.stop()


def catalog_of(*backends: UserBackend, **keys: Any) -> tuple[ModelSpec, ...]:
    """A user's own catalog: each backend's model (at a small model's price and energy), with ``keys`` on each."""
    return tuple(
        ModelSpec(
            b.model,
            0.1 * (i + 1),
            0.2 * (i + 1),
            parameters_b=7.0,
            energy_j_per_output_token=0.5,
            energy_j_per_input_token=0.05,
            base_url=b.url,
            **keys,
        )
        for i, b in enumerate(backends)
    )


@dataclasses.dataclass
class Served:
    """A router serving the gateway; ``url`` ends with a slash (``url + "v1"`` is the OpenAI base URL)."""

    url: str
    process: RouterProcess

    @property
    def service(self) -> Any:
        return self.process.service


@contextlib.asynccontextmanager
async def gateway_before(
    tmp_path: Path, redis_url: str, embedder: Embedder, models: tuple[ModelSpec, ...], **sections: Any
) -> AsyncIterator[Served]:
    """A router whose catalog is exactly ``models``, serving the gateway in front of their backends."""
    config: Config = make_config(tmp_path, redis_url, **sections).replace(models=models)
    service = await open_router(config, embedder=embedder)
    process = RouterProcess(service, "127.0.0.1:0")
    try:
        await process.start()
        assert process.http is not None
        yield Served(process.http.url, process)
    finally:
        await process.stop(0)
