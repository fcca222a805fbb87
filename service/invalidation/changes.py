"""What the binlog follower hands out: positions, row changes and per-transaction batches.

Plain data, no I/O: the follower produces these, the planner (``planner.order_changes``) reads them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

ChangeKind = Literal["insert", "update", "delete", "reset"]
KeyValue = tuple[object, ...]


@dataclass(frozen=True, order=True)
class BinlogPosition:
    """A point in one server's binary log: resume *after* everything before it.

    A file:offset names a place in *a* binlog, not in *this server's*: after ``RESET MASTER`` or
    on a replaced server the same offset can be a valid event of another history. So a position
    also carries the server's identity (``server``: flavour and server_id / server_uuid) and, on
    MariaDB, the GTID state at that point (``gtid``: ``domain-server-seq`` per domain), which the
    server can recompute for the file:offset (``BINLOG_GTID_POS``) before a resume; where GTIDs
    are on, the follower resumes after that state, on any server whose history holds it (a
    promoted replica). Neither takes part in ordering: positions of one stream compare by file
    and offset, and positions of two servers do not compare.
    """

    log_file: str
    log_pos: int
    server: str = field(default="", compare=False)
    gtid: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"{self.log_file}:{self.log_pos}"

    def stored(self) -> str:
        """The text kept in Redis: ``FILE:POS`` plus ``|server=...|gtid=...``."""
        return f"{self}|server={self.server}|gtid={self.gtid}"

    def with_identity(self, server: str, gtid: str) -> BinlogPosition:
        return BinlogPosition(self.log_file, self.log_pos, server, gtid)

    @classmethod
    def parse(cls, text: str) -> BinlogPosition:
        """Inverse of `str()` and `stored()`, for positions stored as text (e.g. in Redis).
        A bare ``FILE:POS`` (written before identities existed) parses with none."""
        head, *extras = text.split("|")
        log_file, sep, pos = head.rpartition(":")
        if not sep or not log_file or not pos.isdigit():
            raise ValueError(f"not a binlog position: {text!r} (expected FILE:POS)")
        fields = dict(extra.partition("=")[::2] for extra in extras)
        return cls(log_file, int(pos), fields.get("server", ""), fields.get("gtid", ""))


@dataclass(frozen=True)
class RowChange:
    """One row written by a committed transaction, or a `reset` of a whole table.

    `before`/`after` hold the primary key values (in key column order) the row had before and
    after the change: insert has only `after`, delete only `before`, update both (they differ
    when the key itself changed). `reset` means "anything in this table may have changed" and
    comes from DDL/TRUNCATE, from tables without a primary key, from statement-logged DML
    and from row events that cannot be read; `table` is None when the whole `schema` is
    concerned, and `schema` is None when even that is unknown (invalidate everything).
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

    @classmethod
    def rows(
        cls,
        kind: ChangeKind,
        schema: str,
        table: str,
        key_columns: tuple[str, ...],
        keys: Iterable[tuple[KeyValue | None, KeyValue | None]],
    ) -> list[RowChange]:
        """One change per ``(before, after)`` of ``keys``, equal to ``RowChange(kind, schema,
        table, key_columns, before=..., after=...)`` but made without the frozen dataclass's
        ``__init__`` (seven ``object.__setattr__`` calls): a bulk write hands out one change per
        row, and building them was a quarter of the invalidator's time at 50k rows/s."""
        new = object.__new__
        made = []
        for before, after in keys:
            change = new(cls)
            change.__dict__.update(
                kind=kind,
                schema=schema,
                table=table,
                key_columns=key_columns,
                before=before,
                after=after,
                statement=None,
            )
            made.append(change)
        return made

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

    A large transaction arrives in several batches: every one but the last has ``partial=True``
    and the position of the transaction's *start* (the last boundary), so applying a chunk early
    never records progress past rows not yet read; the last one carries the commit's position.
    An empty `changes` list with `committed_at=None` and not partial is an idle heartbeat:
    nothing new was committed, and `position` is where the follower stands (safe to store).
    """

    position: BinlogPosition
    changes: list[RowChange] = field(default_factory=list)
    committed_at: float | None = None  # unix seconds of the commit event (whole seconds)
    partial: bool = False

    @property
    def idle(self) -> bool:
        return self.committed_at is None and not self.partial
