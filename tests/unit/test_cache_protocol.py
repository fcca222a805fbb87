"""The cache protocol's Python side: the INVALIDATE argument layout and the message codec."""

from __future__ import annotations

import pytest

from service.cache.entries import TotalsEntry
from service.cache.keys import DROP, KEEP, Invalidation, Message, SetTotals


def test_totals_are_kept_dropped_or_set_by_type_not_by_a_magic_value() -> None:
    base = "p:s10:"
    assert Invalidation(totals=KEEP).script_args(base, 60)[2] == "-"
    assert Invalidation(totals=DROP).script_args(base, 60)[2] == ""
    assert Invalidation(totals=SetTotals(TotalsEntry(5, 7))).script_args(base, 60)[2] == "5|7"


def test_the_argument_layout_puts_single_pages_last_in_order() -> None:
    args = Invalidation(
        pages=frozenset({3, 1}),
        from_page=9,
        position="f:4",
        checkpoint_ms=12,
        fence=5,
        expected="f:3",
        gtid="0-1-7",
    ).script_args("p:s10:", 60)
    assert args == ["p:s10:", 9, "-", 60, "f:4", 12, 5, "f:3", "0-1-7", 1, 3]
    assert Invalidation(pages=frozenset({2})).script_args("p:s10:", 60)[6:] == ["", "", "", 2]
    expected = Invalidation(pages=frozenset({2}), expected="f:4|step=1").script_args("p:", 6)
    assert expected[7:] == ["f:4|step=1", "", 2]  # ARGV[8], ARGV[9] (no GTID state), pages


def test_the_gtid_state_is_argument_nine_and_empty_when_none() -> None:
    """ARGV[9] (index 8): the state a drop records for replica fills ('' leaves it)."""
    assert Invalidation().script_args("b:", 1)[8] == ""
    assert Invalidation(gtid="0-1-5,1-2-3").script_args("b:", 1)[8] == "0-1-5,1-2-3"


def test_no_checkpoint_is_an_empty_argument() -> None:
    assert Invalidation().script_args("b:", 1)[5] == ""


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"p9", Message(pages=frozenset({9}))),
        (b"p2 f5 t", Message(pages=frozenset({2}), from_page=5, totals=True)),
        (b"c1700000000123", Message(checkpoint_ms=1700000000123)),
        (b"", Message()),
    ],
)
def test_messages_parse(raw: bytes, message: Message) -> None:
    assert Message.parse(raw) == message
    assert Message.parse(message.encode()) == message


def test_an_unknown_token_is_refused_rather_than_ignored() -> None:
    with pytest.raises(ValueError, match="unknown token"):
        Message.parse(b"p1 x7")
