"""The invalidator's checkpoint in Redis' clock, with a fake clock (issue 18 case 1).

The checkpoint says "every commit before this moment (Redis' clock) is applied". The moment is
when the newest heartbeat the step covers was sent, converted to Redis' clock from a ``TIME``
reading taken for this attempt, after the events were read. A step that waited on Redis (a
pause, an outage, a failover) must not claim the time it waited.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.invalidation.checkpoint import Checkpointer, vouched_ms


@dataclass
class World:
    """One time line: the invalidator's monotonic clock and a Redis whose clock may be stepped
    (a failover to a host whose clock differs)."""

    t: float = 100.0
    redis_offset_ms: float = 5_000_000.0

    def monotonic(self) -> float:
        return self.t

    def redis_ms(self, at: float | None = None) -> float:
        return (self.t if at is None else at) * 1000 + self.redis_offset_ms

    def time_command(self) -> tuple[int, int]:
        ms = self.redis_ms()
        return int(ms // 1000), int((ms % 1000) * 1000)


def test_the_moment_vouched_for_is_no_later_than_the_heartbeat_in_redis_clock() -> None:
    world = World()
    sent = world.t
    world.t += 0.2  # the heartbeat comes back through the binlog
    checkpoints = Checkpointer(world.time_command, world.monotonic)
    vouched = checkpoints.vouch(sent)
    assert vouched <= world.redis_ms(sent)
    assert vouched >= world.redis_ms(sent) - 2  # and not needlessly early


def test_a_step_that_waited_on_redis_carries_its_heartbeat_not_the_end_of_the_wait() -> None:
    """CLIENT PAUSE WRITE 8000: the reading is made for the attempt that lands, after the wait."""
    world = World()
    sent = world.t
    checkpoints = Checkpointer(world.time_command, world.monotonic)
    world.t += 0.05
    first_try = checkpoints.vouch(sent)
    world.t += 8.0  # the attempt fails; Redis answers again 8 s later
    retried = checkpoints.vouch(sent)
    assert first_try <= world.redis_ms(sent)
    assert retried <= world.redis_ms(sent)
    assert world.redis_ms() - retried >= 8000  # the checkpoint's age shows the wait


def test_a_reading_is_never_carried_across_an_outage_to_a_redis_with_another_clock() -> None:
    world = World()
    sent = world.t
    checkpoints = Checkpointer(world.time_command, world.monotonic)
    checkpoints.vouch(sent)
    world.t += 3.0
    world.redis_offset_ms -= 30_000  # failover to a host whose clock is 30 s behind
    vouched = checkpoints.vouch(sent)
    assert vouched <= world.redis_ms(sent)  # in the new Redis' clock: never in its future


def test_the_bound_allows_for_drift_between_the_two_clocks() -> None:
    # A reading 60 s after the heartbeat: 100 ppm of drift is 6 ms, subtracted.
    assert vouched_ms(sent=0.0, redis_ms=1_060_000.0, received_at=60.0) <= 1_000_000 - 6
