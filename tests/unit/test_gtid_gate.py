"""Which GTID state each drop records for replica fills."""

from __future__ import annotations

from service.invalidation.changes import BinlogPosition, ChangeBatch
from service.invalidation.gtid_gate import GtidGate


def batch(state: str, *, partial: bool = False) -> ChangeBatch:
    return ChangeBatch(BinlogPosition("b.000001", 4, "s", state), [], 1.0, partial)


def test_a_drop_records_the_state_after_its_transaction() -> None:
    assert GtidGate().drop_state(batch("0-1-7")) == "0-1-7"


def test_a_transaction_read_in_part_sends_fills_to_the_primary() -> None:
    """Its own GTID is not in the state yet: a replica could pass the wait without it."""
    assert GtidGate().drop_state(batch("0-1-6", partial=True)) == "-"


def test_a_binlog_without_gtids_sends_fills_to_the_primary() -> None:
    assert GtidGate().drop_state(batch("")) == "-"


def test_after_a_repair_drops_hold_fills_on_the_primary_until_the_stream_passes_it() -> None:
    gate = GtidGate()
    gate.drop_state(batch("0-1-5"))
    gate.hold("0-1-9")
    assert gate.drop_state(batch("0-1-8")) == "-"
    assert gate.drop_state(batch("0-1-9")) == "0-1-9"
    assert gate.drop_state(batch("0-1-10")) == "0-1-10"  # the hold is over
