"""The lock files cover what pyproject.toml asks for, pin every package with its hashes, and are
what `make install` and the Dockerfile install from."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCKS = ROOT / "requirements"
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^ \\]+)", re.MULTILINE)


def pins(name: str) -> dict[str, str]:
    text = (LOCKS / name).read_text()
    return {canonicalize_name(package): version for package, version in _PIN.findall(text)}


def entries(name: str) -> list[str]:
    """Each pinned requirement with its continuation lines, as one string."""
    text = (LOCKS / name).read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    return [block for block in blocks if _PIN.match(block)]


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("runtime.txt", PYPROJECT["project"]["dependencies"]),
        (
            "dev.txt",
            PYPROJECT["project"]["dependencies"]
            + PYPROJECT["project"]["optional-dependencies"]["dev"],
        ),
        (
            "bench.txt",
            PYPROJECT["project"]["dependencies"]
            + PYPROJECT["project"]["optional-dependencies"]["dev"]
            + PYPROJECT["project"]["optional-dependencies"]["bench"],
        ),
        ("build.txt", PYPROJECT["build-system"]["requires"]),
    ],
)
def test_each_lock_pins_every_dependency_within_its_range(
    lock: str, requirements: list[str]
) -> None:
    pinned = pins(lock)
    for line in requirements:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not in requirements/{lock}: run `make lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"requirements/{lock} pins {name}=={pinned[name]}, outside {requirement.specifier}: "
            "run `make lock`"
        )
    if lock != "build.txt":
        assert "cryptography" in pinned, "pymysql[rsa]'s extra is missing: run `make lock`"


@pytest.mark.parametrize("lock", ["runtime.txt", "dev.txt", "bench.txt", "build.txt"])
def test_every_pin_carries_a_hash(lock: str) -> None:
    for entry in entries(lock):
        assert "--hash=sha256:" in entry, entry.splitlines()[0]


@pytest.mark.parametrize(
    ("subset", "superset"), [("runtime.txt", "dev.txt"), ("dev.txt", "bench.txt")]
)
def test_the_locks_agree_with_each_other(subset: str, superset: str) -> None:
    """Tests run the versions the image ships: every runtime pin is the same in dev.txt, and
    installing the bench extra on top moves none of dev.txt's pins."""
    wider = pins(superset)
    for name, version in pins(subset).items():
        assert wider.get(name) == version, (
            f"{name}: {subset} {version}, {superset} {wider.get(name)}"
        )


def test_the_build_lock_input_matches_the_build_system() -> None:
    wanted = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["build-system"]["requires"]}
    listed = {
        canonicalize_name(Requirement(line).name)
        for line in (LOCKS / "build.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert wanted <= listed


def test_installs_use_only_the_locks() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements/dev.txt" in makefile
    assert "--require-hashes -r requirements/build.txt" in makefile
    assert "--no-deps --no-build-isolation -e ." in makefile
    assert "--require-hashes -r requirements/bench.txt" in (ROOT / "mk" / "bench.mk").read_text()
    dockerfile = " ".join((ROOT / "Dockerfile").read_text().replace("\\\n", " ").split())
    assert "--require-hashes --requirement /tmp/runtime.txt" in dockerfile
    assert "--require-hashes --requirement /tmp/build.txt" in dockerfile
    assert "pyproject.toml" not in dockerfile.split("AS build")[0], "deps must come from the lock"
