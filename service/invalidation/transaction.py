"""The transaction the follower is reading, and where its read of the stream is."""

from __future__ import annotations

from dataclasses import dataclass

from service.invalidation.changes import RowChange


class Transaction:
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


@dataclass
class ReadState:
    """Where ``_read_from`` is: the binlog file, the open transaction, and whether an event
    could not be read (everything is reset at the next boundary)."""

    log_file: str
    group: Transaction | None = None
    poisoned: bool = False
