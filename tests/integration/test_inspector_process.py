"""`orders-service inspect` as a process: /healthz, loopback by default, no thread per socket,
its own reads labelled component="inspector", a summary line (every minute and at exit)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.processes import ORDERS_SERVICE
from tests.support.servers import free_port
from tests.support.shared import SHARED_REDIS
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration]


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def test_inspector_process_answers_healthz_on_loopback_with_bounded_threads_and_labels(
    seeded_database_url: str, cache_prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORDERS_")},
        "ORDERS_DATABASE_URL": seeded_database_url,
        "ORDERS_REDIS_URL": SHARED_REDIS,
        "ORDERS_CACHE_PREFIX": cache_prefix,
        "ORDERS_INSPECTOR_METRICS_PORT": str(port),
        "ORDERS_INSPECTOR_INTERVAL": "0.2",
        "ORDERS_HOST": "0.0.0.0",  # noqa: S104 - the API's address must not move the inspector's
        "ORDERS_LOG_FORMAT": "json",
    }
    log = tmp_path / "inspect.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ORDERS_SERVICE), "inspect"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    idle: list[socket.socket] = []
    try:
        wait_for(lambda: requests.get(f"{base}/healthz", timeout=2).ok, 60, "inspector healthz")
        assert requests.get(f"{base}/nothing", timeout=2).status_code == 404
        listening = Path("/proc/net/tcp").read_text()
        assert f"0100007F:{port:04X}" in listening  # 127.0.0.1, not 00000000 (0.0.0.0)
        before = _threads(process.pid)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
        assert requests.get(f"{base}/healthz", timeout=5).ok
        assert _threads(process.pid) <= before + 2
        wait_for(
            lambda: (
                "orders_redis_call_duration_seconds_count{"
                in requests.get(f"{base}/metrics", timeout=2).text
            ),
            30,
            "the inspector's own Redis reads",
        )
        text = requests.get(f"{base}/metrics", timeout=2).text
        shared = [
            line
            for line in text.splitlines()
            if line.startswith(("orders_db_query", "orders_redis_call"))
        ]
        assert shared
        assert all('component="inspector"' in line for line in shared), shared[:5]
    finally:
        for sock in idle:
            sock.close()
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert process.returncode == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    summaries = [line for line in lines if line.get("event") == "inspector summary"]
    assert summaries, log.read_text()[-2000:]
    assert summaries[-1]["rounds"] >= 1
    assert {"checks", "mismatches", "inconsistencies"} <= summaries[-1].keys()
