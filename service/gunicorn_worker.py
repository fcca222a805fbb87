"""gunicorn's gthread worker, changed so that slow clients cost no thread.

gthread gives every accepted connection to a thread, which waits up to five seconds for a first
byte and then reads headers and body with blocking ``recv`` calls: a deadline per request only
made a slowloris reconnect (8 trickling sockets against 1x4 kept normal requests at 14-17 s and
``/healthz`` at 9-17 s, issue 21). Here the event loop reads each request with non-blocking
``recv`` into a buffer until ``http_framing`` says the whole request (headers and a body up to
64 KiB) is there; only then does a thread get the connection, with the bytes preloaded into
gunicorn's parser. A request that does not arrive within ``ORDERS_CLIENT_TIMEOUT`` gets 408 and
the connection closes. Responses leave the same way: a thread sends what the socket takes at once
and leaves the rest to the event loop, so a client that never reads holds no thread either.

Each worker admits ``ORDERS_CLIENT_MAX_CONNECTIONS`` connections per client address, whatever its
source port, on each listening port (503 beyond it), and keeps accepting on the admin port when it
is full, so the probes answer whatever the API port suffers. gunicorn internals are reached only
through service.compat.gunicorn.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import threading
import time
from collections import Counter
from functools import partial
from typing import Any, NamedTuple

from service.compat import gunicorn as compat
from service.http_answers import BUSY, CONTINUE, TIMEOUT, TOO_LARGE
from service.http_framing import REQUEST_MAX, Arrival, Framer, expects_continue
from service.observability import metrics
from service.observability.logging import get_logger

_log = get_logger("service.http")
# A response the client does not take at once waits in memory up to this size; pages and the
# OpenAPI document are far smaller, so more is a client that stopped reading.
OUTBOX_MAX = 1 << 20
_READ_SIZE = 65536


class DeadlineSocket(socket.socket):
    """A client socket whose sends, in a worker thread, never block: what the kernel does not take
    at once goes to ``outbox`` for the event loop. Nor do its reads once ``never_wait`` is set (a
    thread has the connection): the event loop handed over a whole request, so a parser that wants
    more has met a request the framing code misjudged, and gets an end of stream instead of holding
    the thread. ``on_close`` runs once, when it closes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.never_wait = False
        self.outbox = bytearray()
        self.on_close: Any = None

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if not self.never_wait or self.gettimeout() == 0.0:
            return super().recv(bufsize, flags)
        # Non-blocking for this call: with a timeout set, Python polls for it before any recv,
        # whatever the flags (gunicorn sets one for its body drain).
        previous = self.gettimeout()
        self.settimeout(0.0)
        try:
            return super().recv(bufsize, flags)
        except BlockingIOError:
            return b""  # an end of stream to gunicorn's parser: it closes quietly
        finally:
            self.settimeout(previous)

    def sendall(self, data: Any, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        if not self.outbox:
            try:
                sent = super().send(view, flags | socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            view = view[sent:]
        if not view:
            return
        if len(self.outbox) + len(view) > OUTBOX_MAX:
            raise BrokenPipeError("the client does not read its responses")
        self.outbox += view

    def flush(self) -> bool:
        """Send what the kernel takes now; whether the outbox is empty."""
        while self.outbox:
            try:
                sent = super().send(self.outbox, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False
            del self.outbox[:sent]
        return True

    def close(self) -> None:
        callback, self.on_close = self.on_close, None
        if callback is not None:
            callback()
        super().close()


class _Flush(NamedTuple):
    """A thread's result when its response is still in the socket's outbox."""

    keepalive: Any


class _Gathering(NamedTuple):
    deadline: float
    purpose: str  # "read" a request or "send" a response


class _Admission:
    """Open connections per (local port, client address) in one worker, capped."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._lock = threading.Lock()
        self._open: Counter[tuple[int, str]] = Counter()

    def admit(self, key: tuple[int, str]) -> bool:
        with self._lock:
            if self.cap and self._open[key] >= self.cap:
                return False
            self._open[key] += 1
            return True

    def release(self, key: tuple[int, str]) -> None:
        with self._lock:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]


class _AdmittingListener:
    """A listening socket whose ``accept`` hands out admitted ``DeadlineSocket`` clients."""

    def __init__(self, listener: Any, admission: _Admission) -> None:
        self._listener = listener
        self._admission = admission

    def accept(self) -> tuple[DeadlineSocket, Any]:
        client, address = self._listener.accept()
        timeout = client.gettimeout()
        wrapped = DeadlineSocket(client.family, client.type, client.proto, fileno=client.detach())
        wrapped.settimeout(timeout)
        key = (self._listener.getsockname()[1], _host(address))
        if not self._admission.admit(key):
            _refuse(wrapped, "client_cap", BUSY, address)
            wrapped.close()
            raise BlockingIOError(errno.EAGAIN, "connection refused: per-client cap")
        wrapped.on_close = partial(self._admission.release, key)
        return wrapped, address

    def __getattr__(self, name: str) -> Any:
        return getattr(self._listener, name)


class BufferingThreadWorker(compat.ThreadWorker):  # type: ignore[misc]
    """gthread whose threads see only requests that have arrived whole (see the module doc)."""

    client_timeout = 10.0
    max_client_connections = 64
    admin_port = 0

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        compat.check()
        refused = compat.refuses(cfg)
        if refused is not None:
            raise RuntimeError(f"{cls.__name__} reads plain HTTP/1.x: it cannot serve {refused}")
        super().check_config(cfg, log)

    def init_process(self) -> None:
        self._admission = _Admission(self.max_client_connections)
        for reason in metrics.HTTP_REFUSALS:  # at 0 from the start, so rate() sees the first
            metrics.HTTP_REFUSED.labels(reason)
        self._waiting: dict[Any, _Gathering] = {}
        self._next_sweep = 0.0
        self._stop_capped = False
        super().init_process()

    def set_accept_enabled(self, enabled: bool) -> None:
        compat.set_accepting(self, enabled, self._is_admin)

    def _is_admin(self, listener: Any) -> bool:
        """The admin port keeps accepting when the worker is full, not once it is stopping."""
        return self.alive and bool(self.admin_port) and listener.getsockname()[1] == self.admin_port

    def accept(self, listener: Any) -> None:
        super().accept(_AdmittingListener(listener, self._admission))

    def enqueue_req(self, conn: Any) -> None:
        """Every way to a thread passes here: read the request in the event loop first."""
        conn.inbox = bytearray(compat.take_buffered(conn))
        conn.framer = Framer()
        conn.continued = False
        conn.sock.setblocking(False)  # a pipelined request comes here from a thread's socket
        self._waiting[conn] = _Gathering(self._deadline(), "read")
        # A kept-alive socket comes here readable: its request is usually all there already.
        if self._read(conn) and not self._advance(conn):
            compat.poller(self).register(
                conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn)
            )

    def _on_readable(self, conn: Any, _sock: Any) -> None:
        if self._read(conn):
            self._advance(conn)

    def _read(self, conn: Any) -> bool:
        """Take what the socket holds; False when that closed the connection."""
        try:
            while len(conn.inbox) <= REQUEST_MAX:  # then the request is whole or too large
                data = conn.sock.recv(_READ_SIZE)
                if not data:  # the client is done sending: answer what it sent, if whole
                    if conn.framer.arrival(conn.inbox) is Arrival.WAIT:
                        self._close(conn)
                        return False
                    return True
                conn.inbox += data
        except BlockingIOError:
            pass
        except OSError:
            self._close(conn)
            return False
        return True

    def _advance(self, conn: Any) -> bool:
        """Start the request if it is all there, refuse it if it is too large; whether either
        happened (else it stays with the event loop)."""
        found = conn.framer.arrival(conn.inbox)
        if found is Arrival.WAIT and len(conn.inbox) > REQUEST_MAX:
            found = Arrival.BODY_TOO_LARGE  # never reached; else the loop would spin on the socket
        if found is Arrival.WAIT:
            if not conn.continued and conn.framer.head_end >= 0:
                conn.continued = True  # judged once, when the headers are in
                if expects_continue(conn.inbox):  # gunicorn sends one too: clients take several
                    _send_now(conn.sock, CONTINUE)
            return False
        if found is Arrival.READY:
            self._release(conn)
            compat.submit(self, conn)
        else:
            reason, answer = TOO_LARGE[found]
            _refuse(conn.sock, reason, answer, conn.client)
            self._close(conn)
        return True

    def handle(self, conn: Any) -> Any:
        sock = conn.sock
        sock.never_wait = True
        compat.preload(conn, bytes(conn.inbox))
        conn.inbox = bytearray()
        result = super().handle(conn)
        if isinstance(sock, DeadlineSocket) and sock.outbox:
            return _Flush(result)
        return result

    def finish_request(self, conn: Any, fs: Any) -> None:
        """A thread is done with ``conn``: flush its response in the event loop, then go on as
        gthread does (close it, keep it alive, or read its next pipelined request)."""
        result = None if fs.cancelled() or fs.exception() is not None else fs.result()
        if isinstance(result, _Flush):
            self._waiting[conn] = _Gathering(self._deadline(), "send")
            conn.sock.setblocking(False)
            compat.poller(self).register(
                conn.sock, selectors.EVENT_WRITE, partial(self._on_writable, conn, result.keepalive)
            )
            return
        self._after_response(conn, result)

    def _on_writable(self, conn: Any, keepalive: Any, _sock: Any) -> None:
        try:
            done = conn.sock.flush()
        except OSError:
            self._close(conn)
            return
        if done:
            self._release(conn)
            self._after_response(conn, keepalive)

    def _after_response(self, conn: Any, keepalive: Any) -> None:
        if keepalive:
            compat.finished(self, conn, keepalive)
        else:
            conn.sock.setblocking(False)
            _close_gently(conn.sock)
            compat.drop(self, conn)

    def murder_pending(self) -> None:
        """Also close what did not arrive, or was not taken, within the client timeout."""
        super().murder_pending()
        now = time.monotonic()
        if not self.alive and not self._stop_capped:
            self._stop_capped = True
            self._cap_for_stop(now)
        if now < self._next_sweep:  # the loop turns on every event; a sweep a tick is plenty
            return
        self._next_sweep = now + 0.2
        expired = [conn for conn, waiting in self._waiting.items() if waiting.deadline <= now]
        for conn in expired:
            purpose = self._waiting[conn].purpose
            if purpose == "read":
                _send_now(conn.sock, TIMEOUT)
                metrics.count_http_refused("timeout")
            _log.info(
                "client too slow; connection closed",
                client=_client(conn.client),
                waiting_for=purpose,
                reason="timeout" if purpose == "read" else "slow_reader",
                timeout_s=self.client_timeout,
            )
            self._close(conn)

    def _deadline(self) -> float:
        """When a client must have sent its request, or taken its response; a stopping worker
        waits gthread's linger at most (a fresh client timeout kept it, and its replacement)."""
        wait = self.client_timeout if self.alive else min(self.client_timeout, compat.STOP_LINGER)
        return time.monotonic() + wait

    def _cap_for_stop(self, now: float) -> None:
        """A stopping worker (max_requests, SIGTERM) gives the connections it holds gthread's
        linger for kept-alive ones at most: idle sockets kept it for the client timeout. Not
        less: a connection accepted just before may have its request on the way."""
        for conn, waiting in list(self._waiting.items()):
            capped = min(waiting.deadline, now + compat.STOP_LINGER)
            self._waiting[conn] = waiting._replace(deadline=capped)

    def _release(self, conn: Any) -> None:
        """The event loop stops watching ``conn`` (registered for reading or sending, or not)."""
        self._waiting.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            compat.poller(self).unregister(conn.sock)

    def _close(self, conn: Any) -> None:
        self._release(conn)
        compat.drop(self, conn)


def _refuse(sock: socket.socket, reason: str, answer: bytes, client: Any) -> None:
    """Answer a request the app never sees, and say so in the log and the metrics."""
    _send_now(sock, answer)
    metrics.count_http_refused(reason)
    _log.info("request refused before the app", client=_client(client), reason=reason)


def _send_now(sock: socket.socket, data: bytes) -> None:
    """Whatever of ``data`` the kernel takes without waiting; the rest is dropped."""
    with contextlib.suppress(OSError):
        sock.send(data, socket.MSG_DONTWAIT)


def _close_gently(sock: socket.socket) -> None:
    """FIN first, so a response in flight is not cut by a reset; never waits (event loop)."""
    try:
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(_READ_SIZE, socket.MSG_DONTWAIT):
            pass
    except OSError:
        pass


def _host(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


def _client(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
