"""The Dockerfile passes hadolint and trivy's misconfiguration checks; every exception says why."""

from __future__ import annotations

import re
import subprocess

from tests.container.conftest import ROOT, tool

DOCKERFILE = ROOT / "Dockerfile"
TRIVY_IGNORE = ROOT / "hack" / "container.trivyignore"


def test_hadolint_finds_nothing_at_info_or_above() -> None:
    result = subprocess.run(
        [str(tool("hadolint")), "--failure-threshold=info", "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_trivy_config_finds_nothing_but_documented_exceptions() -> None:
    result = subprocess.run(
        [
            str(tool("trivy")),
            "config",
            "--quiet",
            "--skip-check-update",
            "--exit-code=1",
            f"--ignorefile={TRIVY_IGNORE}",
            f"--cache-dir={ROOT / '.tools' / 'container' / 'trivy-cache'}",
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_lint_exception_carries_its_reason() -> None:
    lines = TRIVY_IGNORE.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            reason = lines[number - 1] if number else ""
            assert reason.startswith("#"), f"{line}: no reason above it"
    dockerfile = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(dockerfile):
        if re.search(r"hadolint\s+ignore=", line):
            reason = dockerfile[number - 1] if number else ""
            assert reason.startswith("#"), f"{line}: no reason above it"
            assert "hadolint" not in reason, f"{line}: no reason above it"
