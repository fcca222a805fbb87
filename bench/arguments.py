"""``python -m bench``'s command line: the commands, the phases ``bench`` can leave out, and
each option's default (the make targets pass theirs)."""

from __future__ import annotations

import argparse
import os

from bench import sweep, targets, topologies
from bench.context import REPO, STATE

RESULTS = REPO / "bench" / "results"
PHASES = (
    *("redis_hits", "auth", "hot_set", "table_sizes", "invalidation"),
    *topologies.PHASES,
)


def sizes(text: str) -> list[int]:
    """``1000,10k,1M`` -> [1000, 10000, 1000000]."""
    out = []
    for raw in text.split(","):
        part = raw.strip().lower().replace("_", "")
        if not part:
            continue
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1], 1)
        out.append(int(float(part[:-1] if scale > 1 else part) * scale))
    return out


def parser(description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=description)
    parser.add_argument(
        "command",
        choices=[
            "bench",
            "smoke",
            "curves",
            "pagination",
            "soak",
            "profile",
            "ablation",
            "compare",
            "sweep",
            "invalidation",
            "promotion",
            "sentinel-failover",
        ],
    )
    parser.add_argument("--out", default=str(RESULTS), help="directory for the result files")
    parser.add_argument(
        "--state",
        default=str(STATE),
        help="the bench's own MariaDB data and logs (kept between runs)",
    )
    parser.add_argument(
        "--mysql-port", type=int, default=int(os.environ.get("BENCH_MYSQL_PORT", "3316"))
    )
    parser.add_argument("--buffer-pool", default="2G")
    parser.add_argument(
        "--keep-mysql", action="store_true", help="leave the bench's MariaDB running afterwards"
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--workers", type=int, default=0, help="default: the service's default")
    parser.add_argument("--threads", type=int, default=0, help="default: the service's default")
    parser.add_argument("--keepalive", type=int, default=5, help="gunicorn keep-alive, seconds")
    parser.add_argument(
        "--worker-class", default="gthread", choices=["gthread", "sync"], help="gunicorn worker"
    )
    parser.add_argument(
        "--baseline",
        default=targets.BASELINE,
        help="previous results for the no-worse-than-before targets: REV:PATH or a file",
    )
    parser.add_argument(
        "--hot-sets",
        type=sizes,
        default=None,
        help="hot-set sizes in pages, comma separated (default 1k,10k,100k,1M)",
    )
    parser.add_argument(
        "--table-sizes",
        type=sizes,
        default=None,
        help="miss-latency curve table sizes (default 100k,1M,10M; 10M seeds once, ~3 min)",
    )
    parser.add_argument(
        "--skip",
        type=lambda text: [p for p in text.split(",") if p],
        default=[],
        help=f"phases of `bench` to leave out, comma separated: {', '.join(PHASES)}",
    )
    parser.add_argument(
        "--rev-a", default="", help="compare: revision A (default origin/main or main)"
    )
    parser.add_argument(
        "--rev-b", default="HEAD", help="compare: revision B (HEAD: the working tree)"
    )
    parser.add_argument(
        "--compare-seconds", type=float, default=6, help="compare/sweep: s per round"
    )
    parser.add_argument("--compare-rounds", type=int, default=5, help="compare: interleaved rounds")
    parser.add_argument("--sweep-rounds", type=int, default=2, help="sweep: rounds per setting")
    parser.add_argument(
        "--grid", default=sweep.DEFAULT_GRID, help="sweep: field=v1,v2;... varied one at a time"
    )
    parser.add_argument("--orders", type=int, default=10_000_000, help="pagination table size")
    parser.add_argument("--samples", type=int, default=200, help="pagination samples per page")
    parser.add_argument(
        "--peer-samples",
        type=int,
        default=5,
        help="pagination samples per page for the peer (OFFSET is slow)",
    )
    parser.add_argument(
        "--write-rates", type=sizes, default=None, help="invalidation: offered rows/s"
    )
    parser.add_argument("--writers", type=int, default=0, help="invalidation: writer connections")
    parser.add_argument(
        "--rows-per-transaction", type=int, default=0, help="invalidation: rows per write"
    )
    parser.add_argument(
        "--profile-invalidator",
        action="store_true",
        help="invalidation: py-spy on the invalidator at the highest write rate",
    )
    parser.add_argument(
        "--promotions", type=int, default=20, help="promotion: MySQL failovers in a row"
    )
    parser.add_argument(
        "--failovers", type=int, default=0, help="sentinel-failover: failovers (default 20)"
    )
    parser.add_argument("--minutes", type=float, default=10, help="soak length")
    parser.add_argument("--max-requests", type=int, default=20000, help="soak worker recycling")
    parser.add_argument("--seconds", type=int, default=20, help="profile length")
    parser.add_argument(
        "--nice",
        type=int,
        default=-5,
        help="niceness of the bench and everything it starts (shared machine)",
    )
    return parser
