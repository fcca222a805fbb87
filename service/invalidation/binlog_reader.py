"""How the follower drives mysql-replication (import name `pymysqlreplication`): which events it
asks for and the reader's settings.

Traps of mysql-replication 1.0.x that this module steps around (see its issue tracker):
- `is_mariadb=True` ignores log_file/log_pos and streams from the oldest binlog file unless
  `auto_position` (a GTID state) is given; the MySQL-style dump by file and position works on
  MariaDB, so it is used for both when a position carries no GTID state. With one, the dump
  starts after it (`compat.mysql_replication.gtid_dump`) on whichever server now has it.
- A GTID dump on MariaDB skips silently a domain the server never logged; the caller checks
  the server's GTID state contains ours first (`mysql_source.lacks_history`).
- Without `resume_stream=True` a given log_pos is ignored and the stream restarts at offset 4
  of log_file (issues #300, #618).
- `HeartbeatLogEvent` must be in `only_events`, or heartbeats are swallowed inside `fetchone()`
  and a blocked read never returns to the caller (no way to notice a stop request).
- The library silently reconnects after errors 2006/2013 and resumes at the last *event*, not
  transaction; the follower counts those reconnects and resumes by itself only from boundaries.
- `SHOW MASTER STATUS` is gone in MySQL 8.4; the library falls back from `SHOW BINARY LOG
  STATUS` on a parse error, this module picks the statement from the server version.
- It passes `db=` to PyMySQL (DeprecationWarning) and logs all its arguments at INFO unless
  `enable_logging=False`; `freeze_schema=True` would keep column lists stale after ALTER TABLE.
- MariaDB sends no BEGIN: a transaction starts at its GTID event (flag STANDALONE marks DDL).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

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
from service.invalidation.changes import BinlogPosition
from service.invalidation.mysql_source import SourceAddress

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


def open_reader(
    source: SourceAddress,
    *,
    server_id: int,
    start: BinlogPosition,
    heartbeat: float,
    connect_timeout: float,
    schemas: Sequence[str] | None,
    tables: Sequence[str] | None,
    verify_checksum: bool,
    connect: Callable[..., Any],
    gtid_flavor: str | None = None,
) -> BinLogStreamReader:
    """A blocking reader from ``start`` (a transaction boundary) on: after its GTID state when
    ``gtid_flavor`` is given (``mysql``/``mariadb``), else at its file and offset; ``connect``
    opens each of its connections."""
    read_timeout = max(3.0, heartbeat * 3 + 1)
    where: dict[str, Any] = {
        # The MySQL-style dump by file and position also works on MariaDB. is_mariadb=True
        # without auto_position would ignore log_file/log_pos and replay the oldest binlog.
        "is_mariadb": False,
        "log_file": start.log_file,
        "log_pos": start.log_pos,
        "resume_stream": True,  # without it the stream restarts at offset 4 of log_file
    }
    if gtid_flavor is not None and start.gtid:
        where = {**mysql_replication.gtid_dump(gtid_flavor, start.gtid), "resume_stream": True}
    return BinLogStreamReader(
        connection_settings={
            "host": source.host,
            "port": source.port,
            "user": source.user,
            "password": source.password,
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,  # a silent server is noticed after this
            "write_timeout": connect_timeout,
            "charset": "utf8mb4",
        },
        server_id=server_id,
        **where,
        blocking=True,
        slave_heartbeat=heartbeat,
        only_events=_EVENTS,
        only_schemas=schemas,
        # Other tables' table maps and row events are dropped unparsed.
        only_tables=tables,
        freeze_schema=False,  # True keeps stale column lists after ALTER TABLE
        verify_checksum=verify_checksum,
        enable_logging=False,  # it logs every constructor argument at INFO otherwise
        pymysql_wrapper=connect,
    )


def library_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """What the library asks a connection for, without the deprecated `db=`/`passwd=` it passes
    (PyMySQL warns; `filterwarnings = error` fails on it), no default schema and no session
    settings of ours."""
    if "db" in settings:
        settings["database"] = settings.pop("db")
    if "passwd" in settings:
        settings["password"] = settings.pop("passwd")
    return {"database": None, "autocommit": False, "init_command": None, **settings}
