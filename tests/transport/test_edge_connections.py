"""The HTTP edge's connection limits, on raw sockets and the official client: a head timer that covers the head
only (a streamed answer longer than it is not cut), a body timeout, idle keep-alive connections closed, and at
the cap the longest-idle connection closed so that a new request is always served."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from helpers import http_address, make_config, served, until

from bandit_router.bench.backend import Script, ScriptedBackend
from bandit_router.embedding.model import Embedder
from bandit_router.runtime.process import RouterProcess

SMALL, LARGE = "llama-3.2-3b-instruct", "llama-3.3-70b-instruct"
# Twenty words, one chunk each, 0.15 s apart: a 3 s answer, three times the head timeout below.
ANSWER = " ".join(f"word{i}" for i in range(20))
HEAD_TIMEOUT_S = 1.0


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path, redis_url: str, embedder: Embedder, **http: Any) -> AsyncIterator[RouterProcess]:
    backend = ScriptedBackend(lambda model, prompt: Script(text=ANSWER, chunk_delay_s=0.15))
    url = await backend.start()
    base = make_config(tmp_path, redis_url, http={"header_timeout_s": HEAD_TIMEOUT_S, **http})
    models = tuple(dataclasses.replace(m, base_url=url) for m in base.models if m.id in (SMALL, LARGE))
    try:
        async with served(base.replace(models=models), embedder) as server:
            yield server
    finally:
        await backend.stop()


def head(path: str, length: int, method: str = "POST", keep_alive: bool = False) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: router", "Content-Type: application/json"]
    lines += [f"Content-Length: {length}"] if method == "POST" else []
    lines += [] if keep_alive else ["Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_a_streamed_answer_longer_than_the_head_timeout_is_not_cut_when_its_body_came_apart(
    tmp_path: Path, redis_url: str, embedder: Embedder
) -> None:
    """The head and the body written 50 ms apart, as the openai client's larger requests arrive: the body's bytes
    once re-armed the head timer, and the stream was cut one head timeout after them."""
    async with gateway(tmp_path, redis_url, embedder) as server:
        body = json.dumps(
            {"model": "bandit-router", "stream": True, "messages": [{"role": "user", "content": "Count to twenty."}]}
        ).encode()
        reader, writer = await asyncio.open_connection(*http_address(server))
        writer.write(head("/v1/chat/completions", len(body)))
        await writer.drain()
        await asyncio.sleep(0.05)  # a gap, not a wait for a condition: what makes the body a read of its own
        writer.write(body)
        await writer.drain()
        answer = (await asyncio.wait_for(reader.read(), 60)).decode()
        writer.close()
    assert answer.startswith("HTTP/1.1 200"), answer[:300]
    assert "data: [DONE]" in answer and all(f"word{i}" in answer for i in range(20)), answer[-500:]


async def test_the_official_client_streams_a_long_chat_history_to_the_end(
    tmp_path: Path, redis_url: str, embedder: Embedder
) -> None:
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": "x" * 1000} for i in range(300)]
    history.append({"role": "user", "content": "Count to twenty."})
    async with gateway(tmp_path, redis_url, embedder) as server:
        assert server.http is not None
        client = openai.AsyncOpenAI(base_url=server.http.url + "v1", api_key="unused", max_retries=0)
        try:
            stream = await client.chat.completions.create(model="bandit-router", messages=history, stream=True)  # type: ignore[arg-type]
            words = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
        finally:
            await client.close()
    assert "".join(words) == ANSWER


async def test_a_body_that_never_completes_is_a_408_after_the_body_timeout(
    tmp_path: Path, redis_url: str, embedder: Embedder
) -> None:
    async with gateway(tmp_path, redis_url, embedder, body_timeout_s=1.0) as server:
        reader, writer = await asyncio.open_connection(*http_address(server))
        writer.write(head("/v1/route", 100) + b'{"query": ')  # 10 of the 100 bytes promised
        await writer.drain()
        answer = (await asyncio.wait_for(reader.read(), 60)).decode()
        writer.close()
    assert answer.startswith("HTTP/1.1 408"), answer[:300]
    assert "body must arrive within http.body_timeout_s (1 s) of its head" in answer


async def test_idle_connections_at_the_cap_make_room_and_are_closed_when_idle_too_long(
    tmp_path: Path, redis_url: str, embedder: Embedder
) -> None:
    """Eight connections, the cap, each asks /healthz once and then idles with its connection kept alive (no token
    needed): a new request is still served, the longest-idle connection closed for it."""
    async with gateway(tmp_path, redis_url, embedder, max_connections=8, idle_timeout_s=300.0) as server:
        idle = []
        for _ in range(8):
            reader, writer = await asyncio.open_connection(*http_address(server))
            writer.write(head("/healthz", 0, method="GET", keep_alive=True))
            await writer.drain()
            assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).startswith(b"HTTP/1.1 200")
            idle.append((reader, writer))
        for _ in range(3):
            reader, writer = await asyncio.open_connection(*http_address(server))
            writer.write(head("/v1/route", len(b'{"query": "Still room?"}')) + b'{"query": "Still room?"}')
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 60)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        # The longest idle was closed to make room for the first; the others each found a slot freed by the one
        # before (answered, then closed).
        assert server.http is not None and server.http.site is not None
        connections = server.http.site.connections
        await asyncio.wait_for(idle[0][0].read(), 30)  # the rest of its /healthz answer, then the end: closed
        assert idle[0][0].at_eof()
        assert connections.evicted == 1 and connections.refused == 0
        await until(lambda: len(connections.open) == 7, 30, "the seven idle connections left open")
        for _, writer in idle:
            writer.close()


async def test_a_kept_alive_connection_idle_past_the_idle_timeout_is_closed(
    tmp_path: Path, redis_url: str, embedder: Embedder
) -> None:
    async with gateway(tmp_path, redis_url, embedder, idle_timeout_s=0.5) as server:
        reader, writer = await asyncio.open_connection(*http_address(server))
        writer.write(head("/healthz", 0, method="GET", keep_alive=True))
        await writer.drain()
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        await asyncio.wait_for(reader.read(), 30)  # returns once the server closed it
        assert reader.at_eof()
        writer.close()


async def test_one_address_holds_at_most_its_share_of_connections_not_yet_answered(
    tmp_path: Path, redis_url: str, embedder: Embedder
) -> None:
    async with gateway(tmp_path, redis_url, embedder, max_connections_per_address=4) as server:
        assert server.http is not None
        pending = [await asyncio.open_connection(*http_address(server)) for _ in range(4)]
        site = server.http.site
        assert site is not None
        await until(lambda: len(site.connections.open) == 4, 30, "four connections accepted")
        reader, writer = await asyncio.open_connection(*http_address(server))
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(), 30) == b""  # the fifth is refused
        assert site.connections.refused == 1
        writer.close()
        for _, w in pending:
            w.close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The official client honours proxy variables; these tests talk to 127.0.0.1 only.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
