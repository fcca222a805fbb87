"""The load generator's page choice over a million pages (bench/wrk_load.lua, run by wrk itself):
Zipf puts page k at weight 1/k and uniform spreads evenly, with no page outside 1..N."""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.load import run_wrk

PAGES = 1_000_000


@pytest.fixture
def recorder() -> Iterator[tuple[str, Counter[int]]]:
    """A keep-alive HTTP server that answers every request and counts the pages asked for."""
    seen: Counter[int] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        wbufsize = 1 << 16  # headers and body in one write (flushed after each request)

        def do_GET(self) -> None:
            page = int(self.path.rsplit("/", 1)[-1])
            with lock:
                seen[page] += 1
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", seen
    finally:
        server.shutdown()
        server.server_close()


def test_zipf_over_a_million_pages_weights_page_k_by_one_over_k(
    recorder: tuple[str, Counter[int]],
) -> None:
    url, seen = recorder
    run_wrk(url, seconds=2, pages=f"zipf:{PAGES}:1:7", connections=4)
    total = sum(seen.values())
    assert total >= 1000, "too few requests to judge the mix"
    assert min(seen) >= 1
    assert max(seen) <= PAGES
    harmonic = math.log(PAGES) + 0.5772  # H(n), to well under 0.1 %
    assert seen[1] / total == pytest.approx(1 / harmonic, abs=0.025)  # ~6.9 %
    top = sum(n for page, n in seen.items() if page <= 4096) / total
    assert top == pytest.approx((math.log(4096) + 0.5772) / harmonic, abs=0.06)  # ~62 %


def test_uniform_over_a_million_pages_spreads_evenly(recorder: tuple[str, Counter[int]]) -> None:
    url, seen = recorder
    run_wrk(url, seconds=2, pages=f"uniform:{PAGES}:7", connections=4)
    total = sum(seen.values())
    assert total >= 1000
    assert min(seen) >= 1
    assert max(seen) <= PAGES
    lower_half = sum(n for page, n in seen.items() if page <= PAGES // 2) / total
    assert lower_half == pytest.approx(0.5, abs=0.06)
    assert len(seen) > 0.95 * total, "a million pages: repeats are rare"
