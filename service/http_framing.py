"""Whether a whole HTTP/1.1 request has arrived, judged from the bytes buffered so far.

The worker (service.gunicorn_worker) reads requests in its event loop and gives a connection a
thread only once this says READY, so a client that trickles its request costs no thread. It does
not parse the request: gunicorn does that afterwards, from the same bytes. It only finds where the
request ends (RFC 9112 6.3): the blank line after the headers, then a ``Content-Length`` body or a
``chunked`` one. Anything it cannot delimit for sure (two lengths, a length and a coding, a coding
other than chunked) is READY too: gunicorn refuses those from the headers alone, without a read.
"""

from __future__ import annotations

import enum
import re

# Every request here is a GET; tokens make headers a few kilobytes at most.
HEADERS_MAX = 64 * 1024
BODY_MAX = 64 * 1024
# A chunked body's size on the wire (chunk lines, extensions, trailers) is held to twice its data
# limit, so a request is never larger than this: the event loop reads that much and no more.
CHUNKED_WIRE_MAX = 2 * BODY_MAX
REQUEST_MAX = HEADERS_MAX + 4 + CHUNKED_WIRE_MAX

_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(rb"[0-9]+")


class Arrival(enum.Enum):
    WAIT = "wait"  # not all of it yet
    READY = "ready"  # a whole request (or one gunicorn refuses without reading further)
    HEADERS_TOO_LARGE = "headers too large"  # 431
    BODY_TOO_LARGE = "body too large"  # 413


class Framer:
    """Where the request at the start of one connection's buffer ends, judged again as bytes
    arrive. The buffer only grows until the request is handed over (then a new Framer starts), so
    each call resumes where the last one stopped: a request trickled a byte at a time costs linear
    time, where re-walking a 64 KiB body of one-byte chunks took 9 ms a byte of event loop."""

    def __init__(self) -> None:
        self.head_end = -1  # where the headers end, once they have
        self._searched = 0  # where the search for a terminator resumes
        self._verdict: Arrival | None = None  # known from the headers alone
        self._end: int | None = None  # a Content-Length request's end
        self._position = 0  # chunked: where the next chunk-size line starts
        self._total = 0  # chunked: the body's size so far
        self._last_chunk = -1  # chunked: the end of the last chunk's size line, once seen

    def arrival(self, buffer: bytes | bytearray) -> Arrival:
        """What ``buffer`` (a connection's unparsed bytes, from a request's start) holds."""
        if self.head_end < 0:
            head_end = buffer.find(b"\r\n\r\n", self._searched)
            if head_end < 0 or head_end > HEADERS_MAX:
                # headers may end at HEADERS_MAX: until their 4-byte terminator could no longer
                waiting = head_end < 0 and len(buffer) < HEADERS_MAX + 4
                self._searched = max(0, len(buffer) - 3)
                return Arrival.WAIT if waiting else Arrival.HEADERS_TOO_LARGE
            self.head_end = head_end
            self._judge_headers(bytes(buffer[:head_end]))
        if self._verdict is not None:
            return self._verdict
        if self._end is not None:
            return Arrival.READY if len(buffer) >= self._end else Arrival.WAIT
        return self._chunked(buffer)

    def _judge_headers(self, head: bytes) -> None:
        lengths, codings = _framing_headers(head)
        body_start = self.head_end + 4
        if codings:
            if lengths or codings[-1] != b"chunked":
                self._verdict = Arrival.READY  # gunicorn answers 400 (RFC 9112 6.1, 6.3)
            self._position = body_start
            return
        if len(lengths) != 1 or not _DIGITS.fullmatch(lengths[0]):
            self._verdict = Arrival.READY  # no body, or an ambiguous or invalid length
            return
        # gunicorn takes a length of any size: a long one is too large here, judged before int()
        # (which refuses more than 4,300 digits)
        digits = lengths[0].lstrip(b"0") or b"0"
        length = int(digits) if len(digits) <= 18 else BODY_MAX + 1
        if length > BODY_MAX:
            self._verdict = Arrival.BODY_TOO_LARGE
        self._end = body_start + length

    def _chunked(self, buffer: bytes | bytearray) -> Arrival:
        """Walk the chunks (RFC 9112 7.1) to the last one and its trailer section."""
        verdict = self._walk_chunks(buffer)
        body_start = self.head_end + 4
        if verdict is Arrival.WAIT and len(buffer) - body_start > CHUNKED_WIRE_MAX:
            return Arrival.BODY_TOO_LARGE  # tiny chunks, long extensions or trailers: padding
        return verdict

    def _walk_chunks(self, buffer: bytes | bytearray) -> Arrival:
        while self._last_chunk < 0:
            line_end = buffer.find(b"\r\n", self._position)
            if line_end < 0:
                waiting = len(buffer) - self._position <= 1024
                return Arrival.WAIT if waiting else Arrival.READY
            size_text = bytes(buffer[self._position : line_end]).split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size_text):
                return Arrival.READY  # malformed: gunicorn refuses it from the buffered bytes
            size = int(size_text, 16)
            if self._total + size > BODY_MAX:
                return Arrival.BODY_TOO_LARGE
            if size == 0:
                self._last_chunk = self._searched = line_end
                break
            data_end = line_end + 2 + size
            if len(buffer) < data_end + 2:
                return Arrival.WAIT
            if buffer[data_end : data_end + 2] != b"\r\n":
                return Arrival.READY
            self._total += size
            self._position = data_end + 2
        return self._trailers(buffer)

    def _trailers(self, buffer: bytes | bytearray) -> Arrival:
        """After the last chunk: the trailer section, ended by an empty line."""
        if buffer.find(b"\r\n\r\n", self._searched) >= 0:
            return Arrival.READY
        self._searched = max(self._last_chunk, len(buffer) - 3)
        too_long = len(buffer) - self._last_chunk > HEADERS_MAX
        return Arrival.HEADERS_TOO_LARGE if too_long else Arrival.WAIT


def arrival(buffer: bytes | bytearray) -> Arrival:
    """What ``buffer`` holds, judged at once (see Framer)."""
    return Framer().arrival(buffer)


def expects_continue(buffer: bytes | bytearray) -> bool:
    """Whether the request's headers have arrived and ask for ``100 Continue`` before the body
    (RFC 9110 10.1.1): such a client waits for it, so the body never comes without it."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0 or head_end > HEADERS_MAX:
        return False
    lines = bytes(buffer[:head_end]).split(b"\r\n")
    if not lines[0].endswith(b" HTTP/1.1"):
        return False  # HTTP/1.0 clients must not be sent 1xx answers (RFC 9110 15.2)
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"expect" and value.strip().lower() == b"100-continue":
            return True
    return False


def _framing_headers(head: bytes) -> tuple[list[bytes], list[bytes]]:
    """The Content-Length values and the transfer codings, in order."""
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.lower()
        if name == b"content-length":
            lengths.extend(part.strip() for part in value.split(b","))
        elif name == b"transfer-encoding":
            codings.extend(part.strip().lower() for part in value.split(b",") if part.strip())
    return lengths, codings
