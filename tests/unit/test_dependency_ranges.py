"""The libraries whose private internals or undocumented behaviour the service relies on are held
in pyproject.toml to the minor version that is locked (requirements/runtime.txt) and tested: a
range that admits the next minor, or no longer admits the locked release, fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from service.compat import gunicorn, prometheus, structlog

ROOT = Path(__file__).resolve().parents[2]
HELD = ("gunicorn", "mysql-replication", "structlog", "pymysql", "prometheus-client", "redis")
COMPAT_TESTED = {
    "gunicorn": gunicorn.TESTED,
    "structlog": structlog.TESTED,
    "prometheus-client": prometheus.TESTED,
}


def _declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = (Requirement(line) for line in project["dependencies"])
    return {requirement.name.lower(): requirement for requirement in requirements}


def _locked(name: str) -> Version:
    text = (ROOT / "requirements" / "runtime.txt").read_text()
    found = re.search(rf"^{re.escape(name)}==(\S+)", text, flags=re.MULTILINE | re.IGNORECASE)
    assert found, f"{name} is not locked in requirements/runtime.txt"
    return Version(found.group(1))


@pytest.mark.parametrize("name", HELD)
def test_the_range_admits_the_locked_release_and_no_other_minor(name: str) -> None:
    specifier = _declared()[name].specifier
    locked = _locked(name)
    assert locked in specifier
    major, minor = locked.release[:2]
    assert Version(f"{major}.{minor + 1}") not in specifier
    assert Version(f"{major}.{minor}.999") in specifier


@pytest.mark.parametrize("name", sorted(COMPAT_TESTED))
def test_each_compat_module_was_tested_on_the_locked_minor(name: str) -> None:
    major, minor = _locked(name).release[:2]
    assert COMPAT_TESTED[name] == f"{major}.{minor}"
