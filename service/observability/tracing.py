"""OpenTelemetry tracing, configured by the standard ``OTEL_*`` variables and off when they are not.

Tracing is on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) or
``OTEL_TRACES_EXPORTER`` is set (``none`` and ``OTEL_SDK_DISABLED=true`` turn it off). The SDK's
batch processor owns a thread, which does not survive ``fork``: the provider is built per gunicorn
worker in ``post_fork`` (opentelemetry-python's fork-process-model example), where the Redis and
PyMySQL instrumentation is also installed, before any client exists. ``span()`` costs one global
read when tracing is off.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from flask import Flask
from opentelemetry import trace

# Probes and scrapes would be most of the spans and none of the insight.
EXCLUDED_URLS = "/metrics,/healthz,/readyz"
DEFAULT_SERVICE_NAME = "orders"
CACHE_OUTCOME_ATTRIBUTE = "orders.cache.outcome"

_NOOP: AbstractContextManager[trace.Span] = contextlib.nullcontext(trace.INVALID_SPAN)


class _State:
    """This process's tracer (None: tracing off) and the pid it was built in."""

    tracer: trace.Tracer | None = None
    pid: int | None = None


_state = _State()


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces to be exported."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(
        exporter
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def active() -> bool:
    """Whether this process has a tracer provider (``configure`` ran here)."""
    return _state.tracer is not None


def _resource_attributes(env: Mapping[str, str]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
        "process.pid": os.getpid(),
    }
    named = "OTEL_SERVICE_NAME" in env or "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if not named:
        attributes["service.name"] = DEFAULT_SERVICE_NAME
    return attributes


def configure(environ: Mapping[str, str] | None = None) -> bool:
    """Build this process's tracer provider and instrument Redis and PyMySQL; idempotent per pid.

    Call it in each worker after fork (``gunicorn_post_fork`` does) and before Redis or MySQL
    clients are created. Returns whether tracing is on.
    """
    env = os.environ if environ is None else environ
    if not enabled(env):
        return False
    if _state.pid == os.getpid():
        return True
    # Imported here, not at the top: they cost ~0.3 s per worker start, which a service with
    # tracing off should not pay.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter,
    )
    from opentelemetry.instrumentation.pymysql import PyMySQLInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    exporters = [
        name.strip()
        for name in env.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")
        if name.strip()
    ]
    provider = TracerProvider(resource=Resource.create(_resource_attributes(env)))
    for name in exporters:
        exporter: SpanExporter
        if name == "otlp":
            protocol = env.get(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
            )
            if protocol not in {"", "http/protobuf"}:
                raise RuntimeError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: "
                    "only http/protobuf is installed"
                )
            exporter = OTLPSpanExporter()
        elif name == "console":
            exporter = ConsoleSpanExporter()
        else:
            raise RuntimeError(
                f"OTEL_TRACES_EXPORTER={name!r} is not supported: use otlp, console or none"
            )
        provider.add_span_processor(BatchSpanProcessor(exporter))
    # Never called in the gunicorn master, so each worker sets the global provider exactly once.
    trace.set_tracer_provider(provider)

    if not RedisInstrumentor().is_instrumented_by_opentelemetry:
        RedisInstrumentor().instrument(tracer_provider=provider)
    if not PyMySQLInstrumentor().is_instrumented_by_opentelemetry:
        PyMySQLInstrumentor().instrument(tracer_provider=provider)

    _state.tracer = provider.get_tracer("service.observability")
    _state.pid = os.getpid()
    return True


def traced_connection(connection: Any) -> Any:
    """``connection`` with a span per query while tracing is on. PyMySQL's instrumentation wraps
    ``pymysql.connect``; the service opens its own ``Connection`` subclass (it refuses cleartext
    auth, service/orders/database.py), which that wrapper never sees."""
    if _state.tracer is None:
        return connection
    from opentelemetry.instrumentation.pymysql import PyMySQLInstrumentor

    return PyMySQLInstrumentor.instrument_connection(connection, trace.get_tracer_provider())  # type: ignore[no-untyped-call]


def instrument_app(app: Flask) -> None:
    """Trace every request except probes and scrapes. Spans start once a provider exists."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FlaskInstrumentor().instrument_app(app, excluded_urls=EXCLUDED_URLS)  # type: ignore[no-untyped-call]


def span(name: str, **attributes: Any) -> AbstractContextManager[trace.Span]:
    """A child span of the current one; a shared no-op context manager when tracing is off."""
    tracer = _state.tracer
    if tracer is None:
        return _NOOP
    return tracer.start_as_current_span(name, attributes=attributes or None)


def shutdown() -> None:
    """Flush and stop this process's exporter (also runs at interpreter exit)."""
    provider = trace.get_tracer_provider()
    stop = getattr(provider, "shutdown", None)
    if callable(stop):
        stop()
