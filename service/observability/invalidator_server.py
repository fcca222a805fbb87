"""The invalidator's (and the inspector's) own HTTP endpoint: ``/metrics`` and ``/healthz``.

One thread serves every connection from a selector, so sockets cost no thread while they idle:
the stdlib's threading WSGI server started a thread per connection with no timeout (200 idle
sockets, 200 threads, and none freed). Here a connection has ``REQUEST_SECONDS`` to send a request
of at most ``MAX_REQUEST_BYTES`` and to take its answer; at most ``MAX_CONNECTIONS`` are open, and
when more arrive the oldest is closed, so a probe still gets through a flood of idle sockets.
Each connection carries one request (``Connection: close``): Prometheus and kubelet reconnect.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    disable_created_metrics,
    generate_latest,
)

from service.observability import metrics, multiproc
from service.observability.logging import get_logger

_log = get_logger("service.invalidation")

MAX_CONNECTIONS = 64
REQUEST_SECONDS = 5.0
MAX_REQUEST_BYTES = 8192
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}

Answer = tuple[int, str, bytes]


def _answer(
    healthy: Callable[[], bool], path: str, exposition: Callable[[], bytes] | None = None
) -> Answer:
    if path == "/metrics":
        return 200, CONTENT_TYPE_LATEST, (exposition or (lambda: generate_latest(REGISTRY)))()
    if path == "/healthz":
        ok = healthy()
        return (200, "text/plain", b"ok\n") if ok else (503, "text/plain", b"unhealthy\n")
    return 404, "text/plain", b"not found\n"


def _response(status: int, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _request_path(head: bytes) -> str | None:
    """The path of a ``GET``/``HEAD`` request line, or None when it is not one."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] not in {"GET", "HEAD"} or not parts[2].startswith("HTTP/"):
        return None
    return parts[1].split("?", 1)[0]


class _Connection:
    __slots__ = ("deadline", "received", "sending", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.received = b""
        self.sending = b""


class BoundedHTTPServer:
    """A one-thread HTTP/1.1 server for small GET answers, bounded in connections and time."""

    def __init__(
        self,
        host: str,
        port: int,
        answer: Callable[[str], Answer],
        *,
        max_connections: int = MAX_CONNECTIONS,
        request_seconds: float = REQUEST_SECONDS,
        name: str = "invalidator-metrics",
    ) -> None:
        self._answer = answer
        self._max = max_connections
        self._seconds = request_seconds
        self._listener = socket.create_server((host, port), backlog=128)
        self._listener.setblocking(False)
        self.server_address = self._listener.getsockname()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._open: OrderedDict[int, _Connection] = OrderedDict()  # oldest first
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        try:
            while not self._stopped.is_set():
                for key, events in self._selector.select(timeout=0.25):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif events & selectors.EVENT_READ:
                        self._read(key.data)
                    else:
                        self._write(key.data)
                self._expire(time.monotonic())
        finally:
            for connection in list(self._open.values()):
                self._close(connection)
            self._selector.close()
            self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors: try again on the next event
                return
            sock.setblocking(False)
            if len(self._open) >= self._max:
                self._close(next(iter(self._open.values())))
            connection = _Connection(sock, time.monotonic() + self._seconds)
            self._open[sock.fileno()] = connection
            self._selector.register(sock, selectors.EVENT_READ, connection)

    def _read(self, connection: _Connection) -> None:
        try:
            chunk = connection.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close(connection)
            return
        connection.received += chunk
        end = connection.received.find(b"\r\n\r\n")
        if end < 0:
            if len(connection.received) > MAX_REQUEST_BYTES:
                self._reply(connection, _response(400, "text/plain", b"request too large\n"))
            return
        path = _request_path(connection.received[:end])
        if path is None:
            self._reply(connection, _response(400, "text/plain", b"bad request\n"))
            return
        status, content_type, body = self._answer(path)
        if connection.received.startswith(b"HEAD "):
            response = _response(status, content_type, body)[: -len(body) or None]
        else:
            response = _response(status, content_type, body)
        self._reply(connection, response)

    def _reply(self, connection: _Connection, response: bytes) -> None:
        connection.sending = response
        self._selector.modify(connection.sock, selectors.EVENT_WRITE, connection)
        self._write(connection)

    def _write(self, connection: _Connection) -> None:
        try:
            sent = connection.sock.send(connection.sending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(connection)
            return
        connection.sending = connection.sending[sent:]
        if not connection.sending:
            self._close(connection)

    def _expire(self, now: float) -> None:
        for connection in list(self._open.values()):
            if connection.deadline > now:
                break  # opened in order, so every later one expires later
            self._close(connection)

    def _close(self, connection: _Connection) -> None:
        self._open.pop(connection.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(connection.sock)
        with contextlib.suppress(OSError):
            connection.sock.close()


def start_invalidator_metrics_server(
    host: str, port: int, healthy: Callable[[], bool] | None = None
) -> BoundedHTTPServer:
    """Serve ``/metrics`` and ``/healthz`` on ``host:port`` in a thread.

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
    check = healthy or (lambda: True)
    server = BoundedHTTPServer(
        host,
        port,
        lambda path: _answer(check, path),
    )
    server.start()
    return server
