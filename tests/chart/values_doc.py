"""The chart README's values table, generated from the `# --` comments of values.yaml.

`make chart-docs` rewrites the table between the README's markers; test_chart_docs.py fails when
the table is stale or a value has no comment, so the README always lists every value.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "orders"
START, END = "<!-- values:start -->", "<!-- values:end -->"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):(?P<rest>.*)$")


@dataclass(frozen=True)
class Value:
    path: str
    description: str
    default: Any


class UndocumentedValueError(ValueError):
    """A value in values.yaml has no `# --` comment above it."""


def documented_values(values_yaml: str) -> list[Value]:
    """Every documented key in file order. A `# --` comment documents its key and all below it."""
    defaults = yaml.safe_load(values_yaml)
    found: list[Value] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the mappings we are inside
    pending: str | None = None
    skip_deeper_than: int | None = None
    for line in values_yaml.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = stripped.removeprefix("# --").strip()
            continue
        match = KEY.match(line)
        if not match or stripped.startswith("#"):
            continue
        indent = len(match["indent"])
        if skip_deeper_than is not None:
            if indent > skip_deeper_than:
                continue
            skip_deeper_than = None
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([key for _, key in stack] + [match["key"]])
        rest = match["rest"].split(" #")[0].strip()
        if pending is not None:
            found.append(Value(path, pending, lookup(defaults, path)))
            pending = None
            skip_deeper_than = indent
        elif rest:
            raise UndocumentedValueError(f"{path} has no `# --` comment in values.yaml")
        else:
            stack.append((indent, match["key"]))
    return found


def lookup(tree: Any, path: str) -> Any:
    for key in path.split("."):
        tree = tree[key]
    return tree


def table(values: list[Value]) -> str:
    rows = ["| Key | Default | Description |", "| --- | --- | --- |"]
    for value in values:
        default = json.dumps(value.default, separators=(",", ":")).replace("|", "\\|")
        rows.append(f"| `{value.path}` | `{default}` | {value.description} |")
    return "\n".join(rows)


def render_readme(readme: str, values_yaml: str) -> str:
    """The README with its values table regenerated."""
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    if not rest:
        raise ValueError(f"README lacks the {START} ... {END} markers")
    return f"{head}{START}\n{table(documented_values(values_yaml))}\n{END}{tail}"


def main() -> int:
    readme = CHART / "README.md"
    readme.write_text(render_readme(readme.read_text(), (CHART / "values.yaml").read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
