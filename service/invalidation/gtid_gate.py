"""Which GTID state each drop records for the replica fills (INVALIDATE's ARGV[9]).

A drop records the state *after* the transaction it applies, so a lease taken after the drop
makes its filler wait for that transaction on a replica. Pure: the steps ask, Redis is told.

- A transaction read only in part (a chunk of a large one): its own GTID is not known yet, so
  the drop records ``-`` (read the primary) until its commit's drop records the full state.
- After a repair of the block counts (schema change, drift), the repair's own transaction is
  not one the planner invalidates for: drops record ``-`` until the stream has passed the
  primary's state at the repair (``hold``), so no replica serves the counts before it.
- A binlog without GTIDs: every drop records ``-``; fills read the primary, as before replicas.
"""

from __future__ import annotations

from service.invalidation.changes import ChangeBatch
from service.orders import gtid
from service.orders.gtid import Dialect


class GtidGate:
    """The state the next drop records, and the hold a repair puts on replica fills."""

    def __init__(self) -> None:
        self._floor = ""
        self.dialect: Dialect | None = None

    def drop_state(self, batch: ChangeBatch) -> str:
        """The state a drop of ``batch`` records: the stream's state after it, or ``-``."""
        state = batch.position.gtid
        if batch.partial or not state:
            return gtid.PRIMARY_ONLY
        self.dialect = gtid.dialect_of(state) or self.dialect
        if self._floor:
            if not gtid.covers(state, self._floor):
                return gtid.PRIMARY_ONLY
            self._floor = ""
        return state

    def hold(self, primary_state: str) -> None:
        """Until the stream reaches ``primary_state``, drops record ``-`` ('' = no hold can be
        measured: the next drop's own state is all there is)."""
        self._floor = primary_state
