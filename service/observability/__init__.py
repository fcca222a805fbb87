"""Observability: Prometheus metrics, OpenTelemetry traces and structured logs.

Nothing happens at import time beyond declaring metrics. The application calls ``init_app``; the
gunicorn config calls the three ``gunicorn_*`` hooks; the invalidator calls
``start_invalidator_metrics_server``. docs/operations.md (Observability) lists every metric,
variable and log field.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Flask
from prometheus_client import generate_latest

from service.breaker import CircuitBreaker
from service.observability import logging as _logging
from service.observability import metrics, status_page
from service.observability.gunicorn_hooks import (
    gunicorn_child_exit,
    gunicorn_on_starting,
    gunicorn_post_fork,
)
from service.observability.invalidator_server import start_invalidator_metrics_server
from service.observability.web import init_app as _init_web

__all__ = [
    "gunicorn_child_exit",
    "gunicorn_on_starting",
    "gunicorn_post_fork",
    "init_app",
    "start_invalidator_metrics_server",
    "status_sources",
]


def status_sources(settings: Any) -> tuple[str, ...]:
    """ORDERS_STATUS_SOURCES, or the invalidator's and the inspector's /metrics on loopback."""
    if settings.status_sources:
        return tuple(settings.status_sources)
    return tuple(
        f"http://127.0.0.1:{port}/metrics"
        for port in (settings.invalidator_metrics_port, settings.inspector_metrics_port)
    )


def init_app(app: Flask, settings: Any = None, *, breakers: Iterable[CircuitBreaker] = ()) -> None:
    """Request metrics, the canonical log line, ``GET /metrics``, ``GET /status`` (with
    ``settings``) and Flask tracing when configured.

    Also configures logging from ``settings`` if nothing did yet, and publishes the current
    state of each of ``breakers`` (breakers report only changes).
    """
    if settings is not None and not _logging.is_configured():
        _logging.configure(settings)
    registry = _init_web(app)
    if settings is not None:
        status_page.init_app(
            app, lambda: generate_latest(registry).decode("utf-8"), status_sources(settings)
        )
    # Published at 0 up front, so the first error is a rate() increase and the MySQL alert has
    # a series to compare.
    metrics.prepare_db_error_kinds(*metrics.DbError)
    for breaker in breakers:
        metrics.set_breaker_state(breaker.name, breaker.state)
