"""The circuit breaker opens after consecutive failures and lets one trial through later."""

from __future__ import annotations

from service.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_it_opens_after_the_threshold_and_recovers_after_a_successful_trial() -> None:
    clock = Clock()
    changes: list[str] = []
    breaker = CircuitBreaker("redis", 3, 5.0, lambda _n, s: changes.append(s), clock)
    for _ in range(2):
        breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert not breaker.allow()
    clock.now = 5.0
    assert breaker.allow()  # the one trial
    assert not breaker.allow()  # nobody else during the trial
    breaker.success()
    assert breaker.allow()
    assert changes == ["open", "half_open", "closed"]


def test_a_failed_trial_opens_it_again_for_a_full_period() -> None:
    clock = Clock()
    breaker = CircuitBreaker("mysql", 1, 2.0, clock=clock)
    breaker.failure()
    clock.now = 2.0
    assert breaker.allow()
    breaker.failure()
    clock.now = 3.0
    assert not breaker.allow()
    clock.now = 4.0
    assert breaker.allow()


def test_success_resets_the_count_of_consecutive_failures() -> None:
    breaker = CircuitBreaker("redis", 2, 1.0)
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.allow()


def test_a_trial_that_never_reports_lapses_after_one_period() -> None:
    clock = Clock()
    breaker = CircuitBreaker("mysql", 1, 1.0, clock=clock)
    breaker.failure()
    clock.now = 1.0
    assert breaker.allow()  # the trial, which then vanishes without success() or failure()
    clock.now = 1.5
    assert not breaker.allow()
    clock.now = 2.0
    assert breaker.allow()  # lapsed: the next caller gets a trial
    breaker.success()
    assert breaker.is_closed


def test_an_abandoned_trial_hands_the_next_caller_a_trial_at_once() -> None:
    clock = Clock()
    breaker = CircuitBreaker("mysql", 1, 1.0, clock=clock)
    breaker.failure()
    clock.now = 1.0
    assert breaker.allow()
    breaker.abandon()
    assert breaker.allow()
    assert not breaker.allow()


def test_abandon_outside_a_trial_changes_nothing() -> None:
    clock = Clock()
    breaker = CircuitBreaker("mysql", 1, 1.0, clock=clock)
    breaker.abandon()
    assert breaker.is_closed
    breaker.failure()
    breaker.abandon()
    assert not breaker.allow()
