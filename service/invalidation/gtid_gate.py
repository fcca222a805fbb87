"""Which GTID state each step records for the replica fills (INVALIDATE's ARGV[9]).

The rule the replica fills rest on: the ``gtid`` key always names a state that includes every
transaction whose invalidation has been applied (docs/guarantees.md, "MySQL replicas"). So:

- A drop records the stream's state *after* the transaction it applies, in the same atomic step.
- A recheck that records progress (position and checkpoint, later) records that position's
  state too, so the key stays current while nothing is dropped (the heartbeat keeps it moving),
  but only if no drop has recorded a later one: a state never moves back within a term.
- A transaction read only in part (a chunk of a large one): its own GTID is not in the state
  yet, so the drop records ``-`` (read the primary) until a later step records the full state.
- After a repair of the block counts (schema change, drift), the repair's own transaction is
  not one the planner invalidates for: steps record ``-`` until the stream has passed the
  primary's state at the repair (``hold``), so no replica serves the counts before it.
- A binlog without GTIDs: every drop records ``-``; fills read the primary, as before replicas.

Pure: the steps ask, Redis is told.
"""

from __future__ import annotations

from service.invalidation import gtid
from service.invalidation.changes import BinlogPosition, ChangeBatch
from service.orders import gtid_waits
from service.orders.gtid_waits import Dialect

LEAVE = ""  # INVALIDATE's ARGV[9] when the key stays as it is


class GtidGate:
    """The state the next step records, and the hold a repair puts on replica fills."""

    def __init__(self) -> None:
        self._floor = ""
        self._last_drop: BinlogPosition | None = None
        self.dialect: Dialect | None = None

    def new_term(self) -> None:
        """A new leader replays from the stored position: no drop of this term yet."""
        self._last_drop = None

    def drop_state(self, batch: ChangeBatch) -> str:
        """The state a drop of ``batch`` records: the stream's state after it, or ``-``."""
        self._last_drop = batch.position
        state = batch.position.gtid
        if batch.partial or not state:
            return gtid_waits.PRIMARY_ONLY
        return self._unless_held(state) or gtid_waits.PRIMARY_ONLY

    def progress_state(self, position: BinlogPosition | None) -> str:
        """The state a recheck recording ``position`` records, or ``LEAVE``."""
        if position is None or not position.gtid:
            return LEAVE
        last = self._last_drop
        if last is not None and position.server == last.server and position < last:
            return LEAVE  # a drop already recorded a later state (or ``-``)
        # (another server: a promoted replica, whose file:offset says nothing about the old
        # one's; its state carries the old history, so it is not older than the last drop's)
        return self._unless_held(position.gtid)

    def _unless_held(self, state: str) -> str:
        dialect = gtid_waits.dialect_of(state)
        self.dialect = dialect or self.dialect
        if self._floor:
            if dialect is None or not _contains(dialect, state, self._floor):
                return LEAVE
            self._floor = ""
        return state

    def hold(self, primary_state: str) -> None:
        """Until the stream reaches ``primary_state``, steps record no state past ``-`` ('' =
        no hold can be measured: the next step's own state is all there is)."""
        self._floor = primary_state


def _contains(dialect: Dialect, state: str, floor: str) -> bool:
    """Whether ``state`` includes every transaction of ``floor`` (an unreadable one: no)."""
    try:
        return gtid.missing(dialect, state, floor) is None
    except gtid.GtidError:
        return False
