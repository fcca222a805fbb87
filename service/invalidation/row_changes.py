"""Rows events to `RowChange`s: the key columns of a watched table's rows, read from the bytes
(``rows``), whether the library parsed the event's header or the packet never became an event.

With triggers writing a second table every row is an event of its own, and the library's
per-event work (about 30-50 us) was most of the cost of a bulk write: once the stream is armed,
``StreamConnection`` hands every rows event to ``RowsSink`` before the library sees it; a watched
table's rows are translated straight from the packet, other tables' are dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import UpdateRowsEvent, WriteRowsEvent

from service.compat import mysql_replication
from service.compat.pymysql import packet_bytes
from service.invalidation.changes import RowChange
from service.invalidation.rows import (
    ROWS_EVENTS,
    UPDATE_ROWS,
    WRITE_ROWS,
    RowLayout,
    UnreadableRows,
    raw_rows,
    read_keys,
    read_rows,
)
from service.orders.database import GuardedConnection

log = logging.getLogger("service.invalidation.follower")  # the follower's log, as before
_MAX_LAYOUTS = 1000
Rows = Iterable[tuple[tuple[int, ...], ...]]


class RowTranslator:
    """Rows events of the watched tables to changes; ``tables`` maps each to the columns to
    read (None: its primary key). A table it cannot read is a reset of that table."""

    def __init__(self, tables: Mapping[str, tuple[str, ...] | None] | None) -> None:
        self._tables = dict(tables) if tables is not None else None
        self._layouts: dict[
            tuple[int, int], tuple[RowLayout, tuple[str, ...]] | UnreadableRows
        ] = {}
        self.unreadable = 0

    def from_event(self, event: Any) -> list[RowChange]:
        """The changes of a rows event the library parsed up to its row images."""
        kind = "update" if isinstance(event, UpdateRowsEvent) else "delete"
        kind = "insert" if isinstance(event, WriteRowsEvent) else kind
        table = event.table_map[event.table_id]
        try:
            layout, columns = self._layout_of(event.table_id, table)
            rows = read_keys(event, layout)
        except UnreadableRows as exc:
            return self._reset(table, exc)
        return _changes(kind, table, columns, rows)

    def from_packet(self, data: bytes, table: Any, checksum: bool) -> list[RowChange]:
        """The changes of a rows event read straight from its packet (``RowsSink``)."""
        try:
            raw = raw_rows(data, 1, checksum)
            layout, columns = self._layout_of(raw.table_id, table)
            rows = read_rows(data, raw.start, raw.end, layout, first=raw.first, second=raw.second)
        except (UnreadableRows, IndexError) as exc:
            return self._reset(table, exc)
        kind = "update" if raw.kind in UPDATE_ROWS else "delete"
        kind = "insert" if raw.kind in WRITE_ROWS else kind
        return _changes(kind, table, columns, rows)

    def _reset(self, table: Any, exc: Exception) -> list[RowChange]:
        self.unreadable += 1
        schema, name = str(table.schema), str(table.table)
        log.warning("unreadable rows in %s.%s (%s): the table is reset", schema, name, exc)
        return [RowChange("reset", schema, name)]

    def _columns_of(self, table: Any) -> tuple[str, ...]:
        named = self._tables.get(str(table.table)) if self._tables is not None else None
        return named or mysql_replication.primary_key(table)

    def _layout_of(self, table_id: int, table: Any) -> tuple[RowLayout, tuple[str, ...]]:
        """The table's row layout and key columns, built once per table map (ids change on
        ALTER, and the library builds a new map object then)."""
        key = (table_id, id(table))
        cached = self._layouts.get(key)
        if cached is None:
            columns = self._columns_of(table)
            try:
                if not columns:
                    raise UnreadableRows("the table has no primary key")
                cached = (RowLayout.of(table.columns, columns), columns)
            except UnreadableRows as exc:
                cached = exc
            if len(self._layouts) > _MAX_LAYOUTS:
                self._layouts.clear()
            self._layouts[key] = cached
        if isinstance(cached, UnreadableRows):
            raise cached
        return cached


def _changes(kind: str, table: Any, columns: tuple[str, ...], rows: Rows) -> list[RowChange]:
    """One change per row: an update's before and after keys, an insert's after, a delete's
    before."""
    schema, name = str(table.schema), str(table.table)
    if kind == "update":
        return RowChange.rows("update", schema, name, columns, rows)  # type: ignore[arg-type]
    if kind == "insert":
        return RowChange.rows("insert", schema, name, columns, ((None, r[0]) for r in rows))
    return RowChange.rows("delete", schema, name, columns, ((r[0], None) for r in rows))


class RowsSink:
    """Rows events taken from the stream, in order, until the follower collects them."""

    def __init__(
        self, translator: RowTranslator, reader: BinLogStreamReader, chunk_rows: int
    ) -> None:
        self._translator = translator
        self._reader = reader
        self._chunk_rows = chunk_rows
        self.changes: list[RowChange] = []

    def absorb(self, packet: Any) -> bool:
        data = packet_bytes(packet)
        if len(data) < 28 or data[0] != 0 or data[5] not in ROWS_EVENTS:
            return False
        if int.from_bytes(data[10:14], "little") != len(data) - 1:
            return False  # not exactly one binlog event: leave it to the library
        if len(self.changes) >= self._chunk_rows:
            return False  # a full chunk: the library returns this event, the follower collects
        table = mysql_replication.table_map(self._reader).get(int.from_bytes(data[20:26], "little"))
        if table is None:
            return True  # a table nobody watches (its table map was filtered): dropped
        checksum = mysql_replication.uses_checksum(self._reader)
        self.changes.extend(self._translator.from_packet(data, table, checksum))
        return True

    def take(self) -> list[RowChange]:
        taken, self.changes = self.changes, []
        return taken


class StreamConnection(GuardedConnection):
    """The binlog stream's connection. Once armed (streaming), rows events are taken out of the
    packet stream here: they go to ``sink``; the library builds event objects only for the
    rest."""

    sink: RowsSink | None = None
    armed = False

    def read_packet(self, *packet_type: Any) -> Any:
        while True:
            packet = super().read_packet(*packet_type)
            if not self.armed or self.sink is None or not self.sink.absorb(packet):
                return packet
