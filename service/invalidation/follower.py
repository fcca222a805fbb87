"""Follow one MySQL/MariaDB server's binary log and hand out committed row changes, per transaction.

A thin, typed layer over `mysql-replication` (`pymysqlreplication`): one `ChangeBatch` per
committed transaction (large ones in chunks), with the keys each row had before and after and
the position to resume from (storing it, after the invalidation succeeded, is the caller's job).
Server requirements: `mysql_source`. The follower's server_id must differ from the server's and
from any other follower's (the server drops the older connection of a pair). Only the watched
tables' key columns are read (`rows.read_keys`); other tables' row events are dropped undecoded,
so bytes Python's codecs reject never stop the stream. An unreadable event is a reset of
everything at the next boundary, never a stall. A position carries the GTID state after it:
where the server has GTIDs the follower resumes after that state, on whichever server answers at
the address, so a promoted replica is followed on and another history refused (`server_watch`).

Guarantees: a transaction's last batch is handed out only after its commit event (XID, or COMMIT
for non-transactional engines); rolled-back transactions never reach the binlog (an XA
transaction's rows, logged at XA PREPARE, may be handed out and later rolled back: invalidating
them is merely wasted). A position handed out is always a transaction boundary: a chunk of a
transaction still being read carries the position before it. After a lost connection the
follower reconnects from the last boundary it handed out, dropping any half-read transaction:
a change may be handed out twice after a restart, never zero times. The library's traps:
``binlog_reader``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from types import TracebackType
from typing import Any, Final, Self

import pymysql
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
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from service.compat import mysql_replication
from service.invalidation.binlog_reader import library_settings, open_reader
from service.invalidation.changes import BinlogPosition, ChangeBatch, RowChange
from service.invalidation.mysql_source import (
    PositionUnavailable,
    SourceAddress,
    current_position,
)
from service.invalidation.row_changes import RowsSink, RowTranslator, StreamConnection
from service.invalidation.server_watch import ServerMoved, ServerWatch
from service.invalidation.statements import SAVEPOINT, TX_CONTROL, TX_END, statement_changes
from service.invalidation.transaction import ReadState, Transaction
from service.orders.database import connect

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
        self._schemas = frozenset(schemas) if schemas is not None else None
        self._tables = sorted(tables) if tables is not None else None
        self._rows = RowTranslator(tables)
        self._heartbeat = heartbeat_seconds
        self._connect_timeout = connect_timeout
        self._max_backoff = max_backoff_seconds
        self.chunk_rows = chunk_rows
        self._sink: RowsSink | None = None
        self._verify_checksum = verify_checksum
        self._stopping = threading.Event()
        self._reader: BinLogStreamReader | None = None
        self._position: BinlogPosition | None = start
        self._gtid_state = start.gtid if start is not None else ""
        self.watch = ServerWatch(source, server_id, connect_timeout)  # and primary changes
        self._stream_connections = 0
        self._unreadable = 0
        self._by_gtid = False

    # ---- public ----------------------------------------------------------------------------
    @property
    def position(self) -> BinlogPosition | None:
        """The last position handed out (a transaction boundary), or the start position."""
        return self._position

    @property
    def unreadable_events(self) -> int:
        """Events, or rows events' images, that could not be read (each a reset)."""
        return self._unreadable + self._rows.unreadable

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
        self.watch.probe(self._position)
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
                        yield batch
                        if self._stopping.is_set():
                            return
                except (pymysql.err.OperationalError, pymysql.err.InternalError) as exc:
                    self._raise_if_fatal(exc)
                    self._lost(exc)
                except (pymysql.err.InterfaceError, OSError, EOFError, ServerMoved) as exc:
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
        settings = library_settings(settings)
        if settings["database"] == "information_schema":  # the ctl link
            return connect(self._source, **settings)  # type: ignore[no-any-return]
        self._stream_connections += 1
        connection: StreamConnection = connect(
            self._source, connection_class=StreamConnection, **settings
        )
        connection.sink = self._sink
        return connection

    @property
    def reconnects(self) -> int:
        """Stream connections opened after the first one (by this class or by the library)."""
        return max(0, self._stream_connections - 1)

    def _lost(self, exc: BaseException) -> None:
        log.warning("binlog connection lost (%s); resuming from %s", exc, self._position)

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception:  # a broken socket may fail to close; it is gone anyway
                log.debug("closing the binlog reader failed", exc_info=True)

    def _open(self, start: BinlogPosition) -> BinLogStreamReader:
        server = self.watch.info
        assert server is not None
        self._by_gtid = self.watch.resumes_by_gtid(start)
        self._reader = open_reader(
            self._source,
            server_id=self._server_id,
            start=start,
            heartbeat=self._heartbeat,
            connect_timeout=self._connect_timeout,
            schemas=sorted(self._schemas) if self._schemas is not None else None,
            tables=self._tables,
            verify_checksum=self._verify_checksum,
            connect=self._library_connect,
            gtid_flavor=server.flavor if self._by_gtid else None,
        )
        self._sink = RowsSink(self._rows, self._reader, self.chunk_rows)
        return self._reader

    def _next_event(self, reader: BinLogStreamReader) -> Any:
        """The next event; `_UNREADABLE` when the library could not parse one (it was already
        consumed from the socket: the stream goes on after it)."""
        try:
            event = reader.fetchone()
        except _CONNECTION_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - any parse failure: reset, never a stall
            self._unreadable += 1
            log.warning("unreadable binlog event (%r); everything will be invalidated", exc)
            return _UNREADABLE
        connection = mysql_replication.stream_connection(reader)
        if isinstance(connection, StreamConnection) and not connection.armed:
            connection.sink = self._sink
            connection.armed = True  # streaming now: no more query replies on this connection
        return event

    def _read_from(self, start: BinlogPosition) -> Iterator[ChangeBatch]:
        """Batches from ``start`` until the library closes the stream (or a connection error)."""
        if self._stream_connections:  # a reconnection: maybe to a promoted replica
            self.watch.probe(self._position)
        self._gtid_state = start.gtid
        reader = self._open(start)
        state = ReadState(start.log_file)
        while True:
            event = self._next_event(reader)
            if self._sink is not None and self._sink.changes:
                yield from self._grown(state.group, self._sink.take(), start)
            if event is None:  # the library closed the stream
                return
            if event is _UNREADABLE:
                state.poisoned = True
            elif isinstance(event, RotateEvent):
                state.log_file = str(event.next_binlog)
                self.watch.dump_started(event, self._position, self._by_gtid)
            elif isinstance(event, HeartbeatLogEvent):
                yield self._idle(
                    state, self._here(state.log_file, int(event.packet.log_pos)), start
                )
            else:
                yield from self._on_event(event, state, start)

    def _grown(
        self, group: Transaction | None, changes: list[RowChange], start: BinlogPosition
    ) -> Iterator[ChangeBatch]:
        """Add ``changes`` to the transaction; hand out every full chunk of it."""
        if group is None:  # resumed inside a transaction: not ours to report
            return
        group.add(changes)
        while len(group.changes) >= self.chunk_rows:
            chunk = group.take(self.chunk_rows)
            yield ChangeBatch(self._position or start, chunk, partial=True)

    def _idle(self, state: ReadState, end: BinlogPosition, start: BinlogPosition) -> ChangeBatch:
        """A server heartbeat: sent only while the server has nothing new, so never inside a
        transaction. Its position is the server's end of log, past rotations and checkpoints."""
        here = self._position or start
        newer = end.server != here.server or end > here  # another server's log: no order
        if state.group is None and end.log_pos > 0 and newer:
            here = end
        if state.poisoned and state.group is None:
            state.poisoned = False
            return ChangeBatch(here, [_RESET_ALL], time.time())
        return ChangeBatch(here)

    def _on_event(
        self, event: Any, state: ReadState, start: BinlogPosition
    ) -> Iterator[ChangeBatch]:
        """One event of a transaction: its start, rows, commit, or a statement."""
        end = self._here(state.log_file, int(event.packet.log_pos))
        if isinstance(event, MariadbGtidEvent | GtidEvent):
            state.group = Transaction()
            state.group.gtid = str(event.gtid)
            if isinstance(event, MariadbGtidEvent):
                state.group.explicit = not (event.flags & _MARIADB_FL_STANDALONE)
        elif isinstance(event, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
            if state.group is not None:  # else: resumed inside a transaction, not ours
                yield from self._grown(state.group, self._rows.from_event(event), start)
        elif isinstance(event, XidEvent | XAPrepareEvent):
            if state.group is not None:
                yield self._commit(state.group, end, float(event.timestamp), state.poisoned)
                state.group, state.poisoned = None, False
        elif isinstance(event, QueryEvent):
            batch, state.group = self._on_query(event, state.group, end, state.poisoned)
            if batch is not None:
                state.poisoned = False
                yield batch

    def _here(self, log_file: str, log_pos: int) -> BinlogPosition:
        identity = self.watch.identity
        return BinlogPosition(log_file, log_pos, identity, self._gtid_state)

    def _commit(
        self, group: Transaction, end: BinlogPosition, committed_at: float, poisoned: bool
    ) -> ChangeBatch:
        state = self.watch.after(self._gtid_state, group.gtid)
        if state is not None:
            self._gtid_state = state
            end = end.with_identity(end.server, state)
            if self._by_gtid and self._reader is not None:
                mysql_replication.resume_after(self._reader, self._gtid_state)
        changes = group.take()
        if poisoned:
            changes.append(_RESET_ALL)
        return ChangeBatch(end, changes, committed_at)

    def _on_query(
        self, event: QueryEvent, group: Transaction | None, end: BinlogPosition, poisoned: bool
    ) -> tuple[ChangeBatch | None, Transaction | None]:
        query, schema = _text(event.query), _text(event.schema) or None
        text = query.lstrip()
        if TX_CONTROL.match(text):
            group = group or Transaction()
            group.explicit = True
            return None, group
        if TX_END.match(text) and not SAVEPOINT.match(text):
            if group is None:
                return None, None
            return self._commit(group, end, float(event.timestamp), poisoned), None
        folds = self.watch.info is not None and self.watch.info.folds_names
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
        standalone = group or Transaction()
        standalone.add(changes)
        return self._commit(standalone, end, float(event.timestamp), poisoned), None


def _text(value: str | bytes) -> str:
    """A query event's text or schema (bytes when not valid UTF-8: decoded with U+FFFD)."""
    return value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")
