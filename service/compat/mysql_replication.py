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
