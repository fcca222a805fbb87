"""Where a request ends, as the worker's event loop judges it before a thread sees it."""

from __future__ import annotations

import time

import pytest

from service.http_framing import (
    BODY_MAX,
    HEADERS_MAX,
    REQUEST_MAX,
    Arrival,
    Framer,
    arrival,
    expects_continue,
)

GET = b"GET /orders/1 HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    ("buffer", "expected"),
    [
        (b"", Arrival.WAIT),
        (b"GET /orders/1 HTTP/1.1\r\nHost: x\r\n", Arrival.WAIT),
        (GET, Arrival.READY),
        (GET + b"GET /orders/2", Arrival.READY),  # a pipelined request's start is gunicorn's
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc", Arrival.WAIT),
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde", Arrival.READY),
        (b"POST / HTTP/1.1\r\ncontent-length:  0 \r\n\r\n", Arrival.READY),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", Arrival.WAIT),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n",
            Arrival.WAIT,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            Arrival.READY,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: v\r\n\r\n",
            Arrival.READY,
        ),
        # what gunicorn refuses from the headers or the buffered bytes alone: no waiting for it
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", Arrival.READY),
        (b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", Arrival.READY),
        (b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", Arrival.READY),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            Arrival.READY,
        ),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", Arrival.READY),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n", Arrival.READY),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", Arrival.READY),
    ],
)
def test_arrival(buffer: bytes, expected: Arrival) -> None:
    assert arrival(buffer) is expected


def test_headers_that_never_end_are_too_large_past_the_limit() -> None:
    assert arrival(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * (HEADERS_MAX // 7)) is Arrival.WAIT
    assert arrival(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * (HEADERS_MAX // 5)) is (
        Arrival.HEADERS_TOO_LARGE
    )


def test_a_body_over_the_limit_is_refused_before_it_arrives() -> None:
    head = f"POST / HTTP/1.1\r\nContent-Length: {BODY_MAX + 1}\r\n\r\n".encode()
    assert arrival(head) is Arrival.BODY_TOO_LARGE
    chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert arrival(chunked + f"{BODY_MAX + 1:x}\r\n".encode()) is Arrival.BODY_TOO_LARGE


@pytest.mark.parametrize(
    ("buffer", "expected"),
    [
        (b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", True),
        (b"POST / HTTP/1.1\r\nexpect:  100-Continue \r\nContent-Length: 5\r\n\r\n", True),
        (b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n", False),
        (b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", False),
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", False),
    ],
)
def test_expects_continue_only_once_an_http11_requests_headers_ask_for_it(
    buffer: bytes, expected: bool
) -> None:
    assert expects_continue(buffer) is expected


def test_a_length_of_any_number_of_digits_past_the_limit_is_too_large() -> None:
    for digits in (b"1" * 19, b"9" * 5000):
        request = b"GET / HTTP/1.1\r\nContent-Length: " + digits + b"\r\n\r\n"
        assert arrival(request) is Arrival.BODY_TOO_LARGE
    assert arrival(b"GET / HTTP/1.1\r\nContent-Length: " + b"0" * 30 + b"2\r\n\r\nab") is (
        Arrival.READY
    )


def test_headers_ending_at_the_limit_are_waited_for_whatever_the_packets() -> None:
    """The verdict on a request must not depend on where the network cut it."""
    start = b"GET / HTTP/1.1\r\nX: "
    whole = start + b"a" * (HEADERS_MAX - len(start)) + b"\r\n\r\n"  # ends at the limit
    assert arrival(whole) is Arrival.READY
    for cut in (1, 2, 3):
        assert arrival(whole[:-cut]) is Arrival.WAIT


def test_a_body_trickled_byte_by_byte_costs_linear_time() -> None:
    """The event loop judges a connection's buffer after every read; re-walking a 64 KiB body of
    one-byte chunks took 9 ms a byte here, so one trickling socket kept the loop busy (probes and
    every other connection wait on it)."""
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    buffer = bytearray(head + b"1\r\na\r\n" * 10_000)
    framer = Framer()
    assert framer.arrival(buffer) is Arrival.WAIT
    started = time.perf_counter()
    for byte in b"1\r\na\r\n" * 50:
        buffer.append(byte)
        assert framer.arrival(buffer) is Arrival.WAIT
    # 300 calls: 2.7 s re-walking; a few ms resuming (bound: 100x that, for slow machines)
    assert time.perf_counter() - started < 0.3


def test_a_chunked_body_padded_past_its_wire_budget_is_too_large() -> None:
    head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    padded = head + (b"1;e=" + b"x" * 1000 + b"\r\na\r\n") * 200  # 200 bytes of data
    assert arrival(padded) is Arrival.BODY_TOO_LARGE
    # decided within what the event loop reads
    assert arrival(padded[: REQUEST_MAX + 1]) is Arrival.BODY_TOO_LARGE
