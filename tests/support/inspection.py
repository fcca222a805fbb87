"""What the inspector's tests and its hand-run measurement share: a stand-in for a healthy
invalidator's heartbeat, and the inspector's counters read back from the registry."""

from __future__ import annotations

import threading

import redis
from prometheus_client import REGISTRY


class Heartbeat:
    """Plays a healthy invalidator: ``checkpoint`` = Redis now, every 50 ms."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._client, self._key = client, key
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            seconds, micros = self._client.time()
            self._client.set(self._key, seconds * 1000 + micros // 1000)
            self._stop.wait(0.05)


def counted(name: str, kind: str) -> float:
    return REGISTRY.get_sample_value(f"orders_inspector_{name}_total", {"kind": kind}) or 0.0
