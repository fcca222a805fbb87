"""Which server the binlog follower reads, probed at every connection: the same one, a replica
promoted since (followed by GTID when it has our history, and counted), or another history
(refused: `PositionUnavailable`, as after a purged binlog).

The address the follower dials (a DNS name, a VIP, a managed endpoint) moves to the new primary
on a failover; the follower notices it at its next connection, including the ones the library
makes by itself (the dump's first, fake rotate carries the serving server's id).
"""

from __future__ import annotations

import logging
from typing import Any

from service.compat import mysql_replication
from service.invalidation import gtid
from service.invalidation.changes import BinlogPosition
from service.invalidation.mysql_source import (
    ServerInfo,
    ServerNotSuitable,
    SourceAddress,
    changed_server,
    check_server,
)

log = logging.getLogger(__name__)


class ServerMoved(Exception):
    """A stream by file and offset that the library reconnected to another server: its
    offsets mean nothing there, so the follower reconnects by GTID from its last boundary."""


class ServerWatch:
    """The server behind the follower's address, and how many times it changed."""

    def __init__(self, source: SourceAddress, follower_id: int, timeout: float) -> None:
        self._source = source
        self._follower_id = follower_id
        self._timeout = timeout
        self.info: ServerInfo | None = None
        self.primary_changes = 0

    def probe(self, position: BinlogPosition | None) -> ServerInfo:
        """Check the server now at the address can continue ``position`` (raises otherwise)."""
        info = check_server(self._source, timeout=self._timeout)
        if info.server_id == self._follower_id:
            raise ServerNotSuitable(
                f"server_id {self._follower_id} is the server's own; give the follower another"
            )
        before, self.info = self.info, info
        if changed_server(self._source, before, info, position, timeout=self._timeout):
            self.primary_changes += 1
            log.warning(
                "the binlog's server changed from %s to %s; following it by GTID after %s",
                before.identity if before is not None else "",
                info.identity,
                position.gtid if position is not None else "",
            )
        return info

    def dump_started(self, event: Any, position: BinlogPosition | None, by_gtid: bool) -> None:
        """On a rotate: a dump's first one (timestamp 0) from another server_id means the
        library reconnected to another server. A GTID dump is valid there once the history
        checks out; a file-and-offset dump is not (`ServerMoved`)."""
        if event.timestamp != 0 or self.info is None:
            return
        if mysql_replication.event_server_id(event) == self.info.server_id:
            return
        self.probe(position)
        if not by_gtid:
            raise ServerMoved(f"the binlog's server is now {self.info.identity}")

    def resumes_by_gtid(self, start: BinlogPosition) -> bool:
        """Resume after ``start``'s GTID state when it has one this server can serve from."""
        return bool(start.gtid) and self.info is not None and self.info.gtids

    def after(self, state: str, gtid_text: str | None) -> str | None:
        """The GTID state after the transaction ``gtid_text`` committed, or None when not
        tracked: MariaDB's always are; MySQL's only from a whole starting set (a set of the
        GTIDs seen alone would make a GTID dump replay the whole binlog)."""
        info = self.info
        if gtid_text is None or info is None or not info.gtids:
            return None
        if info.flavor == "mysql" and not state:
            return None
        return gtid.merge(info.flavor, state, gtid_text)

    @property
    def identity(self) -> str:
        return self.info.identity if self.info is not None else ""
