"""Probing the server the follower reads: version, binlog settings, identity, where the log ends.

What the server must provide (checked by `check_server`, refused with `ServerNotSuitable`):
  log_bin=ON, binlog_format=ROW, binlog_row_image=FULL, binlog_row_metadata=FULL (without it
  MariaDB/MySQL send no column names or primary key, and rows come as UNKNOWN_COL0...), and a
  server_id different from the follower's. MySQL 8.0.14+ / MariaDB 10.5+.
Privileges of the user: REPLICATION SLAVE and REPLICATION CLIENT on *.*.

These are replication-protocol statements (SHOW MASTER STATUS, server variables), not the
service's data: they stay beside the follower rather than in service/orders/repository.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

import pymysql

from service.invalidation import gtid
from service.invalidation.changes import BinlogPosition
from service.orders.database import Address, connect

_REQUIRED_SETTINGS: Final = {
    "log_bin": "ON",
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


SourceAddress = Address  # where the server is and who to log in as (`DatabaseURL` fits)


@dataclass(frozen=True)
class ServerInfo:
    flavor: Literal["mysql", "mariadb"]
    version: tuple[int, int, int]
    version_text: str
    server_id: int
    settings: dict[str, str]
    server_uuid: str = ""

    @property
    def identity(self) -> str:
        """Which server wrote this binlog: MySQL's server_uuid, or MariaDB's server_id (MariaDB
        has no server_uuid; its GTIDs, checked separately, tell histories apart)."""
        if self.flavor == "mysql" and self.server_uuid:
            return f"mysql:{self.server_uuid}"
        return f"{self.flavor}:{self.server_id}"

    @property
    def gtids(self) -> bool:
        """Positions on this server can carry a GTID state (MariaDB; MySQL with gtid_mode=ON),
        so the invalidator resumes by GTID and can follow a promoted replica."""
        return gtid.gtids_on(self.flavor, self.settings)

    @property
    def folds_names(self) -> bool:
        """Table and schema names compare in lower case (``lower_case_table_names`` 1 or 2)."""
        return self.settings.get("lower_case_table_names", "0") != "0"

    @property
    def logs_rows(self) -> bool:
        """binlog_format=ROW: with STATEMENT or MIXED, DML may arrive as text, which the
        follower can only treat as a reset of the schema (correct, but it empties the cache)."""
        return self.settings.get("binlog_format", "").upper() == "ROW"


def _connect(source: SourceAddress, timeout: float) -> pymysql.connections.Connection[Any]:
    """A probe's connection: no default schema, no session settings (replication statements)."""
    connection: pymysql.connections.Connection[Any] = connect(
        source, timeout, database=None, init_command=None
    )
    return connection


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
            "'binlog_checksum', 'gtid_mode', 'lower_case_table_names')"
        )
        settings = {str(name).lower(): str(value) for name, value in cur.fetchall()}
        flavor: Literal["mysql", "mariadb"] = (
            "mariadb" if "mariadb" in version_text.lower() else "mysql"
        )
        server_uuid = ""
        if flavor == "mysql":
            cur.execute("SELECT @@server_uuid")
            server_uuid = str(cur.fetchone()[0])
    return ServerInfo(
        flavor, _parse_version(version_text), version_text, server_id, settings, server_uuid
    )


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
    """The server's binlog end right now, with the server's identity and (MariaDB) the GTID
    state there: where to start when no usable position was stored."""
    info = server_info(source, timeout=timeout)
    with _connect(source, timeout) as conn, conn.cursor() as cur:
        cur.execute(_status_statement(info))
        row = cur.fetchone()
        if row is None:
            raise ServerNotSuitable(f"{info.version_text}: the binary log is off (log_bin=OFF)")
        position = BinlogPosition(str(row[0]), int(row[1]))
        state = status_gtid(info, row) if info.flavor == "mysql" else _gtid_at(cur, info, position)
    return position.with_identity(info.identity, state or "")


def status_gtid(info: ServerInfo, row: tuple[Any, ...]) -> str:
    """MySQL's GTID set at the binlog end, from the same ``SHOW BINARY LOG STATUS`` row as the
    file and offset (its fifth column, Executed_Gtid_Set), so the two agree; '' with GTIDs off."""
    if not info.gtids or len(row) < 5 or row[4] is None:
        return ""
    return "".join(str(row[4]).split())  # MySQL puts a newline after each comma


# The server's whole GTID state: what its binlog can serve a dump from. MariaDB's
# gtid_binlog_pos (not gtid_current_pos: a dump is served from the binlog, and with
# log_slave_updates a promoted replica logged what it applied); MySQL's gtid_executed.
GTID_STATE_STATEMENTS: Final = {
    "mariadb": "SELECT @@GLOBAL.gtid_binlog_pos",
    "mysql": "SELECT @@GLOBAL.gtid_executed",
}


def gtid_state(source: SourceAddress, info: ServerInfo, *, timeout: float = 5.0) -> str:
    """The server's GTID state now ('' when it has logged nothing)."""
    with _connect(source, timeout) as conn, conn.cursor() as cur:
        cur.execute(GTID_STATE_STATEMENTS[info.flavor])
        row = cur.fetchone()
    return "" if row is None or row[0] is None else str(row[0])


def lacks_history(
    source: SourceAddress, info: ServerInfo, position: BinlogPosition, *, timeout: float = 5.0
) -> str | None:
    """Why the server ``info`` cannot continue ``position``'s history by GTID, or None when
    its GTID state contains the one stored with the position (a replica promoted with
    log_slave_updates can; a server with another history cannot)."""
    if not position.gtid:
        return "the position carries no GTID state"
    if not info.gtids:
        return f"GTIDs are off on it (gtid_mode={info.settings.get('gtid_mode', '?')})"
    if position.server and not position.server.startswith(f"{info.flavor}:"):
        return f"it is {info.flavor}, the position was taken on {position.server}"
    try:
        state = gtid_state(source, info, timeout=timeout)
        lacking = gtid.missing(info.flavor, state, position.gtid)
    except gtid.GtidError as exc:
        return str(exc)
    if lacking is not None:
        return f"its GTID state {state!r} lacks {lacking}"
    return None


def _gtid_at(cur: Any, info: ServerInfo, position: BinlogPosition) -> str | None:
    """MariaDB's GTID state at file:offset (None when the server cannot place it there)."""
    if info.flavor != "mariadb":
        return ""
    cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (position.log_file, position.log_pos))
    found = cur.fetchone()
    return None if found is None or found[0] is None else str(found[0])


def foreign_history(  # noqa: PLR0911 - one answer per way a history can differ
    source: SourceAddress, position: BinlogPosition, *, timeout: float = 5.0
) -> str | None:
    """Why ``position`` cannot be resumed on this server, or None when it can: another
    server's identity, none recorded (a position stored by an older version), or a GTID state
    at that file:offset that differs from the one recorded with it (RESET MASTER, a restored
    backup, a replaced server with the same id)."""
    info = server_info(source, timeout=timeout)
    if not position.server:
        return "the stored position records no server identity"
    if position.server != info.identity:
        # Another server: resumable by GTID when it has our history (a promoted replica).
        lacking = lacks_history(source, info, position, timeout=timeout)
        if lacking is None:
            return None
        return f"it was taken on {position.server}, this server is {info.identity}: {lacking}"
    if info.flavor != "mariadb":
        return None  # MySQL: server_uuid is the identity (RESET MASTER is not told apart)
    with _connect(source, timeout) as conn, conn.cursor() as cur:
        try:
            here = _gtid_at(cur, info, position)
        except pymysql.MySQLError as exc:
            return f"the server cannot place {position}: {exc.args[-1]}"
    if here is None:
        return f"the server cannot place {position} in its binlog"
    if _gtid_domains(here) != _gtid_domains(position.gtid):
        return f"GTID state at {position} is {here!r} here, {position.gtid!r} when stored"
    return None


def _gtid_domains(state: str) -> dict[str, str]:
    return dict(part.strip().split("-", 1) for part in state.split(",") if part.strip())


def changed_server(
    source: SourceAddress,
    before: ServerInfo | None,
    now: ServerInfo,
    position: BinlogPosition | None,
    *,
    timeout: float = 5.0,
) -> bool:
    """Whether the server behind the address changed from ``before`` to ``now`` (a promoted
    replica: True) or not (False); raises `PositionUnavailable` when the new one cannot
    continue ``position``'s history (no GTIDs, or another history): what was missed is then
    unknown, as after a purged binlog."""
    if before is None or before.identity == now.identity:
        return False
    lacking = (
        "no position was handed out yet"
        if position is None
        else lacks_history(source, now, position, timeout=timeout)
    )
    if lacking is not None:
        raise PositionUnavailable(
            f"the server changed from {before.identity} to {now.identity} and {lacking}"
        )
    return True
