"""The id-only row reader: it walks a row image by column types, reads the integer key and
skips everything else without decoding it (pure logic; the real events are in the binlog tests)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pymysqlreplication.constants import FIELD_TYPE

from service.invalidation.rows import RowLayout, UnreadableRows, read_rows


def column(name: str, kind: int, **meta: object) -> SimpleNamespace:
    return SimpleNamespace(name=name, type=kind, unsigned=meta.pop("unsigned", False), **meta)


ORDERS = [
    column("id", FIELD_TYPE.LONGLONG, unsigned=True),
    column("name", FIELD_TYPE.VARCHAR, max_length=400),
    column("amount", FIELD_TYPE.NEWDECIMAL, precision=12, decimals=2),
    column("status", FIELD_TYPE.ENUM, size=1),
    column("note", FIELD_TYPE.VARCHAR, max_length=20),
    column("at", FIELD_TYPE.DATETIME2, fsp=6),
]


def image(order_id: int, name: bytes, note: bytes | None) -> bytes:
    nulls = bytes([0b10000 if note is None else 0])
    body = order_id.to_bytes(8, "little") + len(name).to_bytes(2, "little") + name
    body += bytes(6)  # DECIMAL(12,2): 4 + 1 bytes for 10 integer digits, 1 for 2 decimals
    body += b"\x02"
    if note is not None:
        body += bytes([len(note)]) + note
    return nulls + body + bytes(8)  # DATETIME2(6): 5 + 3


ALL = b"\x3f"  # six columns present


def test_the_key_is_read_and_undecodable_text_is_skipped_unread() -> None:
    layout = RowLayout.of(ORDERS, ["id"])
    data = image(7, b"caf\x81", b"\xff\xfe") + image(2**63 + 5, b"", None)
    assert read_rows(data, 0, len(data), layout, first=ALL, second=None) == [
        ((7,),),
        ((2**63 + 5,),),
    ]


def test_an_update_yields_the_key_before_and_after() -> None:
    layout = RowLayout.of(ORDERS, ["id"])
    data = image(3, b"a", None) + image(4, b"b", b"x")
    assert read_rows(data, 0, len(data), layout, first=ALL, second=ALL) == [((3,), (4,))]


def test_a_truncated_or_overlong_image_is_unreadable_never_guessed() -> None:
    layout = RowLayout.of(ORDERS, ["id"])
    data = image(3, b"abc", None)
    with pytest.raises(UnreadableRows):
        read_rows(data[:-3], 0, len(data) - 3, layout, first=ALL, second=None)
    with pytest.raises(UnreadableRows):
        read_rows(data + b"\x00", 0, len(data) + 1, layout, first=ALL, second=None)


def test_a_column_type_it_cannot_skip_or_a_non_integer_key_is_unreadable() -> None:
    with pytest.raises(UnreadableRows, match="cannot skip"):
        RowLayout.of([*ORDERS, column("v", 0xF2)], ["id"])
    with pytest.raises(UnreadableRows, match="not an integer"):
        RowLayout.of(ORDERS, ["name"])
