"""The cost of the canonical request line, per-line write+flush vs the batched LineBuffer.

Four threads (a gunicorn worker's default) log the request line to stdout, a pipe drained by
`cat` as under a container runtime. Run: `.venv/bin/python -m bench.log_lines`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from service.config import Settings
from service.observability import logging as service_logging

LINES_PER_THREAD = 20_000
THREADS = 4
FIELDS = {
    "method": "GET",
    "route": "/orders/<page>",
    "path": "/orders/9",
    "status": 200,
    "duration_ms": 0.5,
    "cache": "hit",
}


def measure(buffered: bool) -> float:
    """CPU microseconds per logged line, all threads together (run once per process: the
    buffer's flusher thread keeps the stream it was given)."""
    read_end, write_end = os.pipe()
    subprocess.Popen(["cat"], stdin=read_end, stdout=subprocess.DEVNULL)  # ends at our exit
    os.close(read_end)
    sys.stdout = os.fdopen(write_end, "w")
    service_logging.configure(Settings.from_env({"ORDERS_LOG_FORMAT": "json"}), buffered=buffered)
    log = service_logging.request_logger()

    def work() -> None:
        for _ in range(LINES_PER_THREAD):
            log.info("request", **FIELDS)

    started = time.process_time()
    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (time.process_time() - started) / (LINES_PER_THREAD * THREADS) * 1e6


def main() -> None:
    if len(sys.argv) > 1:
        print(f"{measure(buffered=sys.argv[1] == 'batched'):.1f}", file=sys.stderr)
        return
    for _ in range(3):
        figures = {
            mode: subprocess.run(
                [sys.executable, "-m", "bench.log_lines", mode],
                capture_output=True,
                text=True,
                check=True,
            ).stderr.strip()
            for mode in ("per-line", "batched")
        }
        print(f"per-line write+flush {figures['per-line']} us/line, batched {figures['batched']}")


if __name__ == "__main__":
    main()
