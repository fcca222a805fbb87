"""prometheus-client multiprocess files: wiped at start, dead workers folded away, locked reads.

Each gunicorn worker writes its metrics to ``<kind>_<pid>.db`` files in PROMETHEUS_MULTIPROC_DIR.
A dead worker's counter and histogram files must keep counting (or sums drop when workers recycle),
but leaving them in place makes every scrape read one more file per recycle (client_python #367:
6,800 files gave 40 s scrapes). So when a worker exits, the gunicorn master adds its values into
one ``<kind>_archive.db`` file per kind and removes the worker's files. Live gauges are dropped, as
``mark_process_dead`` does. The swap (archive replaced, dead file removed) happens under an
exclusive ``flock``; scrapes read under a shared one, so no scrape sees a value twice or not at all.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from service.compat import prometheus as compat

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
# Set by ``serve`` when it made the directory itself (no ORDERS_METRICS_DIR): gunicorn's master
# removes it on exit, so each run does not leave a directory behind in /tmp.
PRIVATE_ENV_VAR = "ORDERS_SERVE_PRIVATE_METRICS_DIR"
LOCK_FILE = ".collect.lock"
ARCHIVE = "archive"


def directory() -> str | None:
    """The multiprocess directory from the environment, or None in single-process mode."""
    return os.environ.get(ENV_VAR) or None


def prepare(path: str) -> None:
    """Create the directory and remove what an earlier run left (old pids' values would leak in).
    Only ``orders-service serve`` calls it, once, before gunicorn starts."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        if stale.is_file() and (stale.suffix in {".db", ".tmp"} or stale.name == LOCK_FILE):
            stale.unlink()


def remove_private() -> None:
    """Remove the directory ``serve`` created for this server alone (nothing else reads it)."""
    path = os.environ.get(PRIVATE_ENV_VAR)
    if path and path == directory():
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def _locked(path: str, operation: int) -> Iterator[None]:
    fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _combine(
    prefix: str, current: tuple[float, float], new: tuple[float, float]
) -> tuple[float, float]:
    """How two processes' values of one series merge, per file kind (value, timestamp)."""
    if prefix == "gauge_max":
        return current if current[0] >= new[0] else new
    if prefix == "gauge_min":
        return current if current[0] <= new[0] else new
    if prefix == "gauge_mostrecent":
        return current if current[1] >= new[1] else new
    # counter, histogram (buckets are stored per bucket, not cumulative), summary, gauge_sum
    return current[0] + new[0], max(current[1], new[1])


def retire(pid: int, path: str) -> int:
    """Fold a dead process's files into the archives; returns how many files it removed.

    Runs in the gunicorn master (``child_exit``), one worker at a time, after the worker is gone.
    """
    dead = sorted(glob.glob(os.path.join(path, compat.file_name("*", pid))))
    swaps: list[tuple[str, str]] = []
    drop: list[str] = []
    for filename in dead:
        prefix = compat.file_kind(filename, pid)
        if prefix.startswith("gauge_live"):
            drop.append(filename)  # a live gauge ends with its process
            continue
        if prefix == "gauge_all":
            continue  # "all" gauges are per pid on purpose: keep them as they are
        archive = os.path.join(path, compat.file_name(prefix, ARCHIVE))
        merged: dict[str, tuple[float, float]] = {}
        for source in (archive, filename):
            if not os.path.exists(source):
                continue
            for key, value, timestamp in compat.read_values(source):
                seen = merged.get(key)
                merged[key] = (
                    (value, timestamp)
                    if seen is None
                    else _combine(prefix, seen, (value, timestamp))
                )
        staged = archive + ".tmp"
        if os.path.exists(staged):
            os.unlink(staged)
        compat.write_values(staged, ((key, *value) for key, value in merged.items()))
        swaps.append((staged, archive))
        drop.append(filename)
    if not drop:
        return 0
    with _locked(path, fcntl.LOCK_EX):
        for staged, archive in swaps:
            os.replace(staged, archive)
        for filename in drop:
            os.unlink(filename)
    return len(drop)


class LockedMultiProcessCollector(Collector):
    """``MultiProcessCollector`` that reads the files under the shared lock ``retire`` respects."""

    def __init__(self, path: str) -> None:
        self._path = path

    def collect(self) -> Iterable[Metric]:
        with _locked(self._path, fcntl.LOCK_SH):
            files = glob.glob(os.path.join(self._path, "*.db"))
            return compat.merge(files)


def registry(path: str) -> CollectorRegistry:
    """A registry that reports every worker's (and every retired worker's) values."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(LockedMultiProcessCollector(path))
    return reg
