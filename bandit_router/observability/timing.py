"""Where a request's time went: its phases (embedding, decision, store, backend, first token) timed for the
``Server-Timing`` header, and, where tracing is on (``tracing.otlp_endpoint``), each phase an OpenTelemetry span.

The phases of one request are kept in a context variable, so the router's own code times them without knowing who
asked: outside :func:`timed` nothing is kept. With tracing off, OpenTelemetry is never imported.

Examples
--------
>>> with timed() as phases:
...     with phase("embedding"):
...         pass
>>> list(phases)
['embedding']
>>> server_timing({"embedding": 3.14159, "backend": 12.0})
'embedding;dur=3.14, backend;dur=12.00'
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator, Mapping
from typing import Any

SERVER_TIMING = "Server-Timing"
_phases: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("phases", default=None)
# The OpenTelemetry tracer, once tracing is on (observability/tracing.py); None: no span is made.
_tracer: Any = None


def set_tracer(tracer: Any) -> None:
    global _tracer
    _tracer = tracer


def tracer() -> Any:
    return _tracer


@contextlib.contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Collects the phases (name -> milliseconds) timed within, in the order they ended."""
    phases: dict[str, float] = {}
    token = _phases.set(phases)
    try:
        yield phases
    finally:
        _phases.reset(token)


def current() -> dict[str, float]:
    """The current request's phases so far (empty outside :func:`timed`)."""
    return dict(_phases.get() or {})


def note(name: str, ms: float) -> None:
    """Adds ``ms`` to phase ``name`` of the current request (a phase run twice, as a retried backend, adds up)."""
    phases = _phases.get()
    if phases is not None:
        phases[name] = phases.get(name, 0.0) + ms


@contextlib.contextmanager
def phase(name: str, **attributes: Any) -> Iterator[None]:
    """Times the block as phase ``name`` of the current request, and traces it as a span where tracing is on."""
    started = time.perf_counter()
    span = _tracer.start_as_current_span(name, attributes=attributes) if _tracer is not None else None
    try:
        if span is None:
            yield
        else:
            with span:
                yield
    finally:
        note(name, (time.perf_counter() - started) * 1000)


def server_timing(phases: Mapping[str, float]) -> str:
    """The ``Server-Timing`` header's value (milliseconds, as the header counts them)."""
    return ", ".join(f"{name};dur={ms:.2f}" for name, ms in phases.items())
