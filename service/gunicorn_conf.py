"""gunicorn settings and worker hooks, all derived from the ORDERS_* settings.

Observability is wired here, not at import: the metrics directory is prepared before workers start,
tracing is built per worker after fork, dead workers are marked for prometheus-client.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from service import lifecycle, observability
from service.config import load as _load_settings
from service.observability import logging as service_logging
from service.observability import multiproc

_settings = _load_settings()

bind = [f"{_settings.host}:{_settings.port}"]
if _settings.admin_port:  # /metrics and the probes answer only there (service/api/ports.py)
    bind.append(f"{_settings.host}:{_settings.admin_port}")
workers = _settings.workers
threads = _settings.threads
# gthread whose event loop reads each request whole before a thread sees it, and takes over
# responses a client is slow to read (service/gunicorn_worker.py): slow clients cost no thread.
worker_class = "service.gunicorn_worker.BufferingThreadWorker"
sendfile = False  # every response goes through the worker's non-blocking send
graceful_timeout = _settings.graceful_timeout
timeout = 30
keepalive = 5
max_requests = _settings.max_requests
max_requests_jitter = max(0, _settings.max_requests // 10)
accesslog = None  # the app logs one canonical line per request
errorlog = "-"
logger_class = "service.observability.gunicorn_logging.GunicornLogger"  # one log format on stdout
loglevel = _settings.log_level
proc_name = "orders-service"
preload_app = False  # each worker builds its own pools and threads after fork
# Only the proxies named in ORDERS_FORWARDED_ALLOW_IPS may set X-Forwarded-Proto and friends (none
# by default: gunicorn's own default trusts 127.0.0.1, which is any sidecar in the pod).
forwarded_allow_ips = ",".join(_settings.forwarded_allow_ips)
# No header may set the WSGI environment (SCRIPT_NAME, PATH_INFO, REMOTE_USER), not even from a
# trusted proxy: the service is mounted at /, and a client-chosen SCRIPT_NAME re-routed requests
# (GET /orders/metrics served /metrics) or crashed them (a 500 for a prefix that did not match).
forwarder_headers = ""
header_map = "drop"  # headers that would map ambiguously into the environment are dropped
control_socket_disable = True  # gunicorn 25+: no control socket in a read-only container


def on_starting(server: Any) -> None:
    observability.gunicorn_on_starting(_settings)


def post_fork(server: Any, worker: Any) -> None:
    _hold_stop_signals_while_booting(server)
    worker.client_timeout = _settings.client_timeout
    worker.max_client_connections = _settings.client_max_connections
    worker.admin_port = _settings.admin_port
    observability.gunicorn_post_fork()
    # Request lines are written in batches: a write and flush per line cost more than the rest
    # of the log call under threads (see LineBuffer).
    service_logging.configure(_settings, buffered=True)


# Ctrl-C reaches the whole process group: the arbiter stops the workers (SIGQUIT), so a worker
# must not act on the terminal's SIGINT too. And gthread's own quit handler calls
# ThreadPoolExecutor.shutdown from the signal handler: when the signal lands while the main
# thread is inside submit() (accepting a connection), that takes the lock submit() holds and the
# worker deadlocks (cpython#121649) until the arbiter's SIGKILL 20 s later. Last, a SIGQUIT or
# SIGTERM that arrived while a worker booted was lost: until the worker installs its handlers it
# runs the arbiter's, which only queue the signal in the (copied) arbiter.
_STOP_SIGNALS = {signal.SIGQUIT, signal.SIGTERM}


def _hold_stop_signals_while_booting(server: Any) -> None:
    """Block SIGINT for good and SIGQUIT/SIGTERM until ``post_worker_init``; re-raise those the
    arbiter's inherited handler swallowed since fork, so they wait, pending, for the worker's."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, *_STOP_SIGNALS})
    queued = getattr(server, "SIG_QUEUE", None)  # gunicorn 27: a SimpleQueue (this child's copy)
    swallowed = set()
    while queued is not None and not queued.empty():
        swallowed.add(queued.get_nowait())
    for signum in swallowed & _STOP_SIGNALS:
        os.kill(os.getpid(), signum)


def post_worker_init(worker: Any) -> None:
    """On SIGTERM, report not-ready for ORDERS_SHUTDOWN_DELAY seconds, then stop gracefully;
    then take the stop signals held since fork."""
    stop_gracefully = signal.getsignal(signal.SIGTERM)

    def drain_then_stop(signum: int, frame: Any) -> None:
        if lifecycle.draining.is_set():
            return
        lifecycle.draining.set()
        if callable(stop_gracefully):
            threading.Timer(_settings.shutdown_delay, stop_gracefully, (signum, frame)).start()

    def quit_soon(signum: int, frame: Any) -> None:
        """Leave the worker loop (within its 1 s poll) without touching the thread pool here."""
        worker.alive = False
        wake = getattr(getattr(worker, "method_queue", None), "defer", None)
        if wake is not None:  # gthread: a reentrant queue and a pipe write end its poll now
            wake(lambda: None)

    signal.signal(signal.SIGTERM, drain_then_stop)
    signal.signal(signal.SIGQUIT, quit_soon)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def on_exit(server: Any) -> None:
    multiproc.remove_private()


def child_exit(server: Any, worker: Any) -> None:
    observability.gunicorn_child_exit(worker)
