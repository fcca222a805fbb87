"""What the gunicorn master and workers do for observability (called from gunicorn_conf.py).

on_starting (master): the multiprocess directory must be named in the environment before
prometheus_client is imported anywhere (``orders-service serve`` names and empties it).
post_fork (worker): build this worker's tracer provider and instrument Redis and PyMySQL before
any client exists. child_exit
(master): fold the dead worker's metric files into the archives (see ``multiproc``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from service.config import Settings
from service.observability import logging, metrics, multiproc, tracing
from service.observability.logging import get_logger

_log = get_logger("service.observability")


def gunicorn_on_starting(settings: Settings) -> None:
    """Check PROMETHEUS_MULTIPROC_DIR; refuse to start if metrics would be per process. It is not
    emptied here: ``serve`` did that before this process existed (see ``prepare_metrics_dir``)."""
    if not logging.is_configured():
        logging.configure(settings)
    path = multiproc.directory()
    if not path:
        raise RuntimeError(
            f"{multiproc.ENV_VAR} is not set: `orders-service serve` sets it (from "
            "ORDERS_METRICS_DIR) before gunicorn starts; without it each worker would report "
            "only its own metrics"
        )
    values = sys.modules.get("prometheus_client.values")
    if values is not None and not getattr(values.ValueClass, "_multiprocess", False):
        raise RuntimeError(
            f"prometheus_client was imported before {multiproc.ENV_VAR} was set; "
            "set it in the environment before starting gunicorn"
        )
    if not os.path.isdir(path):
        raise RuntimeError(f"{multiproc.ENV_VAR}={path} is not a directory")
    _log.info("metrics directory ready", metrics_dir=path, workers=settings.workers)


def gunicorn_post_fork() -> None:
    """Per-worker tracing (a batch exporter thread cannot cross fork) and build info."""
    tracing.configure()
    metrics.publish_build_info("api")


def gunicorn_child_exit(worker: Any) -> None:
    """Mark the worker dead: live gauges go, counters and histograms move into the archive."""
    path = multiproc.directory()
    if path and os.path.isdir(path):
        multiproc.retire(int(worker.pid), path)
