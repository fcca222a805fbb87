"""TCP servers that misbehave on purpose, to force the drivers' error paths.

Each accepts connections on a spare loopback port and answers wrongly in one way:
- ``truncated-mysql``: a MySQL handshake packet cut short (PyMySQL raises ``struct.error`` or
  ``IndexError``, not a ``MySQLError``);
- ``garbage``: bytes that are no protocol at all, then close;
- ``close``: accept and close at once;
- ``redis-garbage``: read a command, answer with a line that is no RESP reply;
- ``cleartext-mysql``: a valid handshake, then an auth switch to ``mysql_clear_password``
  (what a server, or anyone answering on its address, does to read the password), then an
  error whose text is ``SERVER_TEXT``;
- ``error-mysql``: a valid handshake, then an error whose text is ``SERVER_TEXT``;
- ``redis-error``: answer every command with an error reply whose text is ``SERVER_TEXT``.

Every byte a connection sent is kept in ``received``, so a test can say what reached the server.

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

__all__ = ["MODES", "SERVER_TEXT", "MisbehavingServer"]

# What a hostile server answers: a marker, a terminal escape and a line break that would forge
# a log line; none of it may reach a process's output or a /readyz body.
SERVER_TEXT = 'SRV-SAYS-7f3a \x1b[2J\n{"level":"info","event":"forged"}'


def _truncated_handshake() -> bytes:
    """Protocol 10, a server version, then four bytes where the thread id and more belong."""
    payload = b"\x0a" + b"10.11.0-fake\x00" + b"\x01\x00"
    return struct.pack("<I", len(payload))[:3] + b"\x00" + payload


def _packet(sequence: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes((sequence,)) + payload


def _handshake() -> bytes:
    """Protocol 10 offering mysql_native_password, no TLS (PROTOCOL_41, SECURE_CONNECTION,
    PLUGIN_AUTH, PLUGIN_AUTH_LENENC_CLIENT_DATA, CONNECT_WITH_DB)."""
    capabilities = 0x1 | 0x8 | 0x200 | 0x2000 | 0x8000 | (1 << 17) | (1 << 19) | (1 << 21)
    payload = (
        b"\x0a10.11.0-fake\x00"
        + struct.pack("<I", 7)
        + b"abcdefgh\x00"
        + struct.pack("<H", capabilities & 0xFFFF)
        + b"\x2d"
        + struct.pack("<H", 2)
        + struct.pack("<H", capabilities >> 16)
        + b"\x15"
        + b"\x00" * 10
        + b"ijklmnopqrst\x00"
        + b"mysql_native_password\x00"
    )
    return _packet(0, payload)


def _error(sequence: int, code: int) -> bytes:
    return _packet(sequence, b"\xff" + struct.pack("<H", code) + b"#28000" + SERVER_TEXT.encode())


MODES = (
    *("truncated-mysql", "garbage", "close", "redis-garbage"),
    *("cleartext-mysql", "error-mysql", "redis-error"),
)


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
        self.received = bytearray()
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
            elif self.mode == "redis-error":
                reply = "-ERR " + SERVER_TEXT.replace("\n", " ") + "\r\n"
                while conn.recv(65536):
                    conn.sendall(reply.encode())
            elif self.mode in ("cleartext-mysql", "error-mysql"):
                self._fake_mysql(conn)

    def _fake_mysql(self, conn: socket.socket) -> None:
        conn.sendall(_handshake())
        self._receive(conn)  # the handshake response (user, scrambled password)
        if self.mode == "cleartext-mysql":
            conn.sendall(_packet(2, b"\xfemysql_clear_password\x00"))
            self._receive(conn)  # a client that complies sends the password here
            conn.sendall(_error(4, 1045))
        else:
            conn.sendall(_error(2, 1045))
        self._receive(conn)

    def _receive(self, conn: socket.socket) -> None:
        """One read (up to 2 s): whatever the client sent next, kept in ``received``."""
        conn.settimeout(2)
        with contextlib.suppress(OSError):
            self.received += conn.recv(65536)

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
