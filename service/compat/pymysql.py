"""PyMySQL's private names, in one place: the authentication hook, the packet reader, the TLS
flag, the socket timeouts and a packet's bytes.

Tested against PyMySQL 1.2.4 (tests/unit/test_compat_pymysql.py asserts each name, signature and
behaviour used here, so an upgrade that moves one fails there, not in production).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pymysql
from pymysql.protocol import MysqlPacket

TESTED_VERSION = "1.2"


class HookedConnection(pymysql.connections.Connection):  # type: ignore[type-arg, unused-ignore]
    """PyMySQL's connection with its two private hooks given public names: a subclass overrides
    ``process_auth`` (a server's request for an authentication method) and ``read_packet``
    (every packet read), and calls ``super()`` for PyMySQL's own behaviour."""

    def _process_auth(self, plugin_name: Any, auth_packet: Any, handler: Any = None) -> Any:
        return self.process_auth(plugin_name, auth_packet, handler)

    def process_auth(self, plugin_name: Any, auth_packet: Any, handler: Any = None) -> Any:
        process = super()._process_auth  # type: ignore[misc]  # PyMySQL's private, untyped
        return process(plugin_name, auth_packet, handler)

    def _read_packet(self, packet_type: Any = MysqlPacket) -> Any:
        return self.read_packet(packet_type)

    def read_packet(self, packet_type: Any = MysqlPacket) -> Any:
        return super()._read_packet(packet_type)  # type: ignore[no-untyped-call]

    @property
    def uses_tls(self) -> bool:
        """True once the connection switched to TLS (PyMySQL's ``_secure``)."""
        return bool(getattr(self, "_secure", False))


@contextmanager
def socket_timeouts(connection: Any, seconds: float) -> Iterator[None]:
    """``connection``'s read and write timeouts set to ``seconds`` for a block: PyMySQL has no
    per-call timeout; these are the attributes its socket reads and writes use."""
    saved = connection._read_timeout, connection._write_timeout
    connection._read_timeout = connection._write_timeout = seconds
    try:
        yield
    finally:
        connection._read_timeout, connection._write_timeout = saved


def packet_bytes(packet: Any) -> bytes:
    """A packet's whole payload, as read from the socket (``MysqlPacket._data``)."""
    data: bytes = packet._data
    return data
