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


def at(offset: int, state: str) -> BinlogPosition:
    return BinlogPosition("b.000001", offset, "s", state)


def test_progress_keeps_the_state_current_while_nothing_is_dropped() -> None:
    """The heartbeat's progress records its state: fills can use replicas from the start."""
    assert GtidGate().progress_state(at(100, "0-1-3")) == "0-1-3"
    assert GtidGate().progress_state(None) == ""
    assert GtidGate().progress_state(at(100, "")) == ""


def test_a_recheck_older_than_the_last_drop_never_moves_the_state_back() -> None:
    gate = GtidGate()
    gate.drop_state(ChangeBatch(at(500, "0-1-9"), [], 1.0))
    assert gate.progress_state(at(300, "0-1-7")) == ""  # leave 0-1-9
    assert gate.progress_state(at(500, "0-1-9")) == "0-1-9"
    assert gate.progress_state(at(600, "0-1-10")) == "0-1-10"


def test_a_half_read_transaction_is_replaced_only_by_a_state_past_it() -> None:
    gate = GtidGate()
    assert gate.drop_state(ChangeBatch(at(400, "0-1-6"), [], None, partial=True)) == "-"
    assert gate.progress_state(at(300, "0-1-6")) == ""  # before the transaction: leave '-'
    assert gate.progress_state(at(700, "0-1-7")) == "0-1-7"  # its commit


def test_a_new_term_forgets_the_last_drop() -> None:
    gate = GtidGate()
    gate.drop_state(ChangeBatch(at(500, "0-1-9"), [], 1.0))
    gate.new_term()
    assert gate.progress_state(at(300, "0-1-7")) == "0-1-7"


def test_a_hold_also_stops_progress_until_the_stream_passes_the_repair() -> None:
    gate = GtidGate()
    gate.hold("0-1-9")
    assert gate.progress_state(at(100, "0-1-8")) == ""
    assert gate.progress_state(at(200, "0-1-9")) == "0-1-9"


def test_a_hold_on_mysql_ends_when_the_stream_contains_the_primary_set() -> None:
    source = "3E11FA47-71CA-11E1-9E33-C80AA9429562"
    gate = GtidGate()
    gate.hold(f"{source}:1-10")
    assert gate.progress_state(at(100, f"{source}:1-9")) == ""
    assert gate.progress_state(at(200, f"{source}:1-10")) == f"{source}:1-10"


def test_a_promoted_server_continues_the_domain_and_ends_the_hold() -> None:
    gate = GtidGate()
    gate.hold("0-1-10")
    assert gate.progress_state(at(100, "0-2-11")) == "0-2-11"


def test_after_a_promotion_offsets_of_another_server_are_not_compared() -> None:
    """The new primary's binlog starts again at a low file:offset; its state is the newer."""
    gate = GtidGate()
    gate.drop_state(ChangeBatch(BinlogPosition("old.000007", 900, "a", "0-1-9"), [], 1.0))
    promoted = BinlogPosition("new.000001", 300, "b", "0-2-10")
    assert gate.progress_state(promoted) == "0-2-10"
