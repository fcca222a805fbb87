"""Follow one MySQL/MariaDB server's binary log and hand out committed row changes, per transaction.

A thin, typed layer over the `mysql-replication` package (import name `pymysqlreplication`): it
turns the library's event stream into one `ChangeBatch` per committed transaction, carrying the
primary keys each row had before and after, and the binlog position to resume from. Storing that
position (after the caller's invalidation succeeded) is the caller's job.

What the server must provide (checked by `check_server`, refused with `ServerNotSuitable`):
  log_bin=ON, binlog_format=ROW, binlog_row_image=FULL, binlog_row_metadata=FULL (without it
  MariaDB/MySQL send no column names or primary key, and rows come as UNKNOWN_COL0...), and a
  server_id different from the `server_id` given to `BinlogFollower` (which must also differ
  between two followers of the same server: the server drops the older connection of a pair).
  MySQL 8.0.14+ / MariaDB 10.5+ (binlog_row_metadata exists only there).
Privileges of the user: REPLICATION SLAVE (to stream the binlog) and REPLICATION CLIENT (for
`SHOW MASTER STATUS` / `SHOW BINARY LOG STATUS` and the settings check), on *.*.

Guarantees: a transaction's changes are handed out only after its commit event (XID, or COMMIT
for non-transactional engines) was read, so rolled-back transactions never appear (they never
reach the binlog). A position handed out is always a transaction boundary. After a lost
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
import re
import threading
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self

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
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

__all__ = [
    "BinlogError",
    "BinlogFollower",
    "BinlogPosition",
    "ChangeBatch",
    "ChangeKind",
    "PositionUnavailable",
    "RowChange",
    "ServerInfo",
    "ServerNotSuitable",
    "SourceAddress",
    "check_server",
    "current_position",
    "server_info",
]

log = logging.getLogger(__name__)

ChangeKind = Literal["insert", "update", "delete", "reset"]
KeyValue = tuple[object, ...]

# Server errors after which retrying cannot help: the position is gone, or the user lacks rights.
_FATAL_ERRORS: Final = frozenset({1236, 1044, 1045, 1227, 1142, 1064})
_ER_PARSE_ERROR: Final = 1064
_MARIADB_FL_STANDALONE: Final = 0x01  # GTID event of a single statement (DDL) with no COMMIT

_REQUIRED_SETTINGS: Final = {
    "log_bin": "ON",
    "binlog_format": "ROW",
    "binlog_row_image": "FULL",
    "binlog_row_metadata": "FULL",
}


class BinlogError(RuntimeError):
    """Base of the errors this module raises on purpose."""


class ServerNotSuitable(BinlogError):
    """The server lacks a setting the follower needs; the message names it and the fix."""


class PositionUnavailable(BinlogError):
    """The server no longer has (or never had) the requested binlog file/position.

    The caller cannot know what it missed: invalidate everything, then follow from
    `current_position()`.
    """


class SourceAddress(Protocol):
    """Where the server is and who to log in as (the service's `DatabaseURL` fits)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def user(self) -> str: ...
    @property
    def password(self) -> str: ...


@dataclass(frozen=True, order=True)
class BinlogPosition:
    """A point in the server's binary log: resume *after* everything before it."""

    log_file: str
    log_pos: int

    def __str__(self) -> str:
        return f"{self.log_file}:{self.log_pos}"

    @classmethod
    def parse(cls, text: str) -> BinlogPosition:
        """Inverse of `str()`, for positions stored as text (e.g. in Redis)."""
        log_file, sep, pos = text.rpartition(":")
        if not sep or not log_file or not pos.isdigit():
            raise ValueError(f"not a binlog position: {text!r} (expected FILE:POS)")
        return cls(log_file, int(pos))


@dataclass(frozen=True)
class RowChange:
    """One row written by a committed transaction, or a `reset` of a whole table.

    `before`/`after` hold the primary key values (in key column order) the row had before and
    after the change: insert has only `after`, delete only `before`, update both (they differ
    when the key itself changed). `reset` means "anything in this table may have changed" and
    comes from DDL/TRUNCATE, from tables without a primary key, and from oversized
    transactions; `table` is None when the whole `schema` is concerned, and `schema` is None
    when even that is unknown (invalidate everything).
    """

    kind: ChangeKind
    schema: str | None
    table: str | None
    key_columns: tuple[str, ...] = ()
    before: KeyValue | None = None
    after: KeyValue | None = None
    statement: str | None = None

    @property
    def before_id(self) -> int | None:
        """The key before the change when it is a single integer column (e.g. `orders.id`)."""
        return _single_int(self.before)

    @property
    def after_id(self) -> int | None:
        """The key after the change when it is a single integer column."""
        return _single_int(self.after)

    def concerns(self, schema: str, table: str) -> bool:
        """True when this change may affect `schema.table` (resets included)."""
        return (self.schema is None or self.schema == schema) and (
            self.table is None or self.table == table
        )


def _single_int(key: KeyValue | None) -> int | None:
    if key is not None and len(key) == 1 and isinstance(key[0], int):
        return key[0]
    return None


@dataclass
class ChangeBatch:
    """The changes of one committed transaction and the position right after its commit.

    An empty `changes` list with `committed_at=None` is an idle heartbeat: nothing new was
    committed, and `position` is where the follower stands (safe to store).
    """

    position: BinlogPosition
    changes: list[RowChange] = field(default_factory=list)
    committed_at: float | None = None  # unix seconds of the commit event (whole seconds)

    @property
    def idle(self) -> bool:
        return self.committed_at is None


@dataclass(frozen=True)
class ServerInfo:
    flavor: Literal["mysql", "mariadb"]
    version: tuple[int, int, int]
    version_text: str
    server_id: int
    settings: dict[str, str]


def _tls(source: SourceAddress) -> dict[str, Any]:
    """PyMySQL's ``ssl`` argument when the source asks for TLS (``DatabaseURL.ssl``), the same
    for the control, position and stream connections as for the API's."""
    ssl = getattr(source, "ssl", None)
    return {"ssl": ssl} if ssl else {}


def _connect(source: SourceAddress, timeout: float) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(
        **_tls(source),
        host=source.host,
        port=source.port,
        user=source.user,
        password=source.password,
        connect_timeout=timeout,
        read_timeout=timeout,
        write_timeout=timeout,
        autocommit=True,
        charset="utf8mb4",
    )


def _parse_version(text: str) -> tuple[int, int, int]:
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
    if match is None:
        raise BinlogError(f"cannot read the server version from {text!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return (major, minor, patch)


def server_info(source: SourceAddress, *, timeout: float = 5.0) -> ServerInfo:
    """Which server this is and its binlog-related settings."""
    with _connect(source, timeout) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION(), @@server_id")
        row = cur.fetchone()
        assert row is not None
        version_text, server_id = str(row[0]), int(row[1])
        cur.execute(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
            "('log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata', "
            "'binlog_checksum', 'gtid_mode')"
        )
        settings = {str(name).lower(): str(value) for name, value in cur.fetchall()}
    flavor: Literal["mysql", "mariadb"] = (
        "mariadb" if "mariadb" in version_text.lower() else "mysql"
    )
    return ServerInfo(flavor, _parse_version(version_text), version_text, server_id, settings)


def check_server(source: SourceAddress, *, timeout: float = 5.0) -> ServerInfo:
    """Refuse, with a message naming the setting, a server the follower cannot read correctly."""
    info = server_info(source, timeout=timeout)
    wrong = [
        f"{name}={info.settings.get(name, '(absent: server too old)')} (needs {wanted})"
        for name, wanted in _REQUIRED_SETTINGS.items()
        if info.settings.get(name, "").upper() != wanted
    ]
    if wrong:
        raise ServerNotSuitable(
            f"{info.version_text} cannot feed the invalidator: " + ", ".join(wrong) + ". "
            "Start it with --log-bin --binlog-format=ROW --binlog-row-image=FULL "
            "--binlog-row-metadata=FULL and a unique --server-id."
        )
    return info


def _status_statement(info: ServerInfo) -> str:
    """`SHOW MASTER STATUS` was renamed in MySQL 8.2 and removed in 8.4; MariaDB keeps it."""
    if info.flavor == "mysql" and info.version >= (8, 2, 0):
        return "SHOW BINARY LOG STATUS"
    return "SHOW MASTER STATUS"


def current_position(source: SourceAddress, *, timeout: float = 5.0) -> BinlogPosition:
    """The server's binlog end right now: where to start when no position was stored."""
    info = server_info(source, timeout=timeout)
    with _connect(source, timeout) as conn, conn.cursor() as cur:
        cur.execute(_status_statement(info))
        row = cur.fetchone()
    if row is None:
        raise ServerNotSuitable(f"{info.version_text}: the binary log is off (log_bin=OFF)")
    return BinlogPosition(str(row[0]), int(row[1]))


# ---- DDL and other statements that arrive as QueryEvent ---------------------------------------

_IDENT = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_QNAME = rf"{_IDENT}(?:\s*\.\s*{_IDENT})?"
_TX_CONTROL = re.compile(r"^(BEGIN|XA\s+(START|BEGIN|END))\b", re.IGNORECASE)
_TX_END = re.compile(r"^(COMMIT|ROLLBACK|XA\s+PREPARE)\b", re.IGNORECASE)
_XA_FINISH = re.compile(r"^XA\s+(COMMIT|ROLLBACK)\b", re.IGNORECASE)
_SAVEPOINT = re.compile(r"^(SAVEPOINT|RELEASE\s+SAVEPOINT|ROLLBACK\s+TO)\b", re.IGNORECASE)
# Statements that change no table rows: accounts, routines, triggers, views, statistics.
_NO_ROW_EFFECT = re.compile(
    r"^(GRANT|REVOKE|FLUSH|ANALYZE|SET\s+PASSWORD|SET\s+DEFAULT\s+ROLE|"
    r"(CREATE|DROP|ALTER|RENAME)\s+(USER|ROLE)|"
    r"(CREATE|ALTER|DROP)\s+(OR\s+REPLACE\s+)?(DEFINER\s*=\s*\S+\s+)?"
    r"(SQL\s+SECURITY\s+\w+\s+)?(ALGORITHM\s*=\s*\w+\s+)?"
    r"(TRIGGER|PROCEDURE|FUNCTION|EVENT|VIEW)|"
    r"CREATE\s+(OR\s+REPLACE\s+)?(UNIQUE\s+|FULLTEXT\s+|SPATIAL\s+)?INDEX|DROP\s+INDEX)\b",
    re.IGNORECASE,
)
_TABLE_DDL = re.compile(
    r"^(?:TRUNCATE(?:\s+TABLE)?"
    r"|ALTER\s+(?:ONLINE\s+)?(?:IGNORE\s+)?TABLE(?:\s+IF\s+EXISTS)?"
    r"|DROP\s+(?:TEMPORARY\s+)?TABLES?(?:\s+IF\s+EXISTS)?"
    r"|CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+)?TABLE(?:\s+IF\s+NOT\s+EXISTS)?"
    r"|RENAME\s+TABLES?"
    r"|OPTIMIZE(?:\s+NO_WRITE_TO_BINLOG|\s+LOCAL)?\s+TABLE"
    r"|REPAIR(?:\s+NO_WRITE_TO_BINLOG|\s+LOCAL)?\s+TABLE)"
    rf"\s+(?P<names>{_QNAME}(?:\s*(?:,|\bTO\b)\s*{_QNAME})*)",
    re.IGNORECASE,
)
_SCHEMA_DDL = re.compile(
    rf"^(?:CREATE|DROP|ALTER)\s+(?:DATABASE|SCHEMA)(?:\s+IF\s+(?:NOT\s+)?EXISTS)?\s+(?P<name>{_IDENT})",
    re.IGNORECASE,
)
_COMMENTS = re.compile(r"/\*(?!!).*?\*/|^\s*(?:--|#)[^\n]*$", re.DOTALL | re.MULTILINE)


def _unquote(ident: str) -> str:
    ident = ident.strip()
    if ident.startswith("`") and ident.endswith("`"):
        return ident[1:-1].replace("``", "`")
    return ident


def _split_qname(qname: str, default_schema: str | None) -> tuple[str | None, str]:
    parts = re.findall(_IDENT, qname)
    if len(parts) == 2:
        return _unquote(parts[0]), _unquote(parts[1])
    return default_schema, _unquote(parts[0])


def statement_changes(query: str, schema: str | None) -> list[RowChange] | None:
    """What a statement logged as text means for cached rows.

    Returns None for transaction control, [] for statements that change no rows, and resets
    for everything else: per table for table DDL, per schema for database DDL, and a
    schema-wide reset for any statement not recognised (the safe side: e.g. DML logged as a
    statement because someone set binlog_format=MIXED).
    """
    text = _COMMENTS.sub(" ", query).strip().rstrip(";").strip()
    if _TX_CONTROL.match(text) or _TX_END.match(text) or _SAVEPOINT.match(text):
        return None
    if _XA_FINISH.match(text):
        # An XA transaction's rows were logged at XA PREPARE; its outcome arrives here.
        return [RowChange("reset", None, None, statement=query)]
    if _NO_ROW_EFFECT.match(text):
        return []
    if match := _TABLE_DDL.match(text):
        names = re.split(r"\s*,\s*|\s+TO\s+", match["names"].strip(), flags=re.IGNORECASE)
        changes = []
        for qname in names:
            table_schema, table = _split_qname(qname, schema)
            changes.append(RowChange("reset", table_schema, table, statement=query))
        return changes
    if match := _SCHEMA_DDL.match(text):
        return [RowChange("reset", _unquote(match["name"]), None, statement=query)]
    return [RowChange("reset", schema, None, statement=query)]


# ---- row events ---------------------------------------------------------------------------------


def _key_columns(primary_key: object) -> tuple[str, ...]:
    if isinstance(primary_key, str):
        return (primary_key,) if primary_key else ()
    if isinstance(primary_key, tuple | list):
        return tuple(str(column) for column in primary_key)
    return ()


def _row_changes(event: WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent) -> list[RowChange]:
    schema, table = str(event.schema), str(event.table)
    columns = _key_columns(event.primary_key)
    if not columns:
        # No primary key (or no metadata): rows cannot be told apart, so the table is reset.
        return [RowChange("reset", schema, table)]

    def key(values: dict[str, object]) -> KeyValue:
        return tuple(values[column] for column in columns)

    rows: list[dict[str, Any]] = event.rows
    if isinstance(event, UpdateRowsEvent):
        return [
            RowChange(
                "update",
                schema,
                table,
                columns,
                before=key(row["before_values"]),
                after=key(row["after_values"]),
            )
            for row in rows
        ]
    if isinstance(event, WriteRowsEvent):
        return [RowChange("insert", schema, table, columns, after=key(r["values"])) for r in rows]
    return [RowChange("delete", schema, table, columns, before=key(r["values"])) for r in rows]


# ---- the follower -------------------------------------------------------------------------------

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


class _Group:
    """The transaction being read: its changes so far, capped to bound memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.changes: list[RowChange] = []
        self.tables: dict[tuple[str | None, str | None], None] = {}
        self.overflowed = False
        self.explicit = False  # inside BEGIN (MySQL) or a non-standalone MariaDB GTID group

    def add(self, changes: list[RowChange]) -> None:
        for change in changes:
            self.tables.setdefault((change.schema, change.table), None)
        if self.overflowed:
            return
        self.changes.extend(changes)
        if len(self.changes) > self.limit:
            self.overflowed = True
            self.changes = []

    def result(self) -> list[RowChange]:
        if not self.overflowed:
            return self.changes
        # Too many rows to list: reset every table the transaction touched instead.
        return [RowChange("reset", schema, table) for schema, table in self.tables]


class BinlogFollower:
    """Yields one `ChangeBatch` per committed transaction, from `start` (or from now) on.

    Blocking: iteration waits for new commits. The server sends a heartbeat every
    `heartbeat_seconds` while idle; each is yielded as an idle batch, so the loop can record
    progress and lag, and `stop()` (from any thread) ends the iteration within about one
    heartbeat. Lost connections are retried with capped backoff from the last position handed
    out; `PositionUnavailable`, `ServerNotSuitable` and access errors are raised.
    """

    def __init__(
        self,
        source: SourceAddress,
        *,
        server_id: int,
        start: BinlogPosition | None = None,
        schemas: Collection[str] | None = None,
        heartbeat_seconds: float = 1.0,
        connect_timeout: float = 5.0,
        max_backoff_seconds: float = 5.0,
        max_changes_per_batch: int = 50_000,
        verify_checksum: bool = False,
    ) -> None:
        if server_id <= 0:
            raise ValueError("server_id must be a positive number unique among the replicas")
        self._source = source
        self._server_id = server_id
        self._start = start
        self._schemas = frozenset(schemas) if schemas is not None else None
        self._heartbeat = heartbeat_seconds
        self._connect_timeout = connect_timeout
        self._max_backoff = max_backoff_seconds
        self._max_changes = max_changes_per_batch
        self._verify_checksum = verify_checksum
        self._stopping = threading.Event()
        self._reader: BinLogStreamReader | None = None
        self._position: BinlogPosition | None = start
        self._last_commit_at: float | None = None
        self._caught_up = False
        self.server: ServerInfo | None = None
        self._stream_connections = 0
        self.last_error: BaseException | None = None

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
        backoff = 0.1
        try:
            while not self._stopping.is_set():
                try:
                    for batch in self._read_from(self._position):
                        backoff = 0.1
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
        if settings.get("database") != "information_schema":  # the stream, not the ctl link
            self._stream_connections += 1
        return pymysql.connect(**settings, **_tls(self._source))

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
            freeze_schema=False,  # True keeps stale column lists after ALTER TABLE
            verify_checksum=self._verify_checksum,
            enable_logging=False,  # it logs every constructor argument at INFO otherwise
            pymysql_wrapper=self._library_connect,
        )
        return self._reader

    def _read_from(self, start: BinlogPosition) -> Iterator[ChangeBatch]:
        reader = self._open(start)
        log_file = start.log_file
        group: _Group | None = None
        for event in reader:
            if isinstance(event, RotateEvent):
                log_file = str(event.next_binlog)
                continue
            end = BinlogPosition(log_file, int(event.packet.log_pos))
            if isinstance(event, HeartbeatLogEvent):
                # Sent only while the server has nothing new, so never inside a transaction.
                # Its position is the server's end of log, past rotations and checkpoints.
                self._caught_up = True
                here = self._position or start
                if group is None and end.log_pos > 0 and end > here:
                    here = end
                yield ChangeBatch(here)
                continue
            self._caught_up = False
            if isinstance(event, MariadbGtidEvent | GtidEvent):
                group = _Group(self._max_changes)
                if isinstance(event, MariadbGtidEvent):
                    group.explicit = not (event.flags & _MARIADB_FL_STANDALONE)
            elif isinstance(event, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
                if group is None:  # resumed inside a transaction: not ours to report
                    continue
                group.add(_row_changes(event))
            elif isinstance(event, XidEvent | XAPrepareEvent):
                if group is not None:
                    yield ChangeBatch(end, group.result(), float(event.timestamp))
                    group = None
            elif isinstance(event, QueryEvent):
                batch, group = self._on_query(event, group, end)
                if batch is not None:
                    yield batch

    def _on_query(
        self, event: QueryEvent, group: _Group | None, end: BinlogPosition
    ) -> tuple[ChangeBatch | None, _Group | None]:
        query = event.query if isinstance(event.query, str) else bytes(event.query).decode()
        raw_schema = event.schema
        schema = (raw_schema.decode() if isinstance(raw_schema, bytes) else str(raw_schema)) or None
        text = query.lstrip()
        if _TX_CONTROL.match(text):
            group = group or _Group(self._max_changes)
            group.explicit = True
            return None, group
        if _TX_END.match(text) and not _SAVEPOINT.match(text):
            if group is None:
                return None, None
            return ChangeBatch(end, group.result(), float(event.timestamp)), None
        changes = statement_changes(query, schema)
        if changes is None:  # savepoints and the like
            return None, group
        if self._schemas is not None:
            changes = [c for c in changes if c.schema is None or c.schema in self._schemas]
        if group is not None and group.explicit:
            group.add(changes)  # e.g. CREATE TABLE ... SELECT: DDL inside a transaction
            return None, group
        # A standalone statement (DDL) is its own transaction: it commits implicitly.
        merged = (group.result() if group is not None else []) + changes
        return ChangeBatch(end, merged, float(event.timestamp)), None
