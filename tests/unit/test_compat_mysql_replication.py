"""mysql-replication's private names that service/compat/mysql_replication.py uses, checked on the
installed release: an upgrade that renames or reshapes one fails here (pyproject holds it to the
tested minor version)."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from types import SimpleNamespace

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent
from pymysqlreplication.table import Table

from service.compat import mysql_replication as compat

SETTINGS = {"host": "127.0.0.1", "port": 1, "user": "nobody", "password": ""}


def test_the_installed_release_is_the_tested_minor_version() -> None:
    version = importlib.metadata.version("mysql-replication")
    assert version.startswith(compat.TESTED_VERSION + ".")


def test_the_readers_checksum_flag_and_table_map_exist_before_it_connects() -> None:
    reader = BinLogStreamReader(connection_settings=SETTINGS, server_id=99, enable_logging=False)
    assert "_BinLogStreamReader__use_checksum" in vars(reader)
    assert compat.uses_checksum(reader) is False
    setattr(reader, "_BinLogStreamReader__use_checksum", True)  # noqa: B010 - the mangled name
    assert compat.uses_checksum(reader) is True
    assert compat.table_map(reader) == {}
    assert compat.stream_connection(reader) is None  # not connected yet


def test_the_reader_sets_what_the_accessors_read_when_it_connects() -> None:
    source = inspect.getsource(BinLogStreamReader)
    assert "self._stream_connection = self.pymysql_wrapper(" in source
    assert "self.__use_checksum = self.__checksum_enabled()" in source
    assert "self.table_map[binlog_event.event.table_id]" in source


def test_rows_events_keep_their_bitmaps_and_packet_where_the_accessors_look() -> None:
    for kind in (WriteRowsEvent, DeleteRowsEvent):
        assert "self.columns_present_bitmap = " in inspect.getsource(kind.__init__)
    update = inspect.getsource(UpdateRowsEvent.__init__)
    assert "self.columns_present_bitmap = " in update
    assert "self.columns_present_bitmap2 = " in update
    payload = b"row images"
    packet = SimpleNamespace(read_bytes=4, read=lambda size: payload[:size])
    event = SimpleNamespace(packet=packet, event_size=4 + len(payload))
    assert compat.rows_payload(event) == payload
    bitmaps = SimpleNamespace(columns_present_bitmap=b"\x03")
    assert compat.present_columns(bitmaps) == (b"\x03", None)


def test_a_table_maps_primary_key_in_each_shape_the_library_keeps() -> None:
    assert compat.primary_key(Table(1, "shop", "orders", [], primary_key="id")) == ("id",)
    both = Table(1, "shop", "lines", [], primary_key=("order_id", "line"))
    assert compat.primary_key(both) == ("order_id", "line")
    assert compat.primary_key(Table(1, "shop", "log", [], primary_key="")) == ()


def test_a_gtid_dump_starts_from_auto_position_and_reconnects_from_it() -> None:
    """The reader dumps after ``auto_position`` (MariaDB: @slave_connect_state with strict
    mode; MySQL: COM_BINLOG_DUMP_GTID), reading the attribute at each (re)connection, so
    moving it forward makes the library's silent reconnects resume from there."""
    arguments = compat.gtid_dump("mariadb", "0-1-5")
    assert arguments == {"is_mariadb": True, "auto_position": "0-1-5"}
    assert compat.gtid_dump("mysql", "u:1-5")["is_mariadb"] is False
    reader = BinLogStreamReader(connection_settings=SETTINGS, server_id=99, **arguments)
    compat.resume_after(reader, "0-1-9")
    assert reader.auto_position == "0-1-9"
    source = inspect.getsource(BinLogStreamReader)
    assert 'cur.execute("SET @slave_connect_state = %s", (self.auto_position,))' in source
    assert 'cur.execute("SET @slave_gtid_strict_mode=1")' in source
    assert "gtid_set = GtidSet(self.auto_position)" in source
    assert "self.__connect_to_stream()" in inspect.getsource(BinLogStreamReader.fetchone)


def test_an_events_header_server_id_is_where_the_accessor_looks() -> None:
    event = SimpleNamespace(packet=SimpleNamespace(server_id=7))
    assert compat.event_server_id(event) == 7
    assert "self.server_id = unpack[3]" in inspect.getsource(
        importlib.import_module("pymysqlreplication.packet").BinLogPacketWrapper.__init__
    )
