"""OpenTelemetry tracing, behind the optional ``otel`` extra: spans for a gateway request, its routing phases, each
backend call and feedback, exported over OTLP where ``tracing.otlp_endpoint`` is set. Off (the default), nothing of
OpenTelemetry is imported and a span costs a test of one global; the caller's ``traceparent`` still goes on to the
backend as it came."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from bandit_router.observability.timing import set_tracer, tracer

log = logging.getLogger(__name__)

# W3C trace context headers, passed on to the backend as they came when this router traces nothing itself.
TRACE_HEADERS = ("traceparent", "tracestate")


def enable(endpoint: str, service_name: str, exporter: Any = None) -> Any:
    """Turns tracing on: spans go to ``exporter`` (an OTLP/HTTP exporter to ``endpoint`` when None). Returns the
    tracer provider (shut it down to flush). Raises ImportError naming the extra when OpenTelemetry is missing."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        raise ImportError(
            "tracing.otlp_endpoint is set but OpenTelemetry is not installed: pip install 'bandit-router[otel]'"
        ) from exc
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    set_tracer(provider.get_tracer("bandit_router"))
    log.info("tracing to %s", endpoint or type(exporter).__name__)
    return provider


def disable(provider: Any) -> None:
    set_tracer(None)
    if provider is not None:
        provider.shutdown()


@contextlib.contextmanager
def traced(name: str, incoming: Mapping[str, str]) -> Iterator[None]:
    """The span of one request, a child of the caller's trace where its headers carry one."""
    current = tracer()
    if current is None:
        yield
        return
    from opentelemetry import propagate

    with current.start_as_current_span(name, context=propagate.extract(dict(incoming))):
        yield


def outgoing(headers: dict[str, str], incoming: Mapping[str, str]) -> dict[str, str]:
    """``headers`` for a backend call with the trace context: this router's own span's where it traces, else the
    caller's as it came."""
    if tracer() is not None:
        from opentelemetry import propagate

        propagate.inject(headers)
    else:
        for name in TRACE_HEADERS:
            if name in incoming:
                headers[name] = incoming[name]
    return headers
