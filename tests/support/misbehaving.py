"""TCP servers that misbehave on purpose, to force the drivers' error paths.

Each accepts connections on a spare loopback port and answers wrongly in one way:
- ``truncated-mysql``: a MySQL handshake packet cut short (PyMySQL raises ``struct.error`` or
  ``IndexError``, not a ``MySQLError``);
- ``garbage``: bytes that are no protocol at all, then close;
- ``close``: accept and close at once;
- ``redis-garbage``: read a command, answer with a line that is no RESP reply.

They run in a daemon thread of the test process (the service under test runs in its own
processes); ``close()`` stops the listener and every connection it holds.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType
from typing import Self

__all__ = ["MODES", "MisbehavingServer"]


def _truncated_handshake() -> bytes:
    """Protocol 10, a server version, then four bytes where the thread id and more belong."""
    payload = b"\x0a" + b"10.11.0-fake\x00" + b"\x01\x00"
    return struct.pack("<I", len(payload))[:3] + b"\x00" + payload


MODES = ("truncated-mysql", "garbage", "close", "redis-garbage")


class MisbehavingServer:
    """One listener on 127.0.0.1 answering every connection in ``mode``'s wrong way."""

    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        self.mode = mode
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = int(self._listener.getsockname()[1])
        self.connections = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"fake-{mode}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5)
            if self.mode == "truncated-mysql":
                conn.sendall(_truncated_handshake())
                conn.recv(4096)
            elif self.mode == "garbage":
                conn.sendall(b"\xff\xfe garbage \x00\x01\x02 not a protocol\r\n" * 4)
            elif self.mode == "redis-garbage":
                while conn.recv(65536):
                    conn.sendall(b"!nonsense\x00\xff\r\n")

    @property
    def mysql_url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
