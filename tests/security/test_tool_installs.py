"""Supply chain: every tool `make` installs with pip (the lock tools, the chart, container and
observability checkers, actionlint) comes from a lock file with hashes under requirements/, like
the service's own dependencies; the image's base and its
Dockerfile frontend name exact versions, never a floating tag."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "requirements" / "tools.txt"
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^ \\]+)", re.MULTILINE)


def pip_installs(text: str) -> list[str]:
    """Every `pip install` command line (with its continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    commands = [line for line in joined.splitlines() if not line.lstrip().startswith("#")]
    return [line for line in commands if re.search(r"pip\b.*\binstall\b", line)]


def test_every_tool_install_of_make_lock_and_ci_is_hashed() -> None:
    for path in (ROOT / "mk" / "supply-chain.mk", ROOT / ".github" / "workflows" / "ci.yaml"):
        for line in pip_installs(path.read_text()):
            assert "--require-hashes" in line, f"{path.name}: {line.strip()}"
            assert "requirements/" in line, f"{path.name}: {line.strip()}"


def make_files() -> list[Path]:
    return [ROOT / "Makefile", *sorted((ROOT / "mk").glob("*.mk"))]


def test_every_pip_install_of_make_is_hashed_from_a_lock() -> None:
    """The project's own editable install is the one exception: it downloads nothing."""
    for path in make_files():
        for line in pip_installs(path.read_text()):
            if line.lstrip().startswith("@echo") or line.rstrip().endswith(" -e ."):
                continue
            assert "--require-hashes" in line, f"{path.name}: {line.strip()}"
            assert "-r requirements/" in line, f"{path.name}: {line.strip()}"


@pytest.mark.parametrize(
    "lock", ["chart-tools.txt", "actionlint.txt", "container-tools.txt", "observability-tools.txt"]
)
def test_each_tool_lock_pins_every_package_with_hashes_and_make_lock_renews_it(lock: str) -> None:
    text = (ROOT / "requirements" / lock).read_text()
    blocks = [b for b in re.split(r"\n(?=[A-Za-z0-9])", text) if _PIN.match(b)]
    assert blocks
    for block in blocks:
        assert "--hash=sha256:" in block, block.splitlines()[0]
    assert lock.removesuffix(".txt") in (ROOT / "mk" / "supply-chain.mk").read_text()


def test_the_tools_lock_pins_every_package_with_hashes() -> None:
    text = TOOLS.read_text()
    blocks = [b for b in re.split(r"\n(?=[A-Za-z0-9])", text) if _PIN.match(b)]
    assert blocks
    for block in blocks:
        assert "--hash=sha256:" in block, block.splitlines()[0]
    pinned = dict(_PIN.findall(text))
    make = (ROOT / "mk" / "supply-chain.mk").read_text()
    version = re.search(r"^PIP_TOOLS_VERSION \?= (\S+)$", make, re.MULTILINE)
    assert version
    assert pinned["pip-tools"] == version.group(1)
    assert "pip-audit" in pinned
    assert "tools.txt" in make  # `make lock` keeps it current


def test_the_image_base_and_frontend_name_exact_versions() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    syntax = re.match(r"# syntax=docker/dockerfile:(\S+)", dockerfile)
    assert syntax
    assert re.fullmatch(r"\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?", syntax.group(1))
    base = re.search(r"^ARG BASE_IMAGE=python:(\S+)$", dockerfile, re.MULTILINE)
    assert base
    assert re.fullmatch(r"\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1))
