"""prometheus-client's multiprocess internals (service.compat.prometheus) against the installed
release: files written by the library's own multiprocess values read back, rewritten and merged
as the archive needs. An upgrade that changes the file format, the naming or ``merge`` fails
here."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from prometheus_client import values
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

from service.compat import prometheus as compat

PID = 4242


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A counter and a livesum gauge written by the library as process PID would."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    value_class = values.MultiProcessValue(process_identifier=lambda: PID)  # type: ignore[no-untyped-call]
    counter = value_class("counter", "orders_x", "orders_x_total", ("route",), ("a",), "help x")
    counter.inc(3)
    gauge = value_class("gauge", "orders_g", "orders_g", (), (), "help g", "livesum")
    gauge.set(7)
    yield tmp_path
    values.close_all_multiprocess_files()  # type: ignore[no-untyped-call]


def test_the_tested_release_is_installed() -> None:
    assert version("prometheus-client").startswith(compat.TESTED + ".")


def test_the_private_names_have_the_signatures_used() -> None:
    assert list(inspect.signature(MmapedDict).parameters)[:1] == ["filename"]
    assert isinstance(inspect.getattr_static(MmapedDict, "read_all_values_from_file"), staticmethod)
    for method in ("write_value", "close"):
        assert callable(getattr(MmapedDict, method))
    assert list(inspect.signature(MultiProcessCollector.merge).parameters) == [
        "files",
        "accumulate",
    ]


def test_the_library_names_its_files_as_the_archive_assumes(files: Path) -> None:
    names = sorted(path.name for path in files.glob("*.db"))
    assert names == [compat.file_name("counter", PID), compat.file_name("gauge_livesum", PID)]
    assert [compat.file_kind(str(files / name), PID) for name in names] == [
        "counter",
        "gauge_livesum",
    ]
    with pytest.raises(ValueError, match="not a file of process"):
        compat.file_kind(str(files / names[0]), PID + 1)


def test_values_read_back_rewritten_and_merged_as_one_process(files: Path) -> None:
    source = str(files / compat.file_name("counter", PID))
    read = list(compat.read_values(source))
    assert [(value, timestamp) for _key, value, timestamp in read] == [(3.0, 0.0)]
    archive = str(files / compat.file_name("counter", "archive"))
    compat.write_values(archive, [(key, value * 2, timestamp) for key, value, timestamp in read])
    assert [value for _key, value, _ts in compat.read_values(archive)] == [6.0]
    merged = {m.name: m for m in compat.merge([source, archive])}
    assert [(s.name, s.labels, s.value) for s in merged["orders_x"].samples] == [
        ("orders_x_total", {"route": "a"}, 9.0)
    ]
    assert merged["orders_x"].type == "counter"
