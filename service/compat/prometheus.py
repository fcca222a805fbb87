"""The private parts of prometheus-client's multiprocess mode that service.observability.multiproc
relies on.

Folding a dead worker's files into an archive (client_python #367) needs what the library keeps
to itself: the ``MmapedDict`` file format (``prometheus_client.mmap_dict``), the file naming
``<kind>_<pid>.db`` (``gauge_<mode>_<pid>.db`` for gauges) that ``MultiProcessCollector`` parses
the metric type from, and ``MultiProcessCollector.merge`` (undocumented) to read the files under
our own lock. tests/unit/test_compat_prometheus.py writes files through the library's own
multiprocess values and reads them back here; pyproject.toml holds prometheus-client to the
release series tested (``TESTED``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

TESTED = "0.26"


def file_kind(filename: str, pid: int | str) -> str:
    """The kind of a per-process file (``counter``, ``gauge_livesum``, ...): its name less
    ``_<pid>.db``; the collector reads the metric type from the part before the first ``_``."""
    suffix = f"_{pid}.db"
    name = os.path.basename(filename)
    if not name.endswith(suffix):
        raise ValueError(f"{name} is not a file of process {pid}")
    return name[: -len(suffix)]


def file_name(kind: str, owner: int | str) -> str:
    """The file the library (or the archive, ``owner="archive"``) keeps ``kind`` values in."""
    return f"{kind}_{owner}.db"


def read_values(filename: str) -> Iterator[tuple[str, float, float]]:
    """(key, value, timestamp) of every series in one file."""
    for key, value, timestamp, _pos in MmapedDict.read_all_values_from_file(filename):  # type: ignore[no-untyped-call]
        yield key, value, timestamp


def write_values(filename: str, values: Iterable[tuple[str, float, float]]) -> None:
    """A new file holding ``values`` (key, value, timestamp) in the library's format."""
    out = MmapedDict(filename)  # type: ignore[no-untyped-call]
    try:
        for key, value, timestamp in values:
            out.write_value(key, value, timestamp)  # type: ignore[no-untyped-call]
    finally:
        out.close()  # type: ignore[no-untyped-call]


def merge(files: list[str]) -> list[Metric]:
    """The metrics of ``files`` as one process would report them (histograms accumulated)."""
    return list(MultiProcessCollector.merge(files, accumulate=True))  # type: ignore[no-untyped-call]
