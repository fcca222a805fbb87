"""The checkpoint claims only what was applied (issue 18, cases 1 and 2), against real processes.

A continuous staleness probe: readers ask for pages 1-10 while a writer renames their first
orders, and every answer is compared with the commit history (``Writes.staleness``). Meanwhile a
throwaway Redis is paused with ``CLIENT PAUSE <ms> WRITE`` or ``ALL`` (what a failover does).
Before the fix, the step blocked by the pause carried a checkpoint age computed before the pause,
so the checkpoint claimed every commit up to the end of the pause applied: HITs up to the pause's
length stale in the half second after it.

``ORDERS_TEST_PAUSES`` (e.g. ``1,5,8``) runs longer pauses by hand; ``make test`` runs one short
pause of each kind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import requests

from service.cache.keys import Message
from tests.faults.conftest import Stack
from tests.faults.staleness import (
    PAGES,
    Readers,
    Writes,
    check_every_page,
    warm,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow]

MAX_LAG = 0.5
# A HIT or MISS may be MAX_LAG plus one request's queueing old; the pause itself is longer than
# this, so a checkpoint that jumps over the pause is caught.
MARGIN = 1.0
ORDERS = 400
PAUSES = [float(s) for s in os.environ.get("ORDERS_TEST_PAUSES", "3").split(",")]


# The writer runs in a process of its own: in the test's process, four reader threads starve a
# writer thread of the GIL on every socket read (seconds per MySQL connect under load).
_WRITER = """
import random, sys, time
import pymysql
port, database, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
ids = [int(i) for i in sys.argv[4].split(",")]
conn = pymysql.connect(host="127.0.0.1", port=port, user="root", database=database,
                       autocommit=True, read_timeout=30, write_timeout=30)
rng, n, end = random.Random(7), 0, time.monotonic() + seconds
with conn.cursor() as cur:
    while time.monotonic() < end:
        page = rng.randrange(len(ids))
        n += 1
        cur.execute("UPDATE orders SET customer_name = %s WHERE id = %s", (f"lag-{n}", ids[page]))
        print(time.monotonic(), page + 1, f"lag-{n}", flush=True)
        time.sleep(0.05)
"""


def start_writer(stack: Stack, writes: Writes, seconds: float) -> subprocess.Popen[str]:
    """Renames the first order of pages 1-10 every 50 ms for ``seconds``; each line it prints is
    a commit that returned (CLOCK_MONOTONIC is shared by the processes of one host)."""
    ids = writes.first_ids()
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            _WRITER,
            str(stack.mariadb.port),
            stack.db.name,
            str(seconds),
            ",".join(str(ids[page]) for page in PAGES),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def finish_writer(writer: subprocess.Popen[str], writes: Writes) -> None:
    out, _ = writer.communicate(timeout=60)
    assert writer.returncode == 0, out
    for line in out.splitlines():
        at, page, name = line.split()
        writes.history.setdefault(int(page), []).append((float(at), name))
        writes.counter += 1


def staleness_figures(writes: Writes, reads: list[Any], bound: float) -> dict[str, Any]:
    served = [(read, writes.staleness(read)) for read in reads]
    judged = [(read, age) for read, age in served if read.x_cache in ("HIT", "MISS")]
    too_old = [(read.page, read.x_cache, round(age, 2)) for read, age in judged if age > bound]
    outcomes: dict[str, int] = {}
    for read in reads:
        outcomes[read.x_cache] = outcomes.get(read.x_cache, 0) + 1
    return {
        "reads": len(reads),
        "writes": writes.counter,
        "outcomes": outcomes,
        "worst_hit_or_miss_staleness_s": round(max((a for _, a in judged), default=0.0), 3),
        "answers_past_bound": len(too_old),
        "examples": too_old[:10],
    }


def _redis_ms(client: redis.Redis) -> tuple[float, float]:
    """Redis' clock as (low, high) bounds in ms for the local moment of return."""
    sent = time.monotonic()
    seconds, micros = client.time()
    received = time.monotonic()
    now = seconds * 1000 + micros / 1000
    return now, now + (received - sent) * 1000


@pytest.mark.parametrize("kind", ["WRITE", "ALL"])
def test_after_a_redis_pause_no_checkpoint_covers_a_commit_before_its_invalidation(
    kind: str, stack_factory: Callable[..., Stack], report: Callable[[str, dict[str, Any]], None]
) -> None:
    """Case 1, deterministic: a write committed during ``CLIENT PAUSE``; every message on the
    invalidations channel is recorded. The first checkpoint that covers the commit (later than
    Redis' clock when the commit returned) must come with or after the page's invalidation."""
    stack = stack_factory(orders=ORDERS, ORDERS_CACHE_MAX_LAG=str(MAX_LAG))
    warm(stack)
    order_id = stack.sql_page(3)[0][0]
    listener = redis.Redis(host="127.0.0.1", port=stack.redis_server.port, socket_timeout=30)
    pubsub = listener.pubsub()
    pubsub.subscribe(stack.key("invalidations"))
    wait_for(lambda: pubsub.get_message(timeout=0.1) is not None, 10, "the subscription")
    local, redis_high = time.monotonic(), _redis_ms(stack.redis)[1]
    stack.redis.execute_command("CLIENT", "PAUSE", "3000", kind)
    time.sleep(0.5)
    stack.db.cli(f"UPDATE orders SET customer_name = 'during-pause' WHERE id = {order_id}")
    committed = redis_high + (time.monotonic() - local) * 1000 * 1.001 + 1
    messages: list[Message] = []
    deadline = time.monotonic() + 15
    covering: Message | None = None
    while covering is None and time.monotonic() < deadline:
        raw = pubsub.get_message(timeout=1.0)
        if raw is None or raw["type"] != "message":
            continue
        message = Message.parse(raw["data"])
        messages.append(message)
        if message.checkpoint_ms is not None and message.checkpoint_ms > committed:
            covering = message
    pubsub.close()
    listener.close()
    assert covering is not None, "no checkpoint ever covered the write"
    invalidated = any(
        3 in m.pages or (m.from_page is not None and m.from_page <= 3) for m in messages
    )
    report(
        f"checkpoint_after_pause_{kind.lower()}",
        {"messages_until_covered": len(messages), "page_invalidated_first": invalidated},
    )
    assert invalidated, (
        "the checkpoint claimed the write applied before its page was invalidated: "
        f"{[m.encode() for m in messages]}"
    )


@pytest.mark.parametrize("seconds", PAUSES)
@pytest.mark.parametrize("kind", ["WRITE", "ALL"])
def test_a_redis_pause_during_writes_never_lets_the_checkpoint_vouch_for_unapplied_commits(
    kind: str,
    seconds: float,
    stack_factory: Callable[..., Stack],
    report: Callable[[str, dict[str, Any]], None],
) -> None:
    stack = stack_factory(orders=ORDERS, ORDERS_CACHE_MAX_LAG=str(MAX_LAG))
    warm(stack)
    writes = Writes(stack)
    with Readers(stack, threads=4) as readers:
        writer = start_writer(stack, writes, seconds + 3.0)
        time.sleep(1.0)  # writes flowing and being invalidated before the pause
        stack.redis.execute_command("CLIENT", "PAUSE", str(int(seconds * 1000)), kind)
        finish_writer(writer, writes)  # the pause, then the seconds after it where lies showed
        time.sleep(MAX_LAG + MARGIN)
    assert writes.counter > 10
    figures = staleness_figures(writes, readers.reads, MAX_LAG + MARGIN)
    figures["pause_s"] = seconds
    figures["settled_s"] = round(check_every_page(stack), 2)
    report(f"checkpoint_pause_{kind.lower()}_{seconds:g}s", figures)
    assert figures["answers_past_bound"] == 0, figures


def test_a_checkpoint_ahead_of_redis_clock_is_not_trusted_and_is_reported(
    stack_factory: Callable[..., Stack], report: Callable[[str, dict[str, Any]], None]
) -> None:
    """Case 2: a checkpoint 30 s ahead of Redis' clock (a restore, a failover to a host whose
    clock is behind, or forged), deleted 2 s later, with no invalidator running."""
    stack = stack_factory(orders=ORDERS, invalidator=False, ORDERS_CACHE_MAX_LAG=str(MAX_LAG))
    warm(stack)
    seconds, micros = stack.redis.time()
    stack.redis.set(stack.key("checkpoint"), seconds * 1000 + micros // 1000 + 30_000)

    def says_ahead() -> bool:
        body = requests.get(f"{stack.base_url}/readyz", timeout=5).json()
        return bool(body["invalidation"]["status"] == "ahead")

    wait_for(says_ahead, 10, "/readyz to report the checkpoint ahead of Redis' clock")

    def metric_says_ahead() -> bool:
        text = requests.get(f"{stack.base_url}/metrics", timeout=5).text
        return any(
            line.startswith("orders_cache_checkpoint_ahead_seconds ")
            and float(line.split()[1]) > 20
            for line in text.splitlines()
        )

    wait_for(metric_says_ahead, 10, "orders_cache_checkpoint_ahead_seconds to report it")
    writes = Writes(stack)
    with Readers(stack, threads=4) as readers:
        writer = start_writer(stack, writes, 5.0)
        time.sleep(2.0)
        stack.redis.delete(stack.key("checkpoint"))
        finish_writer(writer, writes)
        time.sleep(MAX_LAG + MARGIN)
    figures = staleness_figures(writes, readers.reads, MAX_LAG + MARGIN)
    figures["settled_s"] = round(check_every_page(stack), 2)
    report("checkpoint_ahead_of_redis", figures)
    assert writes.counter > 10
    assert figures["answers_past_bound"] == 0, figures
