"""The README, docs/configuration.md, the CLI and the schema say the same thing as the code."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from service.cli import main
from service.orders import repository, schema

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))
import docs

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()


def test_the_configuration_table_is_the_generated_one() -> None:
    assert docs.with_config_table(CONFIGURATION) == CONFIGURATION, "run `make docs`"


def test_the_readme_links_each_doc() -> None:
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{doc.name})" in README, f"README.md has no link to docs/{doc.name}"


def test_the_readme_names_every_command() -> None:
    for command in main.commands:
        assert f"orders-service {command}" in README


def test_the_readme_says_what_it_is_for_then_runs_curls_and_tests() -> None:
    purpose, run, curl, status, test = (
        README.index(s)
        for s in (
            "**What it is for.**",
            "make run",
            "curl -i 127.0.0.1:5001/orders/99",
            "http://127.0.0.1:5002/status",
            "`make test` runs lint",
        )
    )
    assert purpose < run < curl < status < test


def test_the_triggers_count_blocks_of_the_width_the_queries_assume() -> None:
    sql = " ".join(
        statement for _, statements in schema.available_migrations() for statement in statements
    )
    widths = {int(w) for w in re.findall(r"DIV (\d+)", sql)}
    assert widths == {repository.BUCKET_WIDTH}


def test_migration_statements_split_cleanly() -> None:
    for version, statements in schema.available_migrations():
        assert statements, version
        assert all(not s.endswith(";") for s in statements)
