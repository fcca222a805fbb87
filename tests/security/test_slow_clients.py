"""Slow clients against the real gunicorn in the shipped shape (2 workers x 4 threads, probes on
the admin port): header and body tricklers, idle sockets and non-readers, all reconnecting, must
not slow normal requests or the probes beyond generous bounds (the chart's liveness timeout is
2 s). ``ORDERS_TEST_SLOWLORIS_SECONDS`` lengthens the attack for the figures in docs/security.md.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import time
from collections.abc import Callable

import pytest
import requests

from tests.security.conftest import Launched, base_env
from tests.support.servers import free_port
from tests.support.slowloris import Attack, measure

pytestmark = pytest.mark.integration

ATTACK_SECONDS = float(os.environ.get("ORDERS_TEST_SLOWLORIS_SECONDS", "3"))
# Unloaded, both answer in milliseconds; a machine three times slower than this one, busy with
# the attack's own threads, still answers well inside these.
NORMAL_BOUND_S = 1.5
PROBE_BOUND_S = 1.5


def test_slowloris_costs_normal_requests_and_probes_no_time(
    launch: Callable[..., Launched], seeded_database_url: str, cache_prefix: str
) -> None:
    admin = free_port()
    env = base_env(
        ORDERS_DATABASE_URL=seeded_database_url,
        ORDERS_REDIS_URL="redis://127.0.0.1:6379/0",
        ORDERS_CACHE_PREFIX=cache_prefix,
        ORDERS_WORKERS="2",
        ORDERS_THREADS="4",
        ORDERS_ADMIN_PORT=str(admin),
        ORDERS_LOG_LEVEL="info",
    )
    server = launch(["serve"], env)
    server.wait_http(admin)
    server.wait_http(path="/orders/1")
    attack = Attack(server.port, headers=16, bodies=8, idle=8, non_readers=4).start()
    try:
        attack.wait_connected()
        normal, probes = measure(server.url(""), server.url("", admin), ATTACK_SECONDS)
    finally:
        attack.stop()
    print(f"\n{attack.sockets} slow sockets, {attack.connections} connections in all")
    print(normal.summary())
    print(probes.summary())
    assert normal.seconds
    assert probes.seconds
    assert normal.failures == 0, normal.summary()
    assert normal.worst < NORMAL_BOUND_S, normal.summary()
    assert probes.failures == 0, probes.summary()
    assert probes.worst < PROBE_BOUND_S, probes.summary()


def _serve(launch: Callable[..., Launched], database: str, prefix: str, **env: str) -> Launched:
    admin = free_port()
    server = launch(
        ["serve"],
        base_env(
            ORDERS_DATABASE_URL=database,
            ORDERS_REDIS_URL="redis://127.0.0.1:6379/0",
            ORDERS_CACHE_PREFIX=prefix,
            ORDERS_ADMIN_PORT=str(admin),
            **env,
        ),
    )
    server.env["admin"] = str(admin)
    server.wait_http(admin)
    return server


def _answer(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_connections_beyond_the_per_client_cap_get_503_and_the_probes_still_answer(
    launch: Callable[..., Launched], seeded_database_url: str, cache_prefix: str
) -> None:
    server = _serve(launch, seeded_database_url, cache_prefix, ORDERS_CLIENT_MAX_CONNECTIONS="3")
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=20) for _ in range(3)]
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as extra:
            answer = _answer(extra)
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"application/problem+json" in answer
        assert b"Retry-After: 1" in answer
        admin = int(server.env["admin"])
        assert requests.get(server.url("/healthz", admin), timeout=5).status_code == 200
    finally:
        for sock in idle:
            sock.close()
    # the cap counts open connections: once they close, the client is admitted again
    server.wait_for(
        lambda: requests.get(server.url("/orders/1"), timeout=5).status_code == 200,
        "a request after the idle sockets closed",
    )


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /orders/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", b"413"),
        (b"GET /orders/1 HTTP/1.1\r\nHost: x\r\n" + b"X-a: b\r\n" * 12000, b"431"),
        (b"GET /orders/1 HTTP/1.1\r\nHost: x\r\n", b"408"),
    ],
)
def test_a_request_too_large_or_too_slow_is_answered_by_the_event_loop(
    launch: Callable[..., Launched],
    seeded_database_url: str,
    cache_prefix: str,
    request_bytes: bytes,
    status: bytes,
) -> None:
    server = _serve(launch, seeded_database_url, cache_prefix, ORDERS_CLIENT_TIMEOUT="1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(request_bytes)
        answer = _answer(sock)
    assert answer.split(b" ", 2)[1] == status
    assert b"application/problem+json" in answer


def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(
    launch: Callable[..., Launched], seeded_database_url: str, cache_prefix: str
) -> None:
    server = _serve(launch, seeded_database_url, cache_prefix)
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"GET /orders/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(
    "request_bytes",
    [
        # a chunk-size line longer than the framing code's 1 KiB look-ahead, shorter than
        # gunicorn's own limit: gunicorn's parser waits for its end
        b"POST /orders/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"a" * 1100,
        # a length of 19 digits: not refused as too large, so gunicorn drains the body
        b"GET /orders/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000000\r\n\r\n",
    ],
    ids=["long-chunk-size-line", "nineteen-digit-length"],
)
def test_a_request_the_event_loop_takes_for_whole_never_makes_a_thread_wait(
    launch: Callable[..., Launched],
    seeded_database_url: str,
    cache_prefix: str,
    request_bytes: bytes,
) -> None:
    server = _serve(launch, seeded_database_url, cache_prefix)  # 1 worker x 2 threads
    stalled = [socket.create_connection(("127.0.0.1", server.port), timeout=20) for _ in range(4)]
    try:
        for sock in stalled:
            sock.sendall(request_bytes)  # ... and nothing more
        started = time.monotonic()
        assert requests.get(server.url("/orders/1"), timeout=20).status_code == 200
        assert time.monotonic() - started < NORMAL_BOUND_S
    finally:
        for sock in stalled:
            sock.close()


def test_a_client_that_expects_100_continue_is_told_to_send_its_body(
    launch: Callable[..., Launched], seeded_database_url: str, cache_prefix: str
) -> None:
    server = _serve(launch, seeded_database_url, cache_prefix)  # client timeout: 10 s
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /orders/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        # the client waits for the interim answer before it sends its body (RFC 9110 10.1.1)
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        answer = _answer(sock)
    assert b"HTTP/1.1 405 " in answer


def test_answers_the_event_loop_gives_are_counted_and_logged(
    launch: Callable[..., Launched], seeded_database_url: str, cache_prefix: str
) -> None:
    """A 408, 413, 431 or per-client 503 never reaches the app: without their own metric and log
    line an operator sees neither an attack nor a proxy that outgrew the per-client cap."""
    server = _serve(
        launch,
        seeded_database_url,
        cache_prefix,
        ORDERS_CLIENT_TIMEOUT="1",
        ORDERS_CLIENT_MAX_CONNECTIONS="1",
    )
    sent = {
        "body_too_large": b"POST /orders/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
        "headers_too_large": b"GET /orders/1 HTTP/1.1\r\nHost: x\r\n" + b"X-a: b\r\n" * 12000,
        "timeout": b"GET /orders/1 HTTP/1.1\r\nHost: x\r\n",
    }
    for request_bytes in sent.values():
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(request_bytes)
            _answer(sock)
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as held:
        held.sendall(b"GET /orders/1 HTTP/1.1\r\nHost: x\r\n")
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as extra:
            assert _answer(extra).startswith(b"HTTP/1.1 503 ")
    admin = int(server.env["admin"])
    exposed = requests.get(server.url("/metrics", admin), timeout=5).text
    for reason in (*sent, "client_cap"):
        counted = re.search(
            rf'^orders_http_refused_total{{reason="{reason}"}} ([0-9.]+)$', exposed, re.M
        )
        assert counted, reason
        assert float(counted[1]) >= 1, reason
        server.wait_for(  # request lines are written in batches
            lambda reason=reason: f'"reason":"{reason}"' in server.output().replace(" ", ""),
            f"a log line with reason {reason}",
        )


def test_sockets_that_sent_nothing_do_not_hold_a_recycling_worker(
    launch: Callable[..., Launched], seeded_database_url: str, cache_prefix: str
) -> None:
    """A stopping worker (max_requests, SIGTERM) waits for its connections; one that has not
    begun a request must not keep it (and its port's share) out of service for the client
    timeout: 1 worker, recycled after 5 requests, 3 idle sockets made the 6th request wait 10 s."""
    server = _serve(
        launch,
        seeded_database_url,
        cache_prefix,
        ORDERS_WORKERS="1",
        ORDERS_MAX_REQUESTS="5",
        ORDERS_GRACEFUL_TIMEOUT="30",
        ORDERS_CLIENT_TIMEOUT="30",
    )
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=40) for _ in range(3)]
    try:
        slowest = 0.0
        for _ in range(12):  # the worker is replaced at least once
            started = time.monotonic()
            assert requests.get(server.url("/orders/1"), timeout=40).status_code == 200
            slowest = max(slowest, time.monotonic() - started)
    finally:
        for sock in idle:
            sock.close()
    # a new worker starts in well under a second here; the client timeout is 30 s
    assert slowest < 8, f"a request waited {slowest:.1f} s for the worker to be replaced"


def test_a_chunked_body_padded_with_extensions_is_refused_not_spun_on(
    launch: Callable[..., Launched], seeded_database_url: str, cache_prefix: str
) -> None:
    """Chunks of one byte with 1 KiB extensions keep the body's size tiny while the buffer grows:
    past the 128 KiB the loop reads, the socket stayed readable and unread, and the event loop
    spun on it (a whole core per socket) until the client timeout."""
    server = _serve(launch, seeded_database_url, cache_prefix)  # client timeout: 10 s
    chunk = b"1;e=" + b"x" * 1000 + b"\r\na\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /orders/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk * 200
        )
        answer = _answer(sock)  # times out (5 s) while the loop spins
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_a_request_begun_on_a_kept_alive_connection_does_not_hold_a_stopping_worker(
    launch: Callable[..., Launched], seeded_database_url: str, cache_prefix: str
) -> None:
    """Once a worker is stopping, a kept-alive connection that starts a request gets gthread's
    linger, not a fresh client timeout (the worker, and its replacement, waited that long)."""
    server = _serve(
        launch,
        seeded_database_url,
        cache_prefix,
        ORDERS_WORKERS="1",
        ORDERS_MAX_REQUESTS="3",  # the first is _serve's wait for /healthz
        ORDERS_GRACEFUL_TIMEOUT="30",
        ORDERS_CLIENT_TIMEOUT="30",
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=40) as kept:
        kept.sendall(b"GET /orders/1 HTTP/1.1\r\nHost: x\r\n\r\n")  # request 2
        response = http.client.HTTPResponse(kept)
        response.begin()
        assert response.read()
        assert not response.will_close  # kept alive
        assert requests.get(server.url("/orders/1"), timeout=40).status_code == 200  # 3: it stops
        server.wait_for(lambda: "Autorestarting" in server.output(), "the worker stopping")
        kept.sendall(b"GET /orders/1 HTTP/1.1\r\nHo")  # begun, never finished
        started = time.monotonic()
        assert requests.get(server.url("/orders/1"), timeout=40).status_code == 200
        waited = time.monotonic() - started
    assert waited < 8, f"a request waited {waited:.1f} s for the worker to be replaced"
