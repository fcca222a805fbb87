"""The chain of steps (issue 19): every step names the ``binlog`` value the previous one wrote;
a refusal rewinds; a new primary after an error means a new fence and a rewind (fakes only:
the script's side is tests/integration/test_cache_protocol.py, the whole in tests/faults)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from service.cache.keys import CacheKeys, Invalidation, strip_step
from service.cache.store import FENCED, NOT_FOLLOWING, CacheUnavailable
from service.invalidation.options import InvalidatorOptions
from service.invalidation.steps import Fenced, Rewind, Steps


class FakeCache:
    def __init__(self) -> None:
        self.keys = CacheKeys("t", 10)
        self.sent: list[Invalidation] = []
        self.answers: list[int | Exception] = []
        self.primary = "run-a/repl-a"

    def apply_step(self, change: Invalidation) -> int:
        answer = self.answers.pop(0) if self.answers else 1
        if isinstance(answer, Exception):
            raise answer
        self.sent.append(change)
        return answer

    def primary_identity(self) -> str:
        return self.primary

    def time(self) -> tuple[int, int]:
        return (1000, 0)


class FakeLease:
    def __init__(self, refenced: bool = True) -> None:
        self.token = 7
        self.refenced = refenced
        self.refences = 0

    def refence(self) -> bool:
        self.refences += 1
        if self.refenced:
            self.token += 1
        return self.refenced


def steps(cache: FakeCache, lease: FakeLease) -> Steps:
    database: Any = type("Db", (), {"run": lambda self, fn: 0})()
    return Steps(
        "orders",
        cache,  # type: ignore[arg-type]
        database,
        InvalidatorOptions(page_size=10, server_id=1, cache_ttl=60),
        lease=lease,  # type: ignore[arg-type]
        heartbeats=None,  # type: ignore[arg-type]
        stop=threading.Event(),
    )


def test_each_step_follows_the_value_the_previous_one_wrote() -> None:
    cache = FakeCache()
    chain = steps(cache, FakeLease())
    chain.follow("f:1|server=s|step=9")
    chain.step(Invalidation(pages=frozenset({1}), position="f:2|server=s"))
    chain.step(Invalidation(pages=frozenset({2})))  # a chunk: no position of its own
    chain.step(Invalidation(pages=frozenset({3}), position="f:3|server=s"))
    first, chunk, last = cache.sent
    assert first.expected == "f:1|server=s|step=9"
    assert chunk.expected == first.position
    assert last.expected == chunk.position
    assert strip_step(chunk.position or "") == "f:2|server=s"  # the last position, a new number
    assert len({first.position, chunk.position, last.position}) == 3
    assert {c.fence for c in cache.sent} == {7}


def test_a_refused_step_rewinds_and_moves_nothing() -> None:
    cache = FakeCache()
    chain = steps(cache, FakeLease())
    chain.follow("f:1|step=1")
    cache.answers = [NOT_FOLLOWING]
    with pytest.raises(Rewind):
        chain.step(Invalidation(pages=frozenset({1}), position="f:2"))
    chain.step(Invalidation(pages=frozenset({1}), position="f:2"))
    assert cache.sent[-1].expected == "f:1|step=1"  # still following what is stored
    cache.answers = [FENCED]
    with pytest.raises(Fenced):
        chain.step(Invalidation(position="f:3"))


def test_a_new_primary_after_an_error_takes_a_new_fence_then_rewinds() -> None:
    cache, lease = FakeCache(), FakeLease()
    chain = steps(cache, lease)
    chain.follow(None)
    chain.step(Invalidation(position="f:1"))  # the primary is noted
    cache.answers = [CacheUnavailable("connection reset")]
    cache.primary = "run-b/repl-b"  # promoted meanwhile
    with pytest.raises(Rewind):
        chain.step(Invalidation(position="f:2"))
    assert (lease.refences, lease.token) == (1, 8)
    chain.step(Invalidation(position="f:2"))
    assert cache.sent[-1].fence == 8


def test_a_new_primary_where_the_lease_is_not_ours_stands_by() -> None:
    cache, lease = FakeCache(), FakeLease(refenced=False)
    chain = steps(cache, lease)
    chain.step(Invalidation(position="f:1"))
    cache.answers = [CacheUnavailable("connection reset")]
    cache.primary = "run-b/repl-b"
    with pytest.raises(Fenced):
        chain.step(Invalidation(position="f:2"))
