"""gunicorn's gthread worker with a deadline per request, so slow clients cannot hold its threads.

gthread waits for a new connection's first byte without a thread (it defers the connection back to
its poller after five seconds), but once a byte has arrived, a thread reads the rest of the headers
and the body with blocking ``recv`` calls and no timeout: a client sending one header byte per
second holds that thread for as long as it likes, and ``ORDERS_THREADS`` such clients stall a worker
for good (reproduced with a 1x2 server and two half-sent requests). Here each request a thread
starts on gets ``ORDERS_CLIENT_TIMEOUT`` seconds to arrive in full; past that the socket reads as
closed, gunicorn drops the connection as a premature disconnect, and one log line says why. Sends
get the same bound, so a client that never reads its response cannot hold a thread either.

The common case costs one clock read per call: a read or send that can complete at once is done
with ``MSG_DONTWAIT`` and the socket's timeout is touched only when the call would block.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from service.observability.logging import get_logger

_log = get_logger("service.http")


class DeadlineSocket(socket.socket):
    """A client socket whose blocking reads and sends end at ``deadline`` (monotonic seconds)."""

    __slots__ = ("deadline", "expired", "send_timeout")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline: float | None = None
        self.expired = False
        self.send_timeout = 10.0

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self.deadline is None or self.gettimeout() == 0.0:
            return super().recv(bufsize, flags)
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:  # checked first: a fast trickle always has a byte ready
            return self._expire()
        try:
            return super().recv(bufsize, flags | socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        previous = self.gettimeout()
        self.settimeout(remaining)
        try:
            return super().recv(bufsize, flags)
        except TimeoutError:
            return self._expire()
        finally:
            self.settimeout(previous)

    def sendall(self, data: Any, flags: int = 0) -> None:
        if self.deadline is None or self.gettimeout() == 0.0:
            super().sendall(data, flags)
            return
        try:
            sent = super().send(data, flags | socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        previous = self.gettimeout()
        self.settimeout(self.send_timeout)
        try:
            super().sendall(memoryview(data).cast("B")[sent:], flags)
        except TimeoutError:
            self.expired = True
            raise BrokenPipeError("the client took too long to read its response") from None
        finally:
            self.settimeout(previous)

    def _expire(self) -> bytes:
        """An end-of-stream to the parser: gunicorn then closes the connection quietly."""
        self.expired = True
        return b""


def _deadline_socket(sock: socket.socket) -> DeadlineSocket:
    """The accepted socket as a ``DeadlineSocket`` (same file descriptor, same state)."""
    timeout = sock.gettimeout()
    wrapped = DeadlineSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    wrapped.settimeout(timeout)
    return wrapped


class _DeadlineListener:
    """A listening socket whose ``accept`` hands out ``DeadlineSocket`` clients."""

    def __init__(self, listener: Any) -> None:
        self._listener = listener

    def accept(self) -> tuple[DeadlineSocket, Any]:
        client, address = self._listener.accept()
        return _deadline_socket(client), address

    def __getattr__(self, name: str) -> Any:
        return getattr(self._listener, name)


class DeadlineThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread with ``ORDERS_CLIENT_TIMEOUT`` seconds per request (headers, body, response)."""

    client_timeout = 10.0

    def accept(self, listener: Any) -> None:
        super().accept(_DeadlineListener(listener))

    def handle(self, conn: Any) -> Any:
        sock = conn.sock
        if isinstance(sock, DeadlineSocket):
            sock.deadline = time.monotonic() + self.client_timeout
            sock.send_timeout = self.client_timeout
            sock.expired = False
        result = super().handle(conn)
        if isinstance(sock, DeadlineSocket) and sock.expired:
            _log.info(
                "client too slow; connection closed",
                client=_client(conn.client),
                timeout_s=self.client_timeout,
            )
            return False
        return result


def _client(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
