"""Follow one MySQL/MariaDB server's binary log and hand out committed row changes, per transaction.

A thin, typed layer over the `mysql-replication` package (import name `pymysqlreplication`): it
turns the library's event stream into one `ChangeBatch` per committed transaction (large ones in
chunks), carrying the keys each row had before and after, and the binlog position to resume
from. Storing that position (after the caller's invalidation succeeded) is the caller's job.
What the server must provide: see `service.invalidation.mysql_source`. The follower's server_id must
differ from the server's and between two followers of one server (the server drops the older
connection of a pair).

Only the watched tables' rows are read, and only their key columns (`rows.read_keys`): other
tables' row events are dropped by the library before any decoding (only_tables/only_schemas), so
bytes Python's codecs reject can never stop the stream. An event that cannot be read at all is a
reset of everything at the next boundary, never a stall.

Guarantees: a transaction's last batch is handed out only after its commit event (XID, or COMMIT
for non-transactional engines) was read; rolled-back transactions never reach the binlog, so
they never appear (an XA transaction's rows, logged at XA PREPARE, may be handed out and later
rolled back: invalidating them is merely wasted). A position handed out is always a transaction
boundary: a chunk of a transaction still being read carries the position before it. After a lost
connection the follower reconnects by itself from the last boundary it handed out, dropping any
half-read transaction, so nothing is skipped; a change may be handed out twice after a restart,
never zero times.

Traps of mysql-replication 1.0.x that this module steps around (see its issue tracker):
- `is_mariadb=True` ignores log_file/log_pos and streams from the oldest binlog file; the
  MySQL-style dump by file and position works on MariaDB, so it is used for both.
- Without `resume_stream=True` a given log_pos is ignored and the stream restarts at offset 4
  of log_file (issues #300, #618).
- `HeartbeatLogEvent` must be in `only_events`, or heartbeats are swallowed inside `fetchone()`
  and a blocked read never returns to the caller (no way to notice a stop request).
- The library silently reconnects after errors 2006/2013 and resumes at the last *event*, not
  transaction; this module counts those reconnects and resumes by itself only from boundaries.
- `SHOW MASTER STATUS` is gone in MySQL 8.4; the library falls back from `SHOW BINARY LOG
  STATUS` on a parse error, this module picks the statement from the server version.
- It passes `db=` to PyMySQL (DeprecationWarning) and logs all its arguments at INFO unless
  `enable_logging=False`; `freeze_schema=True` would keep column lists stale after ALTER TABLE.
- MariaDB sends no BEGIN: a transaction starts at its GTID event (flag STANDALONE marks DDL).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from types import TracebackType
from typing import Any, Final, Self

import pymysql
from pymysql.protocol import MysqlPacket
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XAPrepareEvent,
    XidEvent,
)
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from service.invalidation.changes import BinlogPosition, ChangeBatch, RowChange, merge_gtid
from service.invalidation.mysql_source import (
    PositionUnavailable,
    ServerInfo,
    ServerNotSuitable,
    SourceAddress,
    check_server,
    current_position,
    tls_options,
)
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
from service.invalidation.statements import SAVEPOINT, TX_CONTROL, TX_END, statement_changes
from service.orders.database import GuardedConnection

__all__ = ["BinlogFollower"]

log = logging.getLogger(__name__)

# Server errors after which retrying cannot help: the position is gone, or the user lacks rights.
_FATAL_ERRORS: Final = frozenset({1236, 1044, 1045, 1227, 1142, 1064})
_MARIADB_FL_STANDALONE: Final = 0x01  # GTID event of a single statement (DDL) with no COMMIT
_CONNECTION_ERRORS: Final = (
    pymysql.err.OperationalError,
    pymysql.err.InternalError,
    pymysql.err.InterfaceError,
    OSError,
    EOFError,
)
_RESET_ALL: Final = RowChange("reset", None, None)
_UNREADABLE: Final = object()

_EVENTS: Final = [
    QueryEvent,
    XidEvent,
    XAPrepareEvent,
    GtidEvent,
    MariadbGtidEvent,
    RotateEvent,
    HeartbeatLogEvent,  # without it the library swallows heartbeats and a stop waits forever
    WriteRowsEvent,
    UpdateRowsEvent,  # PartialUpdateRowsEvent (MySQL partial JSON) is a subclass, hence included
    DeleteRowsEvent,
]

RowsEvent = Any  # WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent (the library is untyped)


class _StreamConnection(GuardedConnection):
    """The binlog stream's connection. Once armed (streaming), rows events are taken out of the
    packet stream here: a watched table's go to ``sink`` (read straight from the packet's bytes),
    other tables' are dropped; the library builds event objects only for the rest. With triggers
    writing a second table, every row is an event of its own, and the library's per-event work
    (about 30-50 us) was most of the cost of a bulk write."""

    sink: _RowsSink | None = None
    armed = False

    def _read_packet(self, packet_type: Any = MysqlPacket) -> Any:
        while True:
            packet = super()._read_packet(packet_type)
            if not self.armed or self.sink is None or not self.sink.absorb(packet):
                return packet


class _RowsSink:
    """Rows events taken from the stream, in order, until the follower collects them."""

    def __init__(self, follower: BinlogFollower, reader: BinLogStreamReader) -> None:
        self._follower = follower
        self._reader = reader
        self.changes: list[RowChange] = []
        self.next_position = 0

    def absorb(self, packet: Any) -> bool:
        data: bytes = packet._data
        if len(data) < 28 or data[0] != 0 or data[5] not in ROWS_EVENTS:
            return False
        if int.from_bytes(data[10:14], "little") != len(data) - 1:
            return False  # not exactly one binlog event: leave it to the library
        if len(self.changes) >= self._follower.chunk_rows:
            return False  # a full chunk: the library returns this event, the follower collects
        table = self._reader.table_map.get(int.from_bytes(data[20:26], "little"))
        if table is None:
            return True  # a table nobody watches (its table map was filtered): dropped
        checksum = bool(getattr(self._reader, "_BinLogStreamReader__use_checksum", False))
        self.changes.extend(self._follower.raw_changes(data, table, checksum))
        self.next_position = int.from_bytes(data[14:18], "little")
        return True

    def take(self) -> list[RowChange]:
        taken, self.changes = self.changes, []
        return taken


class _Group:
    """The transaction being read: its changes not yet handed out."""

    def __init__(self) -> None:
        self.changes: list[RowChange] = []
        self.explicit = False  # inside BEGIN (MySQL) or a non-standalone MariaDB GTID group
        self.gtid: str | None = None

    def add(self, changes: list[RowChange]) -> None:
        self.changes.extend(changes)

    def take(self, limit: int | None = None) -> list[RowChange]:
        """Hand out (and forget) the first ``limit`` changes, or all of them."""
        if limit is None or limit >= len(self.changes):
            taken, self.changes = self.changes, []
        else:
            taken, self.changes = self.changes[:limit], self.changes[limit:]
        return taken


class BinlogFollower:
    """Yields `ChangeBatch`es of committed transactions, from `start` (or from now) on.

    Blocking: iteration waits for new commits. The server sends a heartbeat every
    `heartbeat_seconds` while idle; each is yielded as an idle batch, so the loop can record
    progress and lag, and `stop()` (from any thread) ends the iteration within about one
    heartbeat. Lost connections are retried with capped backoff from the last position handed
    out; `PositionUnavailable`, `ServerNotSuitable` and access errors are raised.

    `tables` maps each watched table to the columns to read from its rows (None: its primary
    key); rows of other tables are never decoded. A transaction with more than `chunk_rows`
    changes is handed out in chunks (``partial=True``) as it is read.
    """

    def __init__(
        self,
        source: SourceAddress,
        *,
        server_id: int,
        start: BinlogPosition | None = None,
        schemas: Collection[str] | None = None,
        tables: Mapping[str, tuple[str, ...] | None] | None = None,
        heartbeat_seconds: float = 1.0,
        connect_timeout: float = 5.0,
        max_backoff_seconds: float = 5.0,
        chunk_rows: int = 5_000,
        verify_checksum: bool = False,
    ) -> None:
        if server_id <= 0:
            raise ValueError("server_id must be a positive number unique among the replicas")
        self._source = source
        self._server_id = server_id
        self._start = start
        self._schemas = frozenset(schemas) if schemas is not None else None
        self._tables = dict(tables) if tables is not None else None
        self._heartbeat = heartbeat_seconds
        self._connect_timeout = connect_timeout
        self._max_backoff = max_backoff_seconds
        self.chunk_rows = chunk_rows
        self._sink: _RowsSink | None = None
        self._verify_checksum = verify_checksum
        self._stopping = threading.Event()
        self._reader: BinLogStreamReader | None = None
        self._position: BinlogPosition | None = start
        self._gtid_state = start.gtid if start is not None else ""
        self._last_commit_at: float | None = None
        self._caught_up = False
        self._layouts: dict[
            tuple[int, int], tuple[RowLayout, tuple[str, ...]] | UnreadableRows
        ] = {}
        self.server: ServerInfo | None = None
        self._stream_connections = 0
        self.last_error: BaseException | None = None
        self.unreadable_events = 0
        self.last_event_at = time.monotonic()

    # ---- public ----------------------------------------------------------------------------
    @property
    def position(self) -> BinlogPosition | None:
        """The last position handed out (a transaction boundary), or the start position."""
        return self._position

    def lag_seconds(self) -> float:
        """How far behind the server's clock the last commit handed out was (0 when idle)."""
        if self._caught_up or self._last_commit_at is None:
            return 0.0
        return max(0.0, time.time() - self._last_commit_at)

    def stop(self) -> None:
        """Ask the iteration to end (thread-safe); it returns within about one heartbeat."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def __iter__(self) -> Iterator[ChangeBatch]:
        return self.batches()

    def batches(self) -> Iterator[ChangeBatch]:
        """The stream of batches; ends after `stop()`. Closes its connections when it ends."""
        self.server = check_server(self._source, timeout=self._connect_timeout)
        if self.server.server_id == self._server_id:
            raise ServerNotSuitable(
                f"server_id {self._server_id} is the server's own; give the follower another"
            )
        if self._position is None:
            self._position = current_position(self._source, timeout=self._connect_timeout)
            self._gtid_state = self._position.gtid
        backoff = 0.1
        try:
            while not self._stopping.is_set():
                try:
                    for batch in self._read_from(self._position):
                        backoff = 0.1
                        if not batch.partial:
                            self._position = batch.position
                        if batch.committed_at is not None:
                            self._last_commit_at = batch.committed_at
                        yield batch
                        if self._stopping.is_set():
                            return
                except (pymysql.err.OperationalError, pymysql.err.InternalError) as exc:
                    self._raise_if_fatal(exc)
                    self._lost(exc)
                except (pymysql.err.InterfaceError, OSError, EOFError) as exc:
                    self._lost(exc)
                finally:
                    self._close_reader()
                if self._stopping.is_set():
                    return
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
        finally:
            self._close_reader()

    def close(self) -> None:
        self.stop()
        self._close_reader()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- internals --------------------------------------------------------------------------
    def _raise_if_fatal(self, exc: pymysql.err.MySQLError) -> None:
        code = exc.args[0] if exc.args else None
        if code == 1236:
            raise PositionUnavailable(f"cannot resume at {self._position}: {exc.args[-1]}") from exc
        if code in _FATAL_ERRORS:
            raise exc

    def _library_connect(self, **settings: Any) -> pymysql.connections.Connection[Any]:
        """How the library opens connections: counts stream (re)connections, including the ones
        it makes by itself after a lost connection, and drops the deprecated `db=`/`passwd=` it
        passes (PyMySQL warns; `filterwarnings = error` turns that into a failure)."""
        if "db" in settings:
            settings["database"] = settings.pop("db")
        if "passwd" in settings:
            settings["password"] = settings.pop("passwd")
        tls = tls_options(self._source)
        if settings.get("database") == "information_schema":  # the ctl link
            return GuardedConnection(**settings, **tls)
        self._stream_connections += 1
        connection = _StreamConnection(**settings, **tls)
        connection.sink = self._sink
        return connection

    @property
    def reconnects(self) -> int:
        """Stream connections opened after the first one (by this class or by the library)."""
        return max(0, self._stream_connections - 1)

    def _lost(self, exc: BaseException) -> None:
        self.last_error = exc
        self._caught_up = False
        log.warning("binlog connection lost (%s); resuming from %s", exc, self._position)

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception:  # a broken socket may fail to close; it is gone anyway
                log.debug("closing the binlog reader failed", exc_info=True)

    def _open(self, start: BinlogPosition) -> BinLogStreamReader:
        read_timeout = max(3.0, self._heartbeat * 3 + 1)
        self._reader = BinLogStreamReader(
            connection_settings={
                "host": self._source.host,
                "port": self._source.port,
                "user": self._source.user,
                "password": self._source.password,
                "connect_timeout": self._connect_timeout,
                "read_timeout": read_timeout,  # a silent server is noticed after this
                "write_timeout": self._connect_timeout,
                "charset": "utf8mb4",
            },
            server_id=self._server_id,
            # The MySQL-style dump by file and position also works on MariaDB. is_mariadb=True
            # would ignore log_file/log_pos and replay from the oldest binlog file.
            is_mariadb=False,
            log_file=start.log_file,
            log_pos=start.log_pos,
            resume_stream=True,  # without it the stream restarts at offset 4 of log_file
            blocking=True,
            slave_heartbeat=self._heartbeat,
            only_events=_EVENTS,
            only_schemas=sorted(self._schemas) if self._schemas is not None else None,
            # Other tables' table maps and row events are dropped unparsed.
            only_tables=sorted(self._tables) if self._tables is not None else None,
            freeze_schema=False,  # True keeps stale column lists after ALTER TABLE
            verify_checksum=self._verify_checksum,
            enable_logging=False,  # it logs every constructor argument at INFO otherwise
            pymysql_wrapper=self._library_connect,
        )
        self._sink = _RowsSink(self, self._reader)
        return self._reader

    def _next_event(self, reader: BinLogStreamReader) -> Any:
        """The next event; `_UNREADABLE` when the library could not parse one (it was already
        consumed from the socket: the stream goes on after it)."""
        try:
            event = reader.fetchone()
        except _CONNECTION_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - any parse failure: reset, never a stall
            self.unreadable_events += 1
            self.last_error = exc
            log.warning("unreadable binlog event (%r); everything will be invalidated", exc)
            return _UNREADABLE
        connection = getattr(reader, "_stream_connection", None)
        if isinstance(connection, _StreamConnection) and not connection.armed:
            connection.sink = self._sink
            connection.armed = True  # streaming now: no more query replies on this connection
        return event

    def _read_from(self, start: BinlogPosition) -> Iterator[ChangeBatch]:  # noqa: PLR0912, PLR0915 - one branch per event kind: the state machine reads best in one place
        reader = self._open(start)
        log_file = start.log_file
        group: _Group | None = None
        poisoned = False  # an event could not be read: reset everything at the next boundary
        while True:
            event = self._next_event(reader)
            self.last_event_at = time.monotonic()
            if self._sink is not None and self._sink.changes:
                taken = self._sink.take()
                if group is not None:  # else: resumed inside a transaction, not ours to report
                    group.add(taken)
                    while len(group.changes) >= self.chunk_rows:
                        chunk = group.take(self.chunk_rows)
                        yield ChangeBatch(self._position or start, chunk, partial=True)
            if event is None:  # the library closed the stream
                return
            if event is _UNREADABLE:
                poisoned = True
                continue
            if isinstance(event, RotateEvent):
                log_file = str(event.next_binlog)
                continue
            end = self._here(log_file, int(event.packet.log_pos))
            if isinstance(event, HeartbeatLogEvent):
                # Sent only while the server has nothing new, so never inside a transaction.
                # Its position is the server's end of log, past rotations and checkpoints.
                self._caught_up = True
                here = self._position or start
                if group is None and end.log_pos > 0 and end > here:
                    here = end
                if poisoned and group is None:
                    poisoned = False
                    yield ChangeBatch(here, [_RESET_ALL], time.time())
                else:
                    yield ChangeBatch(here)
                continue
            self._caught_up = False
            if isinstance(event, MariadbGtidEvent | GtidEvent):
                group = _Group()
                if isinstance(event, MariadbGtidEvent):
                    group.explicit = not (event.flags & _MARIADB_FL_STANDALONE)
                    group.gtid = str(event.gtid)
            elif isinstance(event, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
                if group is None:  # resumed inside a transaction: not ours to report
                    continue
                group.add(self._row_changes(event))
                while len(group.changes) >= self.chunk_rows:
                    chunk = group.take(self.chunk_rows)
                    yield ChangeBatch(self._position or start, chunk, partial=True)
            elif isinstance(event, XidEvent | XAPrepareEvent):
                if group is not None:
                    yield self._commit(group, end, float(event.timestamp), poisoned)
                    group, poisoned = None, False
            elif isinstance(event, QueryEvent):
                batch, group = self._on_query(event, group, end, poisoned)
                if batch is not None:
                    poisoned = False
                    yield batch

    def _here(self, log_file: str, log_pos: int) -> BinlogPosition:
        identity = self.server.identity if self.server is not None else ""
        return BinlogPosition(log_file, log_pos, identity, self._gtid_state)

    def _commit(
        self, group: _Group, end: BinlogPosition, committed_at: float, poisoned: bool
    ) -> ChangeBatch:
        if group.gtid is not None:
            self._gtid_state = merge_gtid(self._gtid_state, group.gtid)
            end = end.with_identity(end.server, self._gtid_state)
        changes = group.take()
        if poisoned:
            changes.append(_RESET_ALL)
        return ChangeBatch(end, changes, committed_at)

    def _row_changes(self, event: RowsEvent) -> list[RowChange]:
        schema, table = str(event.schema), str(event.table)
        try:
            layout, columns = self._layout(event)
            rows = read_keys(event, layout)
        except UnreadableRows as exc:
            self.unreadable_events += 1
            log.warning("unreadable rows in %s.%s (%s): the table is reset", schema, table, exc)
            return [RowChange("reset", schema, table)]
        if isinstance(event, UpdateRowsEvent):
            return RowChange.rows("update", schema, table, columns, rows)  # type: ignore[arg-type]
        if isinstance(event, WriteRowsEvent):
            return RowChange.rows("insert", schema, table, columns, ((None, r[0]) for r in rows))
        return RowChange.rows("delete", schema, table, columns, ((r[0], None) for r in rows))

    def raw_changes(self, data: bytes, table: Any, checksum: bool) -> list[RowChange]:
        """The changes of a rows event read straight from its packet (``_StreamConnection``)."""
        schema, name = str(table.schema), str(table.table)
        try:
            raw = raw_rows(data, 1, checksum)
            layout, columns = self._layout_of(raw.table_id, table)
            rows = read_rows(data, raw.start, raw.end, layout, first=raw.first, second=raw.second)
        except (UnreadableRows, IndexError) as exc:
            self.unreadable_events += 1
            log.warning("unreadable rows in %s.%s (%s): the table is reset", schema, name, exc)
            return [RowChange("reset", schema, name)]
        if raw.kind in UPDATE_ROWS:
            return RowChange.rows("update", schema, name, columns, rows)  # type: ignore[arg-type]
        if raw.kind in WRITE_ROWS:
            return RowChange.rows("insert", schema, name, columns, ((None, r[0]) for r in rows))
        return RowChange.rows("delete", schema, name, columns, ((r[0], None) for r in rows))

    def _columns_of(self, table: Any) -> tuple[str, ...]:
        named = self._tables.get(str(table.table)) if self._tables is not None else None
        if named:
            return named
        primary_key = table.data["primary_key"]
        if isinstance(primary_key, str):
            return (primary_key,) if primary_key else ()
        return tuple(str(column) for column in primary_key or ())

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
            if len(self._layouts) > 1000:
                self._layouts.clear()
            self._layouts[key] = cached
        if isinstance(cached, UnreadableRows):
            raise cached
        return cached

    def _layout(self, event: RowsEvent) -> tuple[RowLayout, tuple[str, ...]]:
        return self._layout_of(event.table_id, event.table_map[event.table_id])

    def _on_query(
        self, event: QueryEvent, group: _Group | None, end: BinlogPosition, poisoned: bool
    ) -> tuple[ChangeBatch | None, _Group | None]:
        query = (
            event.query
            if isinstance(event.query, str)
            else bytes(event.query).decode("utf-8", "replace")
        )
        raw_schema = event.schema
        schema = (
            raw_schema.decode("utf-8", "replace")
            if isinstance(raw_schema, bytes)
            else str(raw_schema)
        ) or None
        text = query.lstrip()
        if TX_CONTROL.match(text):
            group = group or _Group()
            group.explicit = True
            return None, group
        if TX_END.match(text) and not SAVEPOINT.match(text):
            if group is None:
                return None, None
            return self._commit(group, end, float(event.timestamp), poisoned), None
        folds = self.server is not None and self.server.folds_names
        changes = statement_changes(query, schema, fold_case=folds)
        if changes is None:  # savepoints and the like
            return None, group
        if self._schemas is not None:
            watched = {s.lower() for s in self._schemas} if folds else self._schemas
            changes = [c for c in changes if c.schema is None or c.schema in watched]
        if group is not None and group.explicit:
            group.add(changes)  # e.g. CREATE TABLE ... SELECT: DDL inside a transaction
            return None, group
        # A standalone statement (DDL) is its own transaction: it commits implicitly.
        standalone = group or _Group()
        standalone.add(changes)
        return self._commit(standalone, end, float(event.timestamp), poisoned), None
