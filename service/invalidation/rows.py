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
from typing import Any, Final

from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.row_event import UpdateRowsEvent

__all__ = ["RowLayout", "UnreadableRows", "read_keys"]

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
class RowLayout:
    """How to walk one table's row image: each column's size, and which ones to read."""

    sizes: tuple[tuple[int, int], ...]  # (fixed, prefix) per column
    wanted: tuple[int, ...]  # column indexes to read, in the order the caller asked
    signed: tuple[bool, ...]  # per wanted column

    @classmethod
    def of(cls, columns: Sequence[Any], names: Sequence[str]) -> RowLayout:
        by_name = {column.name: index for index, column in enumerate(columns)}
        wanted = []
        for name in names:
            index = by_name.get(name)
            if index is None or columns[index].type not in _INTEGERS:
                raise UnreadableRows(f"column {name!r} is missing or not an integer")
            wanted.append(index)
        return cls(
            tuple(_column_size(column) for column in columns),
            tuple(wanted),
            tuple(not columns[index].unsigned for index in wanted),
        )

    def read_image(self, data: bytes, pos: int, present: bytes) -> tuple[tuple[int, ...], int]:
        """The wanted values of the row image at ``pos`` and where the next image starts."""
        count = len(self.sizes)
        present_count = sum(bin(byte).count("1") for byte in present)
        nulls = data[pos : pos + (present_count + 7) // 8]
        pos += (present_count + 7) // 8
        values: dict[int, int] = {}
        null_index = 0
        for index in range(count):
            if not present[index >> 3] & (1 << (index & 7)):
                continue  # not in the image (binlog_row_image=MINIMAL)
            is_null = nulls[null_index >> 3] & (1 << (null_index & 7))
            null_index += 1
            if is_null:
                continue
            fixed, prefix = self.sizes[index]
            if fixed:
                if index in self.wanted:
                    values[index] = int.from_bytes(
                        data[pos : pos + fixed],
                        "little",
                        signed=self.signed[self.wanted.index(index)],
                    )
                pos += fixed
            else:
                length = int.from_bytes(data[pos : pos + prefix], "little")
                pos += prefix + length
        if pos > len(data):
            raise UnreadableRows("row image runs past the end of the event")
        try:
            return tuple(values[index] for index in self.wanted), pos
        except KeyError:
            raise UnreadableRows("a key column is NULL or absent from the row image") from None


def read_keys(event: Any, layout: RowLayout) -> list[tuple[tuple[int, ...], ...]]:
    """Per row, the wanted values of each image: ``(values,)`` for inserts and deletes,
    ``(before, after)`` for updates. Consumes the event's remaining payload."""
    data = bytes(event.packet.read(event.event_size - event.packet.read_bytes))
    update = isinstance(event, UpdateRowsEvent)
    first = event.columns_present_bitmap
    second = event.columns_present_bitmap2 if update else first
    if getattr(event, "is_partial_json_update", False) or type(event).__name__.startswith(
        "Partial"
    ):
        raise UnreadableRows("partial JSON updates are not read")
    rows: list[tuple[tuple[int, ...], ...]] = []
    pos = 0
    try:
        while pos < len(data):
            before, pos = layout.read_image(data, pos, first)
            if update:
                after, pos = layout.read_image(data, pos, second)
                rows.append((before, after))
            else:
                rows.append((before,))
    except IndexError:
        raise UnreadableRows("row image truncated") from None
    return rows
