"""Read only the integer columns the invalidator needs (ids) out of a row event's raw bytes.

mysql-replication decodes every column of every row in Python: about 85 us per row of the orders
table, and a hard failure on bytes its codecs reject that MariaDB accepts (``X'81'`` in a latin1
column: cp1252 has no 0x81). The invalidator needs the primary key and nothing else, so this
module walks the row image with the table map's column types, *skipping* every other column by its
length and reading the wanted integers directly: no text is ever decoded, and a row costs a few
microseconds. A column type it does not know how to skip raises ``UnreadableRows``; the caller
treats the table as reset (invalidate everything), never as a stall.

Row image layout (MySQL/MariaDB "rows event" v1/v2, binlog_row_image=FULL): per row a null bitmap
over the present columns, then each present non-null column in the binary form the table map's
type and metadata give; an update carries a before and an after image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.row_event import UpdateRowsEvent

from service.compat import mysql_replication

__all__ = ["RawRows", "RowLayout", "UnreadableRows", "raw_rows", "read_keys", "read_rows"]

_FIXED: Final = {
    FIELD_TYPE.TINY: 1,
    FIELD_TYPE.SHORT: 2,
    FIELD_TYPE.INT24: 3,
    FIELD_TYPE.LONG: 4,
    FIELD_TYPE.LONGLONG: 8,
    FIELD_TYPE.FLOAT: 4,
    FIELD_TYPE.DOUBLE: 8,
    FIELD_TYPE.YEAR: 1,
    FIELD_TYPE.DATE: 3,
    FIELD_TYPE.TIME: 3,
    FIELD_TYPE.DATETIME: 8,
    FIELD_TYPE.TIMESTAMP: 4,
}
_INTEGERS: Final = frozenset(
    {FIELD_TYPE.TINY, FIELD_TYPE.SHORT, FIELD_TYPE.INT24, FIELD_TYPE.LONG, FIELD_TYPE.LONGLONG}
)
_DIG2BYTES: Final = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


class UnreadableRows(Exception):
    """A row event this module cannot walk (unknown type, truncated image, non-integer key)."""


def _decimal_size(precision: int, scale: int) -> int:
    whole = precision - scale
    return (whole // 9) * 4 + _DIG2BYTES[whole % 9] + (scale // 9) * 4 + _DIG2BYTES[scale % 9]


def _column_size(column: Any) -> tuple[int, int]:  # noqa: PLR0911 - one answer per type family
    """(fixed size, length-prefix size) of one column's binary form; exactly one is non-zero."""
    kind = column.type
    if kind in _FIXED:
        return _FIXED[kind], 0
    if kind == FIELD_TYPE.NEWDECIMAL:
        return _decimal_size(column.precision, column.decimals), 0
    if kind in (FIELD_TYPE.VARCHAR, FIELD_TYPE.STRING, FIELD_TYPE.VAR_STRING):
        return 0, 2 if column.max_length > 255 else 1
    if kind in (FIELD_TYPE.ENUM, FIELD_TYPE.SET):
        return int(column.size), 0
    if kind in (FIELD_TYPE.BLOB, FIELD_TYPE.GEOMETRY, FIELD_TYPE.JSON):
        return 0, int(column.length_size)
    if kind in (FIELD_TYPE.DATETIME2, FIELD_TYPE.TIMESTAMP2, FIELD_TYPE.TIME2):
        base = {FIELD_TYPE.DATETIME2: 5, FIELD_TYPE.TIMESTAMP2: 4, FIELD_TYPE.TIME2: 3}[kind]
        return base + (int(column.fsp) + 1) // 2, 0
    if kind == FIELD_TYPE.BIT:
        return int(column.bytes), 0
    raise UnreadableRows(f"column {column.name!r} has a type this reader cannot skip ({kind})")


@dataclass(frozen=True)
class FullImage:
    """The walk of a row image holding every column and no NULL (binlog_row_image=FULL, the
    common row), worked out once per table: the wanted integers lie in the leading run of
    fixed-size columns at fixed offsets, then each variable-length column is one length read
    and a jump over it and the fixed columns after it."""

    columns: int  # the bitmap of present columns must name all of them
    null_bytes: int
    null_mask: int  # the columns' bits of the NULL bitmap (MariaDB sets the unused ones)
    keys: tuple[tuple[int, int, bool], ...]  # per wanted column: offset in the lead, size, signed
    lead: int  # bytes of fixed columns before the first variable-length one
    tail: tuple[tuple[int, int], ...]  # per variable column: (length-prefix size, fixed after)

    @classmethod
    def of(cls, plan: Sequence[tuple[int, int, int, int, bool]], wanted: int) -> FullImage | None:
        """None when a wanted column comes after a variable-length one (the general walk)."""
        keys: list[tuple[int, int, int, bool]] = []
        lead = 0
        tail: list[list[int]] = []
        for _, fixed, prefix, slot, signed in plan:
            if prefix:
                tail.append([prefix, 0])
            elif tail:
                if slot >= 0:
                    return None
                tail[-1][1] += fixed
            else:
                if slot >= 0:
                    keys.append((slot, lead, fixed, signed))
                lead += fixed
        if len(keys) != wanted:
            return None
        null_bytes = (len(plan) + 7) // 8
        return cls(
            len(plan),
            null_bytes,
            (1 << len(plan)) - 1,
            tuple((offset, size, signed) for _, offset, size, signed in sorted(keys)),
            lead,
            tuple((prefix, after) for prefix, after in tail),
        )

    def present(self, bitmap: bytes) -> bool:
        """True when ``bitmap`` (a rows event's columns-present bitmap) names every column."""
        full, rest = divmod(self.columns, 8)
        return bitmap[:full] == b"\xff" * full and (
            not rest or bitmap[full] & ((1 << rest) - 1) == (1 << rest) - 1
        )


@dataclass(frozen=True)
class RowLayout:
    """How to walk one table's row image: each column's size, and which ones to read."""

    # Per column: (index, fixed size, length-prefix size, slot among the wanted or -1, signed).
    plan: tuple[tuple[int, int, int, int, bool], ...]
    wanted: int  # how many columns are read
    full: FullImage | None = None  # the fast walk of a complete image without NULLs

    @classmethod
    def of(cls, columns: Sequence[Any], names: Sequence[str]) -> RowLayout:
        by_name = {column.name: index for index, column in enumerate(columns)}
        slots: dict[int, int] = {}
        for slot, name in enumerate(names):
            index = by_name.get(name)
            if index is None or columns[index].type not in _INTEGERS:
                raise UnreadableRows(f"column {name!r} is missing or not an integer")
            slots[index] = slot
        plan = []
        for index, column in enumerate(columns):
            fixed, prefix = _column_size(column)
            plan.append((index, fixed, prefix, slots.get(index, -1), not column.unsigned))
        return cls(tuple(plan), len(names), FullImage.of(plan, len(names)))

    def read_image(self, data: bytes, pos: int, present: bytes) -> tuple[tuple[int, ...], int]:
        """The wanted values of the row image at ``pos`` and where the next image starts."""
        present_count = sum(bin(byte).count("1") for byte in present)
        null_bytes = (present_count + 7) // 8
        nulls = data[pos : pos + null_bytes]
        pos += null_bytes
        values: list[int | None] = [None] * self.wanted
        null_index = 0
        for index, fixed, prefix, slot, signed in self.plan:
            if not present[index >> 3] & (1 << (index & 7)):
                continue  # not in the image (binlog_row_image=MINIMAL)
            is_null = nulls[null_index >> 3] & (1 << (null_index & 7))
            null_index += 1
            if is_null:
                continue
            if fixed:
                if slot >= 0:
                    values[slot] = int.from_bytes(data[pos : pos + fixed], "little", signed=signed)
                pos += fixed
            else:
                pos += prefix + int.from_bytes(data[pos : pos + prefix], "little")
        if pos > len(data):
            raise UnreadableRows("row image runs past the end of the event")
        if None in values:
            raise UnreadableRows("a key column is NULL or absent from the row image")
        return tuple(values), pos  # type: ignore[arg-type]


def read_rows(
    data: bytes, pos: int, end: int, layout: RowLayout, *, first: bytes, second: bytes | None
) -> list[tuple[tuple[int, ...], ...]]:
    """Per row from ``pos`` to ``end``: ``(values,)``, or ``(before, after)`` when ``second``
    (the update's after-image bitmap) is given."""
    full = layout.full
    if full is not None and full.present(first) and (second is None or full.present(second)):
        return _read_full_rows(data, pos, end, layout, full, update=second is not None)
    rows: list[tuple[tuple[int, ...], ...]] = []
    try:
        while pos < end:
            before, pos = layout.read_image(data, pos, first)
            if second is not None:
                after, pos = layout.read_image(data, pos, second)
                rows.append((before, after))
            else:
                rows.append((before,))
    except IndexError:
        raise UnreadableRows("row image truncated") from None
    if pos != end:
        raise UnreadableRows("row images do not end where the event does")
    return rows


def _read_full_rows(
    data: bytes, pos: int, end: int, layout: RowLayout, full: FullImage, *, update: bool
) -> list[tuple[tuple[int, ...], ...]]:
    """``read_rows`` for complete images (every column present), the loop written out: an
    image with a NULL column takes the general walk, so every row is read the same either
    way (tests/unit/test_rows.py compares the two)."""
    null_bytes, null_mask, lead, tail = full.null_bytes, full.null_mask, full.lead, full.tail
    single = full.keys[0] if len(full.keys) == 1 else None
    from_bytes = int.from_bytes
    ones = b"\xff" * ((full.columns + 7) // 8)
    images: list[tuple[int, ...]] = []  # every image in order; an update's come in pairs
    append = images.append
    try:
        while pos < end:
            if from_bytes(data[pos : pos + null_bytes], "little") & null_mask:
                values, pos = layout.read_image(data, pos, ones)
            else:
                pos += null_bytes
                if single is not None:
                    offset, size, signed = single
                    values = (
                        from_bytes(
                            data[pos + offset : pos + offset + size], "little", signed=signed
                        ),
                    )
                else:
                    values = tuple(
                        from_bytes(data[pos + o : pos + o + n], "little", signed=sg)
                        for o, n, sg in full.keys
                    )
                pos += lead
                for prefix, after in tail:
                    if prefix == 1:
                        pos += 1 + data[pos] + after
                    elif prefix == 2:
                        pos += 2 + (data[pos] | data[pos + 1] << 8) + after
                    else:
                        pos += prefix + from_bytes(data[pos : pos + prefix], "little") + after
            append(values)
    except IndexError:
        raise UnreadableRows("row image truncated") from None
    if pos != end or (update and len(images) % 2):
        raise UnreadableRows("row images do not end where the event does")
    if update:
        return list(zip(images[0::2], images[1::2], strict=True))
    return [(values,) for values in images]


def read_keys(event: Any, layout: RowLayout) -> list[tuple[tuple[int, ...], ...]]:
    """The same for an event the library parsed (its header read, rows not): consumes the rest
    of its payload."""
    if type(event).__name__.startswith("Partial"):
        raise UnreadableRows("partial JSON updates are not read")
    data = mysql_replication.rows_payload(event)
    first, second = mysql_replication.present_columns(event)
    second = second if isinstance(event, UpdateRowsEvent) else None
    return read_rows(data, 0, len(data), layout, first=first, second=second)


# Raw rows events (the follower's fast path, which never builds the library's event objects).
WRITE_ROWS: Final = frozenset({0x17, 0x1E})
UPDATE_ROWS: Final = frozenset({0x18, 0x1F})
DELETE_ROWS: Final = frozenset({0x19, 0x20})
ROWS_EVENTS: Final = WRITE_ROWS | UPDATE_ROWS | DELETE_ROWS
_V2: Final = frozenset({0x1E, 0x1F, 0x20})
HEADER: Final = 19  # timestamp 4, type 1, server_id 4, event size 4, next position 4, flags 2


class RawRows(NamedTuple):
    """A rows event's header, read from the packet: where its row images start and end (a
    tuple: one is made per event, and a row's own event is the common case under triggers)."""

    kind: int
    table_id: int
    next_position: int
    start: int
    end: int
    first: bytes
    second: bytes | None


def raw_rows(data: bytes, offset: int, checksum: bool) -> RawRows:
    """Parse the header of the rows event at ``data[offset:]`` (post-header 8 or 10 bytes)."""
    kind = data[offset + 4]
    next_position = int.from_bytes(data[offset + 13 : offset + 17], "little")
    pos = offset + HEADER
    table_id = int.from_bytes(data[pos : pos + 6], "little")
    pos += 8  # table id, flags
    if kind in _V2:
        pos += int.from_bytes(data[pos : pos + 2], "little")  # extra data, its length included
    columns = data[pos]
    if columns < 251:
        pos += 1
    else:
        width = {252: 2, 253: 3, 254: 8}.get(columns)
        if width is None:
            raise UnreadableRows("bad column count in a rows event")
        columns = int.from_bytes(data[pos + 1 : pos + 1 + width], "little")
        pos += 1 + width
    size = (columns + 7) // 8
    first = data[pos : pos + size]
    pos += size
    second = None
    if kind in UPDATE_ROWS:
        second = data[pos : pos + size]
        pos += size
    return RawRows(
        kind, table_id, next_position, pos, len(data) - (4 if checksum else 0), first, second
    )
