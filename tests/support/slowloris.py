"""A reconnecting slowloris, and the latencies of normal requests and probes while it runs.

Four kinds of slow client, each reconnecting as soon as the server drops it (as the real tools
do): header tricklers (one header byte per ``interval``), body tricklers (whole headers, then one
body byte per ``interval``), idle sockets (connect, send nothing) and non-readers (pipeline
requests, never read an answer). ``measure`` runs a normal client on the API port and a probe
client on the admin port meanwhile, each one request at a time on a new connection.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

HEADER_TRICKLE = b"GET /orders/1 HTTP/1.1\r\nHost: x\r\nUser-Agent: slowloris\r\n" + (
    b"X-a: b\r\n" * 500
)
BODY_TRICKLE_HEAD = b"POST /orders/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n"
PIPELINED = b"GET /orders/1 HTTP/1.1\r\nHost: x\r\n\r\n" * 400


@dataclass
class Attack:
    """Slow clients against ``port`` until ``stop()``; ``connections`` counts every connect."""

    port: int
    headers: int = 0
    bodies: int = 0
    idle: int = 0
    non_readers: int = 0
    interval: float = 0.5
    connections: int = 0
    drops: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Attack:
        kinds: list[tuple[int, Callable[[socket.socket], None]]] = [
            (self.headers, self._trickle_headers),
            (self.bodies, self._trickle_body),
            (self.idle, self._sit_idle),
            (self.non_readers, self._never_read),
        ]
        for count, behaviour in kinds:
            for _ in range(count):
                thread = threading.Thread(target=self._loop, args=(behaviour,), daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    @property
    def sockets(self) -> int:
        return self.headers + self.bodies + self.idle + self.non_readers

    def wait_connected(self, timeout: float = 20) -> None:
        """Until every slow client has connected at least once."""
        deadline = time.monotonic() + timeout
        while self.connections < self.sockets:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.connections}/{self.sockets} slow clients connected")
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _loop(self, behaviour: Callable[[socket.socket], None]) -> None:
        while not self._stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    with self._lock:
                        self.connections += 1
                    behaviour(sock)
            except OSError:
                pass
            with self._lock:
                self.drops += 1
            self._stop.wait(0.05)

    def _trickle(self, sock: socket.socket, data: bytes) -> None:
        for index in range(len(data)):
            sock.sendall(data[index : index + 1])
            if self._stop.wait(self.interval) or _closed_by_peer(sock):
                return

    def _trickle_headers(self, sock: socket.socket) -> None:
        self._trickle(sock, HEADER_TRICKLE)

    def _trickle_body(self, sock: socket.socket) -> None:
        sock.sendall(BODY_TRICKLE_HEAD)
        self._trickle(sock, b"x" * 4000)

    def _sit_idle(self, sock: socket.socket) -> None:
        while not self._stop.wait(self.interval):
            if _closed_by_peer(sock):
                return

    def _never_read(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(self.interval)
        while not self._stop.is_set():
            try:
                sock.sendall(PIPELINED)
            except TimeoutError:
                continue  # the server stopped reading: hold the socket as it is
            except OSError:
                return


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


@dataclass
class Latencies:
    """Seconds per request of one client; a request that failed counts as its timeout."""

    name: str
    seconds: list[float] = field(default_factory=list)
    failures: int = 0

    def summary(self) -> str:
        if not self.seconds:
            return f"{self.name}: no request finished"
        ordered = sorted(self.seconds)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        return (
            f"{self.name}: n={len(ordered)} median={statistics.median(ordered) * 1000:.0f} ms "
            f"p95={p95 * 1000:.0f} ms max={ordered[-1] * 1000:.0f} ms failures={self.failures}"
        )

    @property
    def worst(self) -> float:
        return max(self.seconds, default=float("inf"))


def _client(
    urls: list[str], timeout: float, stop: threading.Event, into: Latencies, pause: float
) -> None:
    index = 0
    while not stop.is_set():
        url = urls[index % len(urls)]
        index += 1
        began = time.monotonic()
        try:
            response = requests.get(url, timeout=timeout, headers={"Connection": "close"})
            ok = response.status_code == 200
        except requests.RequestException:
            ok = False
        elapsed = time.monotonic() - began
        into.seconds.append(elapsed if ok else max(elapsed, timeout))
        into.failures += not ok
        stop.wait(pause)


def measure(
    api: str, admin: str, seconds: float, *, timeout: float = 20
) -> tuple[Latencies, Latencies]:
    """Normal requests to ``api`` + /orders/1 and probes to ``admin`` (/healthz, /readyz) for
    ``seconds``; a request still running then is waited for (up to ``timeout``)."""
    stop = threading.Event()
    normal, probes = Latencies("normal /orders/1"), Latencies("probes /healthz,/readyz")
    threads = [
        threading.Thread(target=_client, args=([f"{api}/orders/1"], timeout, stop, normal, 0.1)),
        threading.Thread(
            target=_client,
            args=([f"{admin}/healthz", f"{admin}/readyz"], timeout, stop, probes, 0.2),
        ),
    ]
    for thread in threads:
        thread.start()
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout + 5)
    return normal, probes
