"""CONTRIBUTING's module map names every module of service/ once, and only modules that exist.

Rows are compared as a list, not a set: a module listed twice (with two different descriptions,
one of them stale) fails as surely as one missing or one that no longer exists.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| `(service/[\w/]+\.py)` \|", flags=re.MULTILINE)


def listed_rows(text: str) -> list[str]:
    return ROW.findall(text)


def holds_code(path: Path) -> bool:
    """A package's ``__init__.py`` needs a row only when it holds more than a docstring."""
    body = ast.parse(path.read_text()).body
    return any(
        not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body
    )


def modules() -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "service").rglob("*.py")
        if path.name != "__init__.py" or holds_code(path)
    }


def problems(rows: list[str], actual: set[str]) -> dict[str, list[str]]:
    return {
        "listed twice": sorted(name for name, n in Counter(rows).items() if n > 1),
        "missing": sorted(actual - set(rows)),
        "gone": sorted(set(rows) - actual),
    }


def test_the_module_map_lists_every_module_once_and_nothing_else() -> None:
    rows = listed_rows((ROOT / "CONTRIBUTING.md").read_text())
    found = problems(rows, modules())
    assert found == {"listed twice": [], "missing": [], "gone": []}, found


def test_the_check_fails_on_a_duplicate_a_missing_and_a_gone_row() -> None:
    text = "| `service/a.py` | x |\n| `service/a.py` | y |\n| `service/gone.py` | z |\n"
    assert problems(listed_rows(text), {"service/a.py", "service/b.py"}) == {
        "listed twice": ["service/a.py"],
        "missing": ["service/b.py"],
        "gone": ["service/gone.py"],
    }
