"""Abuse through a real gunicorn: headers that would rewrite the WSGI environment, trusted proxies,
slow clients (a slowloris written here), the invalidator's endpoint under idle sockets, and the
size of request log lines."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from tests.security.conftest import Launched, base_env

pytestmark = pytest.mark.integration

SHARED_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def web(
    launch: Callable[..., Launched], seeded_database_url: str, cache_prefix: str
) -> Callable[..., Launched]:
    """``web(**env)``: the real server (1 worker x 2 threads) on the seeded test database."""

    def start(**overrides: str) -> Launched:
        env = base_env(
            ORDERS_DATABASE_URL=seeded_database_url,
            ORDERS_REDIS_URL=SHARED_REDIS,
            ORDERS_CACHE_PREFIX=cache_prefix,
            **overrides,
        )
        server = launch(["serve"], env)
        server.wait_http()
        return server

    return start


def raw_request(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send bytes as they are (requests would normalise headers) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@pytest.mark.parametrize(
    ("path", "script_name", "status"),
    [
        ("/orders/metrics", "/orders", 400),  # served /metrics before
        ("/orders/1", "/x", 200),  # answered 500 before
        ("/orders/1", "/orders", 200),
        ("/metrics", "/metrics", 200),
    ],
)
@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_a_client_cannot_set_script_name(
    web: Callable[..., Launched], path: str, script_name: str, status: int, trusted: str
) -> None:
    """Not even from a trusted proxy: the service is mounted at /, so no header rewrites routing."""
    server = web(ORDERS_FORWARDED_ALLOW_IPS=trusted)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nSCRIPT_NAME: {script_name}\r\n"
        f"PATH_INFO: /metrics\r\nConnection: close\r\n\r\n"
    ).encode()
    response = raw_request(server.port, request)
    assert status_of(response) == status, response[:500]
    if path == "/orders/metrics":
        assert b"application/problem+json" in response
        assert b"orders_http_request" not in response


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", ""), ("10.0.0.0/8, 192.168.1.7", "10.0.0.0/8,192.168.1.7"), ("*", "*")],
)
def test_trusted_proxies_come_from_the_setting(value: str, expected: str) -> None:
    """Empty by default: gunicorn's own default would trust 127.0.0.1 (any sidecar in the pod)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERS_")}
    if value:
        env["ORDERS_FORWARDED_ALLOW_IPS"] = value
    code = (
        "import service.gunicorn_conf as c;"
        "print(repr(c.forwarded_allow_ips), repr(c.forwarder_headers), c.header_map)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == [repr(expected), "''", "drop"]


def test_an_invalid_proxy_address_is_refused_naming_the_variable() -> None:
    env = dict(os.environ, ORDERS_FORWARDED_ALLOW_IPS="10.0.0.300")
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "config"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "ORDERS_FORWARDED_ALLOW_IPS" in done.stderr


class Slowloris:
    """``count`` sockets each sending one header byte per ``interval`` seconds, reconnecting
    whenever the server closes one (as the real tool does), until ``stop()``."""

    def __init__(self, port: int, count: int, interval: float = 1.0) -> None:
        self.port = port
        self.interval = interval
        self.dropped = 0
        self.connected = threading.Semaphore(0)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, daemon=True, name=f"slowloris-{i}")
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        request = (
            b"GET /orders/1 HTTP/1.1\r\nHost: x\r\nUser-Agent: slowloris\r\n" + b"X-a: b\r\n" * 500
        )
        while not self._stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    self.connected.release()
                    for byte in request:
                        sock.sendall(bytes([byte]))
                        if self._stop.wait(self.interval):
                            return
                        if _closed_by_peer(sock):
                            break
            except OSError:
                pass
            self.dropped += 1

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


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


@pytest.fixture
def slowloris() -> Iterator[Callable[..., Slowloris]]:
    made: list[Slowloris] = []

    def start(port: int, count: int) -> Slowloris:
        made.append(Slowloris(port, count))
        return made[-1]

    yield start
    for attack in made:
        attack.stop()


GENEROUS_SECONDS = 30.0


def test_slow_clients_cannot_hold_the_workers(
    web: Callable[..., Launched], slowloris: Callable[..., Slowloris]
) -> None:
    """A 1x2 server and four clients trickling a header byte per second (twice the threads): a
    normal request is still answered, and the slow clients are disconnected."""
    server = web(ORDERS_CLIENT_TIMEOUT="2")
    attack = slowloris(server.port, 4)
    for _ in range(4):
        assert attack.connected.acquire(timeout=10)
    time.sleep(1.5)  # every slow client has sent its first bytes and holds a thread, if it can
    began = time.monotonic()
    answered = []
    for _ in range(3):
        response = requests.get(server.url("/orders/1"), timeout=GENEROUS_SECONDS)
        answered.append(response.status_code)
    elapsed = time.monotonic() - began
    print(f"3 requests under a 4-socket slowloris answered in {elapsed:.2f} s")
    assert answered == [200, 200, 200]
    deadline = time.monotonic() + GENEROUS_SECONDS
    while attack.dropped == 0 and time.monotonic() < deadline:
        time.sleep(0.1)  # a bounded wait for an event: the 2 s client timeout passing
    assert attack.dropped > 0, "the server never disconnected a slow client"
    assert "client too slow; connection closed" in server.output()


def test_a_slow_body_is_cut_off_too(web: Callable[..., Launched]) -> None:
    server = web(ORDERS_CLIENT_TIMEOUT="1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"POST /orders/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
        began = time.monotonic()
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(65536):
                pass
        assert time.monotonic() - began < 15


def test_long_paths_are_cut_in_the_log_line_and_say_so(web: Callable[..., Launched]) -> None:
    server = web()
    long_path = "/orders/" + "9" * 4000
    requests.get(server.url(long_path), timeout=10)
    output = server.stop()
    lines = [json.loads(x) for x in output.splitlines() if x.startswith("{") and '"request"' in x]
    (line,) = [x for x in lines if str(x.get("path", "")).startswith("/orders/999")]
    assert len(str(line["path"])) <= 256
    assert line["path_truncated_from"] == len(long_path)
    assert all(len(x) < 3000 for x in output.splitlines()), "a log line is still unbounded"


def _thread_count(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads: line")


def test_idle_sockets_cannot_exhaust_the_invalidators_endpoint(
    launch: Callable[..., Launched], binlog_database: object, cache_prefix: str
) -> None:
    """200 idle sockets: the process keeps its few threads and /healthz still answers."""
    database_url = binlog_database.url  # type: ignore[attr-defined]
    env = base_env(
        ORDERS_DATABASE_URL=database_url,
        ORDERS_REDIS_URL=SHARED_REDIS,
        ORDERS_CACHE_PREFIX=cache_prefix,
    )
    port = int(env["ORDERS_INVALIDATOR_METRICS_PORT"])
    invalidator = launch(["invalidate"], env)
    invalidator.wait_http(port=port)
    before = _thread_count(invalidator.proc.pid)
    idle = []
    try:
        for _ in range(200):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        for sock in idle[:50]:
            sock.sendall(b"GET /metr")  # half a request line
        began = time.monotonic()
        response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        elapsed = time.monotonic() - began
        assert response.status_code == 200
        assert response.text == "ok\n"
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert b"orders_build_info" in metrics.content
        during = _thread_count(invalidator.proc.pid)
        print(
            f"/healthz under 200 idle sockets: {elapsed * 1000:.1f} ms; "
            f"threads {before} -> {during}"
        )
        assert during <= before + 2
    finally:
        for sock in idle:
            sock.close()
