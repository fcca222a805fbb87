"""PyMySQL's private names that service/compat/pymysql.py uses, checked on the installed release:
an upgrade that renames or reshapes one fails here (pyproject holds PyMySQL to the tested minor)."""

from __future__ import annotations

import importlib.metadata
import inspect
from typing import Any

from pymysql.connections import Connection
from pymysql.protocol import MysqlPacket

from service.compat import pymysql as compat


def test_the_installed_pymysql_is_the_tested_minor_version() -> None:
    # pymysql.__version__ imitates mysqlclient's; the distribution's version is PyMySQL's own.
    assert importlib.metadata.version("PyMySQL").startswith(compat.TESTED_VERSION + ".")


def test_the_private_hooks_have_the_signatures_overridden() -> None:
    auth = inspect.signature(Connection._process_auth)
    assert list(auth.parameters) == ["self", "plugin_name", "auth_packet", "handler"]
    assert auth.parameters["handler"].default is None
    read = inspect.signature(Connection._read_packet)
    assert list(read.parameters) == ["self", "packet_type"]
    assert read.parameters["packet_type"].default is MysqlPacket


def test_pymysql_calls_the_hooks_by_their_private_names() -> None:
    """The hooks only work while PyMySQL itself goes through these names."""
    assert "self._process_auth(" in inspect.getsource(Connection._request_authentication)
    assert "self._read_packet(" in inspect.getsource(Connection._request_authentication)
    assert "self._read_packet(" in inspect.getsource(Connection._get_server_information)
    assert "self._secure = True" in inspect.getsource(Connection._request_authentication)


def test_the_public_hooks_are_what_the_private_names_reach() -> None:
    calls: list[tuple[Any, ...]] = []

    class Recording(compat.HookedConnection):
        def process_auth(self, plugin_name: Any, auth_packet: Any, handler: Any = None) -> Any:
            calls.append(("auth", plugin_name, auth_packet, handler))
            return "authed"

        def read_packet(self, packet_type: Any = MysqlPacket) -> Any:
            calls.append(("read", packet_type))
            return "packet"

    connection = Recording(defer_connect=True)
    assert connection._process_auth(b"dialog", b"x") == "authed"
    assert connection._read_packet() == "packet"
    assert calls == [("auth", b"dialog", b"x", None), ("read", MysqlPacket)]
    assert Connection._secure is False
    assert connection.uses_tls is False
    connection._secure = True
    assert connection.uses_tls is True


def test_socket_timeouts_are_the_attributes_pymysql_reads_and_are_restored() -> None:
    connection = Connection(defer_connect=True, read_timeout=3, write_timeout=4)
    assert (connection._read_timeout, connection._write_timeout) == (3, 4)
    source = inspect.getsource(Connection._read_packet) + inspect.getsource(Connection._write_bytes)
    assert "self._read_timeout" in source
    assert "self._write_timeout" in source
    with compat.socket_timeouts(connection, 0.1):
        assert (connection._read_timeout, connection._write_timeout) == (0.1, 0.1)
    assert (connection._read_timeout, connection._write_timeout) == (3, 4)


def test_a_packets_bytes_are_its_whole_payload() -> None:
    payload = b"\x00\x01binlog event bytes"
    packet = MysqlPacket(payload, "utf8")
    packet.read(3)  # reading does not move what packet_bytes returns
    assert compat.packet_bytes(packet) == payload
