"""Observability: Prometheus metrics, OpenTelemetry traces and structured logs.

Nothing happens at import time beyond declaring metrics. The application calls ``init_app``; the
gunicorn config calls the three ``gunicorn_*`` hooks; the invalidator calls
``start_invalidator_metrics_server``. See docs/observability.md for every metric, variable and
log field.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

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
]


def init_app(app: Flask, settings: Any = None) -> None:
    """Request metrics, the canonical log line, ``GET /metrics`` and Flask tracing when configured.

    ``settings`` is accepted for symmetry with the other resources; the hooks need none of it.
    """
    del settings
    _init_web(app)
