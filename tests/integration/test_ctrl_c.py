"""Ctrl-C on `orders-service serve` (as in `make run`): the terminal sends SIGINT to the whole
process group, the arbiter and every worker at once. The server must be gone within 5 s every
time, with no worker killed (gunicorn's "was sent SIGKILL" line), and leave no metrics directory.

Each try is a real gunicorn in its own process group, signalled with ``killpg`` as a terminal
does. The shape is small (2 workers x 2 threads) so twenty tries stay quick.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.processes import ORDERS_SERVICE, http_ok, service_env
from tests.support.servers import free_port
from tests.support.waiting import wait_for

TRIES = 20
BOUND = 5.0

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _one_ctrl_c(env: dict[str, str], log: Path) -> tuple[float, str]:
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(ORDERS_SERVICE), "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own group: killpg reaches it as a terminal would
        )
        try:
            base = f"http://127.0.0.1:{env['ORDERS_PORT']}"
            wait_for(lambda: server.poll() is not None or http_ok(f"{base}/healthz"), 60, "the API")
            # Both workers up: Ctrl-C must not race a worker still booting either.
            wait_for(lambda: log.read_text().count("Booting worker") >= 2, 30, "both workers")
            began = time.monotonic()
            os.killpg(server.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=30)
            took = time.monotonic() - began
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(10)
    return took, log.read_text(errors="replace")


def test_ctrl_c_stops_the_server_within_five_seconds_every_time(
    seeded_database_url: str, cache_prefix: str, tmp_path: Path
) -> None:
    env = service_env(
        database_url=seeded_database_url,
        redis_url="redis://127.0.0.1:6379/0",
        prefix=cache_prefix,
        port=free_port(),
        metrics_dir=tmp_path / "unused",
        extra={"ORDERS_GRACEFUL_TIMEOUT": "20", "ORDERS_LOG_FORMAT": "console"},
    )
    del env["ORDERS_METRICS_DIR"]  # the default: a private directory serve must also remove
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    times: list[float] = []
    for attempt in range(TRIES):
        took, output = _one_ctrl_c(env, tmp_path / f"serve-{attempt}.log")
        times.append(took)
        assert "SIGKILL" not in output, output[-3000:]
        assert took < BOUND, f"try {attempt + 1}: {took:.1f} s\n{output[-3000:]}"
    print(f"Ctrl-C to exit over {TRIES} tries: " + ", ".join(f"{t:.2f}" for t in times))
    print(f"max {max(times):.2f} s, median {sorted(times)[TRIES // 2]:.2f} s")
    assert list((tmp_path / "tmp").iterdir()) == [], "serve left its metrics directory behind"
