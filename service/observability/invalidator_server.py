"""The invalidator's own HTTP endpoint: ``/metrics`` of its single process and ``/healthz``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    disable_created_metrics,
    generate_latest,
)

from service.config import Settings
from service.observability import metrics, multiproc
from service.observability.logging import get_logger

StartResponse = Callable[..., Any]
_log = get_logger("service.invalidation")


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds are not worth a log line."""


def _app(healthy: Callable[[], bool]) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body = generate_latest(REGISTRY)
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [body]
        if path == "/healthz":
            ok = healthy()
            start_response(
                "200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")]
            )
            return [b"ok\n" if ok else b"unhealthy\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


def start_invalidator_metrics_server(
    settings: Settings, healthy: Callable[[], bool] | None = None
) -> WSGIServer:
    """Serve ``/metrics`` and ``/healthz`` on ``settings.invalidator_metrics_port`` in a thread.

    ``healthy`` lets the follower report a stalled stream as 503; by default the endpoint is
    healthy while the process runs. Call ``.shutdown()`` on the result to stop it.
    """
    if multiproc.directory():
        # Its files would land beside the API workers' and be reported twice, by both ports.
        _log.warning(
            "PROMETHEUS_MULTIPROC_DIR is set for the invalidator; unset it for this process",
            metrics_dir=multiproc.directory(),
        )
    disable_created_metrics()  # type: ignore[no-untyped-call]
    metrics.publish_build_info("invalidator")
    metrics.prepare_invalidator()
    server = make_server(
        settings.host,
        settings.invalidator_metrics_port,
        _app(healthy or (lambda: True)),
        server_class=_ThreadingServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, name="invalidator-metrics", daemon=True)
    thread.start()
    return server
