"""Every request traceable: a Server-Timing header with the request's phases, OpenTelemetry spans (route phases,
backend call, feedback) in the caller's trace when tracing is on, and the trace context passed on to the backend
either way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from backends import Served, UserBackend, catalog_of, gateway_before, user_backends
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bandit_router.embedding.model import Embedder
from bandit_router.observability.tracing import disable, enable

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
CHAT = {"model": "bandit-router", "messages": [{"role": "user", "content": "Name a prime number."}]}


@pytest.fixture
async def served(tmp_path: Path, redis_url: str, embedder: Embedder) -> AsyncIterator[tuple[Served, UserBackend]]:
    async with (
        user_backends("only-7b", reply="Seven is prime.") as (backend,),
        gateway_before(tmp_path, redis_url, embedder, catalog_of(backend)) as opened,
    ):
        yield opened, backend


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = enable("", "bandit-router-test", exporter=exporter)
    yield exporter
    disable(provider)


def phases_of(header: str) -> dict[str, float]:
    return {p.split(";dur=")[0].strip(): float(p.split(";dur=")[1]) for p in header.split(",")}


async def post(served: Served, path: str, body: object, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(served.url + path, json=body, headers=headers) as response,
    ):
        return response.status, dict(response.headers), await response.text()


async def test_server_timing_names_every_phase_of_a_whole_and_a_streamed_answer(
    served: tuple[Served, UserBackend],
) -> None:
    gateway, backend = served
    status, headers, _ = await post(gateway, "v1/chat/completions", CHAT, CALLER)
    assert status == 200
    phases = phases_of(headers["Server-Timing"])
    assert set(phases) == {"embedding", "decision", "store", "backend"}
    assert all(ms >= 0 for ms in phases.values())
    status, headers, text = await post(gateway, "v1/chat/completions", {**CHAT, "stream": True}, {})
    assert status == 200 and text.rstrip().endswith("data: [DONE]")
    assert {"embedding", "decision", "store", "first-token"} <= set(phases_of(headers["Server-Timing"]))
    status, headers, _ = await post(gateway, "v1/route", {"query": "Name a prime number."}, {})
    assert status == 200 and set(phases_of(headers["Server-Timing"])) == {"embedding", "decision", "store"}
    # Tracing off: the caller's trace context still reaches the backend, as it came.
    assert backend.headers[0]["traceparent"] == CALLER["traceparent"]


async def test_spans_join_the_callers_trace_and_reach_the_backend(
    served: tuple[Served, UserBackend], spans: InMemorySpanExporter
) -> None:
    gateway, backend = served
    status, headers, _ = await post(gateway, "v1/chat/completions", CHAT, CALLER)
    assert status == 200
    decision_id = headers["x-bandit-router-decision-id"]
    status, _, _ = await post(gateway, "v1/feedback", {"decision_id": decision_id, "quality": 0.8}, CALLER)
    assert status == 200
    finished = {s.name: s for s in spans.get_finished_spans()}
    assert {"chat completion", "embedding", "decision", "store", "backend", "feedback"} <= set(finished)
    assert all(format(s.context.trace_id, "032x") == TRACE_ID for s in finished.values())
    request = finished["chat completion"]
    assert request.parent is not None and format(request.parent.span_id, "016x") == "00f067aa0ba902b7"
    call = finished["backend"]
    assert call.parent is not None and call.parent.span_id == request.context.span_id
    assert call.attributes is not None and call.attributes["model"] == "only-7b"
    assert call.attributes["decision_id"] == decision_id
    # The backend was called within the backend span: its traceparent names this trace and a span of the router's.
    sent = backend.headers[-1]["traceparent"].split("-")
    assert sent[1] == TRACE_ID and sent[2] == format(call.context.span_id, "016x")
