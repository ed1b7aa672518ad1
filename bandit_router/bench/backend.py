"""An OpenAI-compatible backend with scripted answers (text, usage, latency, errors, streams): a real HTTP server for
the gateway's tests and its overhead bench, speaking the chat and completion protocol as vLLM or a provider does."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web


@dataclasses.dataclass(frozen=True)
class Script:
    """How the backend answers one request."""

    text: str = "A scripted answer."
    # HTTP status; anything but 200 answers an OpenAI-shaped error.
    status: int = 200
    # Seconds before the status line (the backend thinking), and between streamed chunks.
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    # Report usage (in the answer, or in a streamed usage chunk when asked for it).
    usage: bool = True
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # Never answer (the gateway's timeout must act).
    hang: bool = False
    # Streams: lines that are not JSON, then [DONE] (a broken backend answering 200); or chunks without end.
    garbage: bool = False
    endless: bool = False
    # An error answer that repeats the prompt it was sent (as some servers' validation errors do).
    echo_error: bool = False


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]


def _prompt_of(body: dict[str, Any]) -> str:
    if "messages" in body:
        return " ".join(str(m.get("content", "")) for m in body["messages"] if isinstance(m, dict))
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else " ".join(map(str, prompt))


class ScriptedBackend:
    """Answers every request by ``script(model, prompt)``; keeps what it was sent in ``received``."""

    def __init__(self, script: Callable[[str, str], Script] = lambda model, prompt: Script()) -> None:
        self.script = script
        self.received: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completion)
        app.router.add_get("/v1/models", self._models)
        # An OTLP/HTTP sink, so the gateway bench can measure the router with tracing on and exporting.
        app.router.add_post("/v1/traces", self._traces)
        # A scripted hang is still waiting when the backend stops: cut it after a second, not aiohttp's 60 s.
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, host, port).start()
        self.url = f"http://{host}:{self.runner.addresses[0][1]}/v1"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    async def _traces(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200, content_type="application/x-protobuf")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, chat=True)

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, chat=False)

    async def _answer(self, request: web.Request, chat: bool) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model", ""))
        prompt = _prompt_of(body)
        self.received.append((request.path, body, dict(request.headers)))
        script = self.script(model, prompt)
        if script.hang:
            await asyncio.sleep(3600)
        if script.delay_s:
            await asyncio.sleep(script.delay_s)
        if script.status != 200:
            error = {
                "message": f"scripted failure {script.status}" + (f" for: {prompt}" if script.echo_error else ""),
                "type": "server_error",
                "param": None,
                "code": None,
            }
            return web.json_response({"error": error}, status=script.status)
        prompt_tokens = script.prompt_tokens if script.prompt_tokens is not None else len(prompt.split())
        words = _words(script.text)
        completion_tokens = script.completion_tokens if script.completion_tokens is not None else len(words)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:12]}"
        created = int(time.time())
        if body.get("stream"):
            return await self._stream(request, body, chat, ident, created, model, words, usage, script)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": script.text}
        else:
            choice["text"] = script.text
        answer: dict[str, Any] = {
            "id": ident,
            "object": "chat.completion" if chat else "text_completion",
            "created": created,
            "model": model,
            "choices": [choice],
        }
        if script.usage:
            answer["usage"] = usage
        return web.json_response(answer)

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        chat: bool,
        ident: str,
        created: int,
        model: str,
        words: list[str],
        usage: dict[str, int],
        script: Script,
    ) -> web.StreamResponse:
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        kind = "chat.completion.chunk" if chat else "text_completion"

        async def send(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
            chunk = {
                "id": ident,
                "object": kind,
                "created": created,
                "model": model,
                "choices": choices,
                **(extra or {}),
            }
            await out.write(f"data: {json.dumps(chunk)}\n\n".encode())

        if script.garbage:
            for line in (b"data: <html>502 Bad Gateway</html>\n\n", b"data: {not json\n\n", b": comment\n\n"):
                await out.write(line)
            await out.write(b"data: [DONE]\n\n")
            await out.write_eof()
            return out
        if script.endless:
            words = [f"{w} " for w in words]
            with contextlib.suppress(ConnectionResetError):
                while True:  # until the caller goes away
                    for word in words:
                        await send([{"index": 0, "delta": {"content": word}, "finish_reason": None, "logprobs": None}])
                        await asyncio.sleep(script.chunk_delay_s or 0.05)
            return out
        for i, word in enumerate(words):
            last = i == len(words) - 1
            if chat:
                delta: dict[str, Any] = {"content": word} if i else {"role": "assistant", "content": word}
                choice = {"index": 0, "delta": delta, "finish_reason": "stop" if last else None, "logprobs": None}
            else:
                choice = {"index": 0, "text": word, "finish_reason": "stop" if last else None, "logprobs": None}
            await send([choice])
            if script.chunk_delay_s and not last:
                await asyncio.sleep(script.chunk_delay_s)
        if script.usage and (body.get("stream_options") or {}).get("include_usage"):
            await send([], {"usage": usage})
        await out.write(b"data: [DONE]\n\n")
        await out.write_eof()
        return out


async def _serve(port: int, delay_s: float, text: str) -> None:
    backend = ScriptedBackend(lambda model, prompt: Script(text=text, delay_s=delay_s))
    url = await backend.start(port=port)
    print(url, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await backend.stop()


def main() -> None:
    """``python -m bandit_router.bench.backend``: one scripted backend, for a bench or a try-out."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="time before each answer")
    parser.add_argument("--text", default="A scripted answer from the test backend.")
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.delay_ms / 1000, args.text))


if __name__ == "__main__":
    main()
