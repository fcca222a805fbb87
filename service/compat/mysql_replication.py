"""mysql-replication's (``pymysqlreplication``) private names, in one place: the reader's
name-mangled checksum flag, its table map and stream connection, a parsed rows event's unread
payload and present-column bitmaps, a table map's primary key.

Tested against mysql-replication 1.0.17 (tests/unit/test_compat_mysql_replication.py asserts each
name and behaviour used here, so an upgrade that moves one fails there, not in production).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymysqlreplication import BinLogStreamReader

TESTED_VERSION = "1.0"
_CHECKSUM_FLAG = "_BinLogStreamReader__use_checksum"  # set by the reader once it connected


def uses_checksum(reader: BinLogStreamReader) -> bool:
    """Whether the server appends a CRC32 to every event (the reader asked it on connecting)."""
    return bool(getattr(reader, _CHECKSUM_FLAG, False))


def table_map(reader: BinLogStreamReader) -> Mapping[int, Any]:
    """The reader's table maps by table id (only the watched tables', with ``only_tables``)."""
    tables: Mapping[int, Any] = reader.table_map
    return tables


def stream_connection(reader: BinLogStreamReader) -> Any:
    """The connection the binlog is streamed on (None before the reader connected)."""
    return getattr(reader, "_stream_connection", None)


def gtid_dump(flavor: str, state: str) -> dict[str, Any]:
    """The reader's arguments for a dump that starts after the GTID state ``state`` instead of
    at a file and offset: MariaDB's (``@slave_connect_state``, with ``@slave_gtid_strict_mode=1``
    the server refuses with error 1236 a GTID its binlog does not hold) or MySQL's
    COM_BINLOG_DUMP_GTID (``auto_position`` as a GTID set)."""
    return {"is_mariadb": flavor == "mariadb", "auto_position": state}


def resume_after(reader: BinLogStreamReader, state: str) -> None:
    """Move a GTID dump's start to ``state``: the library reconnects by itself after errors
    2006/2013 from its ``auto_position``, which would otherwise stay the first one and replay
    (and move the follower's GTID state back) everything since."""
    reader.auto_position = state


def event_server_id(event: Any) -> int:
    """The server_id in an event's header (the fake rotate of a dump's start carries the
    serving server's own)."""
    return int(event.packet.server_id)


def rows_payload(event: Any) -> bytes:
    """A rows event the library parsed up to its row images: the images' bytes, consumed."""
    return bytes(event.packet.read(event.event_size - event.packet.read_bytes))


def present_columns(event: Any) -> tuple[bytes, bytes | None]:
    """A rows event's present-column bitmaps: the (before) image's, and an update's after's."""
    return event.columns_present_bitmap, getattr(event, "columns_present_bitmap2", None)


def primary_key(table: Any) -> tuple[str, ...]:
    """A table map's primary key columns (the library keeps a str for one, a list for more)."""
    key = table.data["primary_key"]
    if isinstance(key, str):
        return (key,) if key else ()
    return tuple(str(column) for column in key or ())
