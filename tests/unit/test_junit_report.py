"""The suite runs under ``--junitxml`` (most CI systems add it): a test that records a property
(the fault tests' figures) must not turn pytest's xunit2 warning into an error at setup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_record_property_under_junitxml_with_the_projects_settings(tmp_path: Path) -> None:
    (tmp_path / "test_recorded.py").write_text(
        "def test_records(record_property):\n    record_property('lag_s', 0.25)\n"
    )
    report = tmp_path / "report.xml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(tmp_path),
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            str(tmp_path / "test_recorded.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert 'name="lag_s"' in report.read_text()
