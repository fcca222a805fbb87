"""The private parts of gunicorn's gthread worker that service.gunicorn_worker relies on.

gunicorn has no public interface for "read the request in the event loop": the worker hooks into
``ThreadWorker``'s methods and attributes and preloads bytes into a connection's parser. Every
such name is used here and nowhere else, ``check()`` verifies them when a worker starts (so an
upgrade that renames one stops the worker at start, not on the first slow client), and
tests/unit/test_compat_gunicorn.py drives each with real gunicorn objects. pyproject.toml holds
gunicorn to the release series this was written and tested against (``TESTED``).
"""

from __future__ import annotations

import inspect
import selectors
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import gunicorn
from gunicorn.workers import gthread

TESTED = "27.0"
ThreadWorker = gthread.ThreadWorker
# How long a stopping gthread worker keeps its kept-alive connections open.
STOP_LINGER: float = getattr(gthread, "STOP_KEEPALIVE_LINGER", 2.0)

# (owner, method, its parameters after self): what the worker overrides or calls.
_METHODS: tuple[tuple[type, str, tuple[str, ...]], ...] = (
    (gthread.ThreadWorker, "enqueue_req", ("conn",)),
    (gthread.ThreadWorker, "finish_request", ("conn", "fs")),
    (gthread.ThreadWorker, "murder_pending", ()),
    (gthread.ThreadWorker, "set_accept_enabled", ("enabled",)),
    (gthread.ThreadWorker, "handle", ("conn",)),
    (gthread.ThreadWorker, "accept", ("listener",)),
    (gthread.TConn, "init", ()),
    (gthread.TConn, "close", ("graceful",)),
)


class IncompatibleGunicorn(RuntimeError):
    """The installed gunicorn lacks an internal the worker needs."""


def check() -> None:
    """Raise IncompatibleGunicorn unless every internal used here is as expected."""
    for owner, name, params in _METHODS:
        method = getattr(owner, name, None)
        if method is None:
            raise IncompatibleGunicorn(
                f"gunicorn {gunicorn.__version__}: no {owner.__name__}.{name}"
            )
        found = tuple(inspect.signature(method).parameters)[1 : 1 + len(params)]
        if found != params:
            raise IncompatibleGunicorn(
                f"gunicorn {gunicorn.__version__}: {owner.__name__}.{name}{found} "
                f"is not {name}{params} (tested with {TESTED})"
            )
    source = inspect.getsource(gthread.ThreadWorker.handle)
    if "conn.data_ready" not in source or "conn.init()" not in source:
        raise IncompatibleGunicorn(
            f"gunicorn {gunicorn.__version__}: ThreadWorker.handle no longer skips its wait "
            "for data on a connection marked data_ready (tested with {TESTED})"
        )


def refuses(cfg: Any) -> str | None:
    """Why the worker cannot serve this configuration (it reads plain HTTP/1.x bytes)."""
    if cfg.is_ssl:
        return "TLS (terminate it in front of the service)"
    if "h2" in getattr(cfg, "http_protocols", ()) or getattr(cfg, "http2_prior_knowledge", False):
        return "HTTP/2"
    return None


def submit(worker: Any, conn: Any) -> None:
    """Hand ``conn`` to the thread pool (gthread's own enqueue)."""
    gthread.ThreadWorker.enqueue_req(worker, conn)


def take_buffered(conn: Any) -> bytes:
    """Bytes gunicorn read past the last request (a pipelined request's start)."""
    parser = conn.parser
    return b"" if parser is None else bytes(parser.unreader.take_buffered())


def preload(conn: Any, data: bytes) -> None:
    """Make ``data`` the next bytes the connection's parser reads; no wait for more data."""
    conn.data_ready = True
    conn.init()
    conn.parser.unreader.unread(data)


def finished(worker: Any, conn: Any, keepalive: bool) -> None:
    """Go on as gthread does once a request's thread returned ``keepalive``."""
    done: Future[bool] = Future()
    done.set_result(keepalive)
    gthread.ThreadWorker.finish_request(worker, conn, done)


def drop(worker: Any, conn: Any) -> None:
    """Close a connection the worker counts, now."""
    worker.nr_conns -= 1
    conn.close()


def poller(worker: Any) -> selectors.BaseSelector:
    selector: selectors.BaseSelector = worker.poller
    return selector


def set_accepting(worker: Any, enabled: bool, always: Callable[[Any], bool]) -> None:
    """gthread's ``set_accept_enabled``, except that listeners for which ``always`` holds keep
    accepting when the worker is full (the admin port: probes answer whatever the load)."""
    registered = _registered(worker)
    for listener in worker.sockets:
        wanted = enabled or always(listener)
        if wanted and listener not in registered:
            listener.setblocking(False)
            worker.poller.register(listener, selectors.EVENT_READ, worker.accept)
        elif not wanted and listener in registered:
            worker.poller.unregister(listener)
    worker._accepting = enabled


def _registered(worker: Any) -> set[Any]:
    return {key.fileobj for key in worker.poller.get_map().values()}
