"""Calls to a model's OpenAI-compatible backend: one answer, or a stream relayed as it comes, metered either way."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from bandit_router.config import HttpConfig, ModelSpec
from bandit_router.observability.timing import SERVER_TIMING, current, note, server_timing
from bandit_router.observability.tracing import outgoing

# Statuses after which the next-best model is tried: overloaded, or broken, upstream.
RETRIED = frozenset({408, 409, 425, 429}) | frozenset(range(500, 600))
# A health probe that takes longer than this has failed, whatever the model's own timeout.
PROBE_TIMEOUT_S = 5.0
# Statuses that say the backend is set up wrong (no key, a wrong key, a base URL without /v1, a wrong path), not
# that the request was: the next-best model is tried, and the call teaches the policy nothing.
MISCONFIGURED = frozenset({401, 403, 404, 405})


class BackendFailure(Exception):
    """The backend did not answer (refused, timed out, or an HTTP status in RETRIED or MISCONFIGURED) before
    anything was relayed to the caller. ``teaches``: whether the failure says something about the model as a
    choice (an overloaded, erroring, slow or broken backend: learned with ``reward.failure_quality``), or only
    about where it runs (unreachable, misconfigured: the breaker's business, not the policy's)."""

    def __init__(self, reason: str, teaches: bool = True) -> None:
        super().__init__(reason)
        self.teaches = teaches


class BackendRefused(Exception):
    """The backend refused the request itself (a 4xx other than overload): the caller's answer, relayed as is."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.content_type = content_type


# (input tokens, output tokens) of an answer, as reported by the backend or counted by the gateway.
Usage = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Call:
    """What one backend call measured."""

    input_tokens: int
    output_tokens: int
    latency_ms: float
    first_token_ms: float | None
    # Why a stream broke off after it had started (the caller got part of an answer); "" when it ended well.
    broken: str = ""
    # The answer's text (message content, completion text, streamed deltas), for counting its tokens.
    answer_text: str = ""

    @property
    def answer_chars(self) -> int:
        return len(self.answer_text)


def _usage(payload: Any) -> tuple[int, int] | None:
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return prompt, completion


def _calls_tools(chunk: dict[str, Any]) -> bool:
    """Whether a streamed chunk carries a tool call (an answer without text)."""
    return any(
        isinstance(c, dict) and isinstance(c.get("delta"), dict) and c["delta"].get("tool_calls")
        for c in chunk.get("choices") or ()
    )


def _text(payload: dict[str, Any]) -> str:
    """The answer text in an answer or a streamed chunk, over its choices."""
    pieces = []
    for choice in payload.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        for part in (choice.get("message"), choice.get("delta")):
            if isinstance(part, dict) and isinstance(part.get("content"), str):
                pieces.append(part["content"])
        if isinstance(choice.get("text"), str):
            pieces.append(choice["text"])
    return "".join(pieces)


class Backends:
    """One HTTP client session for every backend; its timeouts come from ``http.backend_timeout_s``."""

    def __init__(self, config: HttpConfig) -> None:
        self.config = config
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.config.backend_timeout_s, sock_read=self.config.backend_timeout_s
        )
        self.session = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    @staticmethod
    def _headers(model: ModelSpec) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if model.api_key_env:
            key = os.environ.get(model.api_key_env)
            if not key:
                raise BackendFailure(
                    f"environment variable {model.api_key_env} (models.api_key_env) is not set", teaches=False
                )
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def timeout_of(self, model: ModelSpec) -> float:
        """How long ``model``'s backend may take to start answering: its own ``timeout_s``, else the gateway's."""
        return model.timeout_s if model.timeout_s is not None else self.config.backend_timeout_s

    async def _open(
        self, model: ModelSpec, path: str, body: dict[str, Any], budget_s: float, caller: Mapping[str, str]
    ) -> Any:
        """The backend's response, once its status line and headers arrived; a failure raises BackendFailure.
        The caller's trace context (``traceparent``) goes on to the backend."""
        assert self.session is not None
        url = model.base_url.rstrip("/") + path
        headers = outgoing(self._headers(model), caller)
        timeout = min(self.timeout_of(model), budget_s)
        try:
            response = await asyncio.wait_for(self.session.post(url, json=body, headers=headers), timeout)
        except TimeoutError:
            raise BackendFailure(f"no answer within {timeout:g} s") from None
        except aiohttp.ClientError as exc:
            reason = f"cannot reach {model.base_url}: {type(exc).__name__}: {exc}"
            raise BackendFailure(reason, teaches=False) from None
        if response.status in RETRIED or response.status in MISCONFIGURED:
            text = (await response.read())[:200].decode(errors="replace")
            response.release()
            raise BackendFailure(f"HTTP {response.status}: {text}", teaches=response.status in RETRIED)
        if response.status >= 400:
            data = await response.read()
            response.release()
            raise BackendRefused(response.status, data, response.content_type)
        return response

    async def probe(self, model: ModelSpec) -> int | str:
        """``GET base_url + health_path``: the status it answered, or why it could not be asked."""
        assert self.session is not None
        try:
            headers = self._headers(model)
        except BackendFailure as exc:
            return str(exc)
        url = model.base_url.rstrip("/") + model.health_path
        try:
            async with asyncio.timeout(min(self.timeout_of(model), PROBE_TIMEOUT_S)):
                async with self.session.get(url, headers=headers) as response:
                    await response.read()
                    return response.status
        except TimeoutError:
            return f"no answer within {min(self.timeout_of(model), PROBE_TIMEOUT_S):g} s"
        except aiohttp.ClientError as exc:
            return f"cannot reach {model.base_url}: {type(exc).__name__}: {exc}"

    async def answer(
        self, model: ModelSpec, path: str, body: dict[str, Any], budget_s: float, caller: Mapping[str, str]
    ) -> tuple[dict[str, Any], Call]:
        """A whole (not streamed) answer and what it measured."""
        started = time.perf_counter()
        response = await self._open(model, path, {**body, "model": model.upstream}, budget_s, caller)
        try:
            payload = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise BackendFailure(f"unreadable answer: {type(exc).__name__}: {exc}") from None
        finally:
            response.release()
        if not isinstance(payload, dict):
            raise BackendFailure("the answer is not a JSON object")
        latency_ms = (time.perf_counter() - started) * 1000
        prompt, completion = _usage(payload) or (0, 0)
        return payload, Call(prompt, completion, latency_ms, None, answer_text=_text(payload))

    async def relay(
        self,
        model: ModelSpec,
        path: str,
        body: dict[str, Any],
        budget_s: float,
        request: web.Request,
        rewrite: Callable[[dict[str, Any], bool], dict[str, Any]],
        headers: dict[str, str],
        before_end: Callable[[Call], Awaitable[Usage | None]],
    ) -> web.StreamResponse:
        """Relays a streamed answer as server-sent events, each chunk passed through ``rewrite`` (told whether it
        is the first); ``before_end`` gets the measurement before the final ``[DONE]`` is sent, and answers the
        tokens it counted: a caller that asked for usage the backend did not send gets them in a usage chunk.
        Until the backend sends a chunk that parses, a failure (refused, an error status, a stream of nothing but
        garbage) raises BackendFailure, so the next model can answer; once relaying, the stream ends where the
        backend's did, or at ``budget_s`` (http.deadline_s) from the call, whichever comes first."""
        started = time.perf_counter()
        asked_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        upstream = {**body, "model": model.upstream, "stream_options": {**(body.get("stream_options") or {})}}
        upstream["stream_options"]["include_usage"] = True
        # A backend that has not even started answering by the first-token bound has sent no first token either.
        first_token_s = model.first_token_timeout_s if model.first_token_timeout_s is not None else budget_s
        response = await self._open(model, path, upstream, min(budget_s, first_token_s), request.headers)
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **headers})
        copy = _Copy(started, asked_usage, rewrite, request)
        broken, gone = "", False
        now = asyncio.get_running_loop().time()
        end = now + max(budget_s - (time.perf_counter() - started), 0.001)
        first_by = min(end, now + first_token_s)
        try:
            async with asyncio.timeout_at(first_by) as limit:

                def first_token() -> None:
                    limit.reschedule(end)
                    note("first-token", (time.perf_counter() - started) * 1000)
                    out.headers[SERVER_TIMING] = server_timing(current())

                await copy.run(response, out, first_token)
        except TimeoutError:
            if copy.parsed:
                broken = f"the stream ran past http.deadline_s ({time.perf_counter() - started:.1f} s into this call)"
            else:
                broken = f"no first token within {time.perf_counter() - started:.1f} s (first_token_timeout_s)"
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            broken = f"the stream broke off: {type(exc).__name__}: {exc}"
        except ConnectionResetError:
            # The caller went away: the backend answered, so the call is metered as it went; nothing more is sent.
            gone = True
        finally:
            response.release()
        if not copy.parsed and not gone:
            # Nothing the caller could use has been sent: this model failed, and the next may answer instead.
            raise BackendFailure(broken or "the stream held no chunk that parses as JSON")
        if not out.prepared and not gone:
            await out.prepare(request)
        prompt, completion = copy.usage or (0, 0)
        elapsed_ms = (time.perf_counter() - started) * 1000
        answer = "".join(copy.pieces)
        counted = await before_end(Call(prompt, completion, elapsed_ms, copy.first_token_ms, broken, answer))
        if asked_usage and copy.usage is None and counted is not None and not gone and not broken:
            usage = {"prompt_tokens": counted[0], "completion_tokens": counted[1], "total_tokens": sum(counted)}
            chunk = {"id": copy.last_id, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            await out.write(b"data: " + json.dumps(rewrite(chunk, False)).encode() + b"\n\n")
        if not gone:
            await out.write(b"data: [DONE]\n\n")
            await out.write_eof()
        return out


class _Copy:
    """Copies a backend's server-sent events to the caller, noting the usage and when the first token came."""

    def __init__(
        self,
        started: float,
        asked_usage: bool,
        rewrite: Callable[[dict[str, Any], bool], dict[str, Any]],
        request: web.Request,
    ) -> None:
        self.started = started
        self.asked_usage = asked_usage
        self.rewrite = rewrite
        self.request = request
        self.usage: tuple[int, int] | None = None
        self.first_token_ms: float | None = None
        self.pieces: list[str] = []
        # Chunks that parsed: until one has, nothing is sent to the caller (the answer starts with the first).
        self.parsed = 0
        self.last_id: Any = None

    async def run(self, response: Any, out: web.StreamResponse, on_first: Callable[[], None]) -> None:
        """Copies until the backend's ``[DONE]`` or end; ``on_first`` is called once the first chunk parses."""
        first = True
        async for raw in response.content:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                return
            try:
                chunk = json.loads(data)
            except ValueError:
                continue
            if not isinstance(chunk, dict):
                continue
            self.parsed += 1
            self.last_id = chunk.get("id", self.last_id)
            if not out.prepared:
                on_first()
                await out.prepare(self.request)
            self.usage = _usage(chunk) or self.usage
            text = _text(chunk)
            if text:
                self.pieces.append(text)
            if self.first_token_ms is None and (text or _calls_tools(chunk)):
                self.first_token_ms = (time.perf_counter() - self.started) * 1000
            if not self.asked_usage:
                if chunk.get("usage") and not chunk.get("choices"):
                    continue  # the usage-only chunk the gateway asked for, which the caller did not
                chunk.pop("usage", None)
            await out.write(b"data: " + json.dumps(self.rewrite(chunk, first)).encode() + b"\n\n")
            first = False
