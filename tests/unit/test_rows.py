"""The id-only row reader: it walks a row image by column types, reads the integer key and
skips everything else without decoding it (pure logic; the real events are in the binlog tests)."""

from __future__ import annotations

import dataclasses
import random
from types import SimpleNamespace

import pytest
from pymysqlreplication.constants import FIELD_TYPE

from service.invalidation.changes import RowChange
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


def test_the_fast_walk_of_full_images_reads_what_the_general_walk_reads() -> None:
    """Complete images take the written-out loop; any with a NULL, and the unused bits of the
    NULL bitmap set (as MariaDB writes them), must give the same keys as the column walk."""
    layout = RowLayout.of(ORDERS, ["id"])
    assert layout.full is not None
    general = dataclasses.replace(layout, full=None)
    rng = random.Random(13)
    data = b""
    for order_id in range(1, 401):
        note = None if rng.random() < 0.3 else bytes(rng.randrange(256) for _ in range(5))
        name = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        row = bytearray(image(order_id * 7919, name, note))
        row[0] |= 0b11000000 if rng.random() < 0.5 else 0  # bits past the six columns
        data += bytes(row)
    for second in (None, ALL):
        assert read_rows(data, 0, len(data), layout, first=ALL, second=second) == read_rows(
            data, 0, len(data), general, first=ALL, second=second
        )
    with pytest.raises(UnreadableRows):  # an update's after image missing
        read_rows(data[: len(image(1, b"", None))], 0, 51, layout, first=ALL, second=ALL)


def test_keys_after_a_variable_column_or_a_partial_image_take_the_general_walk() -> None:
    late_key = [ORDERS[1], ORDERS[0], *ORDERS[2:]]
    assert RowLayout.of(late_key, ["id"]).full is None
    layout = RowLayout.of(ORDERS, ["id"])
    data = image(9, b"ab", b"c")
    assert read_rows(data, 0, len(data), layout, first=b"\x7f", second=None) == [((9,),)]
    assert layout.full is not None
    assert not layout.full.present(b"\x1f")  # a column left out (binlog_row_image=MINIMAL)


def test_changes_made_in_bulk_equal_the_ones_the_constructor_makes() -> None:
    keys = [((1,), (1,)), ((2,), (9,)), (None, (4,)), ((5,), None)]
    made = RowChange.rows("update", "shop", "orders", ("id",), keys)
    assert made == [
        RowChange("update", "shop", "orders", ("id",), before=b, after=a) for b, a in keys
    ]
    assert hash(made[1]) == hash(RowChange("update", "shop", "orders", ("id",), (2,), (9,)))
    assert (made[1].before_id, made[1].after_id, made[0].statement) == (2, 9, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made[0].kind = "delete"  # type: ignore[misc]
