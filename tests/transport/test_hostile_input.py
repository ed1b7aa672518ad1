"""Hostile and malformed input at the HTTP edge, sent as raw bytes: every case is a 400 naming what is wrong, one
tenant's odd text fails none of another tenant's requests, and the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from helpers import http_address, make_config, served

from bandit_router.config import EmbeddingConfig
from bandit_router.embedding.batcher import BatchingEmbedder
from bandit_router.embedding.model import Embedder
from bandit_router.embedding.types import Embedded
from bandit_router.runtime.process import RouterProcess
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc

ALPHA, BETA = "alpha-token-0123456789", "beta-token-0123456789ab"


@pytest.fixture
async def server(tmp_path: Path, redis_url: str, embedder: Embedder) -> AsyncIterator[RouterProcess]:
    config = make_config(tmp_path, redis_url, auth={"tokens": (f"alpha:{ALPHA}", f"beta:{BETA}")})
    async with served(config, embedder) as server:
        yield server


async def post(server: RouterProcess, path: str, body: bytes, token: str = ALPHA, **headers: str) -> tuple[int, Any]:
    """``body`` sent as it is, over a raw socket; the status and the JSON answer."""
    host, port = http_address(server)
    reader, writer = await asyncio.open_connection(host, port)
    head = {
        "Host": f"{host}:{port}",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Authorization": f"Bearer {token}",
        "Connection": "close",
        **{k.replace("_", "-"): v for k, v in headers.items()},
    }
    writer.write(f"POST {path} HTTP/1.1\r\n".encode() + "".join(f"{k}: {v}\r\n" for k, v in head.items()).encode())
    writer.write(b"\r\n" + body)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 60)
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(payload)


def chat(content: str) -> bytes:
    """A gateway request whose last user message is ``content``, written with JSON's escapes."""
    return json.dumps({"model": "bandit-router", "messages": [{"role": "user", "content": content}]}).encode()


@pytest.mark.parametrize(
    ("path", "body", "headers", "message"),
    [
        (
            "/v1/route",
            b'{"query": "What is \\ud800 plus one?"}',
            {},
            r"query must be text without NUL or lone surrogates, found a lone surrogate \(U\+D800\)",
        ),
        (
            "/v1/route",
            b'{"query": "Name a colour.", "metadata": {"user": "a\\u0000b"}}',
            {},
            r"metadata.user must be text without NUL or lone surrogates, found NUL",
        ),
        (
            "/v1/chat/completions",
            chat("Tell me about \ud83d the moon."),
            {},
            r"messages\[0\].content must be text without NUL or lone surrogates, found a lone surrogate \(U\+D83D\)",
        ),
        ("/v1/route", b'{"query": "hi", "request_id": ' + b"7" * 5000 + b"}", {}, r"body must be valid JSON"),
        ("/v1/route", b'{"query": "hi", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", {}, r"body must nest"),
        (
            "/v1/reward",
            b"this is not gzip at all",
            {"Content-Encoding": "gzip"},
            r"body must be encoded as its Content-Encoding \(gzip\) says",
        ),
    ],
    ids=["surrogate-query", "nul-metadata", "surrogate-chat", "5000-digits", "deep-nesting", "not-gzip"],
)
async def test_malformed_input_is_a_400_naming_what_is_wrong_and_the_server_keeps_serving(
    server: RouterProcess, path: str, body: bytes, headers: dict[str, str], message: str
) -> None:
    status, answer = await post(server, path, body, **headers)
    assert status == 400, answer
    assert re.search(message, answer["error"]["message"]), answer
    status, decision = await post(server, "/v1/route", b'{"query": "Still there?"}')
    assert status == 200 and decision["model"], decision


async def test_one_tenants_odd_text_fails_none_of_another_tenants_routes(server: RouterProcess) -> None:
    """Alpha sends queries with lone surrogates and NULs while beta routes: every one of beta's Routes is
    answered, every one of alpha's odd ones is a 400 naming the query."""

    async def alpha() -> list[int]:
        odd = [b'{"query": "q\\ud800 %d"}', b'{"query": "q\\u0000 %d"}', b'{"query": "\\udfff%d"}']
        return [(await post(server, "/v1/route", odd[i % 3] % i))[0] for i in range(30)]

    async def beta() -> list[int]:
        return [(await post(server, "/v1/route", b'{"query": "Beta question %d?"}' % i, BETA))[0] for i in range(30)]

    refused, *answered = await asyncio.gather(alpha(), beta(), beta())
    assert refused == [400] * 30
    assert answered == [[200] * 30, [200] * 30]


class Poisoned:
    """The real model, except that it fails any batch holding the text ``poison``, as a tokenizer fails on text
    it cannot take."""

    def __init__(self, model: Embedder) -> None:
        self.model = model

    def embed(self, texts: Sequence[str]) -> list[Embedded]:
        if "poison" in texts:
            raise ValueError("the tokenizer cannot take this text")
        return self.model.embed(texts)


async def test_a_query_the_model_cannot_take_fails_alone_not_its_batch(embedder: Embedder) -> None:
    batcher = BatchingEmbedder(Poisoned(embedder), EmbeddingConfig(device="cpu", max_batch_size=16, max_wait_ms=50))
    try:
        texts = ["What is two plus two?", "poison", "Write a haiku.", "Name a prime."]
        results = await asyncio.gather(*(batcher.embed(t) for t in texts), return_exceptions=True)
    finally:
        await batcher.close()
    assert isinstance(results[1], ValueError)
    good = [r for i, r in enumerate(results) if i != 1]
    assert all(isinstance(r, Embedded) for r in good)
    for text, result in zip([t for t in texts if t != "poison"], good, strict=True):
        assert isinstance(result, Embedded)
        assert np.allclose(result.vector, embedder.embed([text])[0].vector, atol=1e-5)


async def test_the_real_model_fails_on_a_lone_surrogate_and_only_that_query_fails(embedder: Embedder) -> None:
    """Why the edge refuses such text: the model's tokenizer cannot take it. Should one get through, it fails
    alone."""
    with pytest.raises(Exception):  # noqa: B017 - whichever error the tokenizer raises
        embedder.embed(["ok", "\ud800"])
    batcher = BatchingEmbedder(embedder, EmbeddingConfig(device="cpu", max_batch_size=16, max_wait_ms=50))
    try:
        ok, odd = await asyncio.gather(batcher.embed("ok"), batcher.embed("\ud800"), return_exceptions=True)
    finally:
        await batcher.close()
    assert isinstance(ok, Embedded) and isinstance(odd, Exception)


async def test_a_nul_in_a_grpc_query_is_invalid_argument_naming_the_query(server: RouterProcess) -> None:
    # protobuf refuses lone surrogates itself (strings must be UTF-8); a NUL is valid UTF-8 and reaches the rule.
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Route(pb.RouteRequest(query="a\x00b"), metadata=[("authorization", f"Bearer {BETA}")])
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "query must be text without NUL or lone surrogates, found NUL" in (caught.value.details() or "")
        decision = await stub.Route(pb.RouteRequest(query="ab"), metadata=[("authorization", f"Bearer {BETA}")])
        assert decision.model
