"""`orders-service migrate` against a fresh server: it must create a missing database."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.faults.conftest import _cli
from tests.support.fixtures import ThrowawayServers

pytestmark = [pytest.mark.faults]


def test_migrate_creates_a_missing_database(throwaway: ThrowawayServers) -> None:
    """A fresh MySQL (tests, a new chart install) lacks the database: migrate creates it at once
    rather than waiting 60 s and failing with "unreachable: Unknown database"."""
    server = throwaway.mariadb(binlog=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERS_")}
    env["ORDERS_DATABASE_URL"] = server.database_url("created_by_migrate")
    began = time.monotonic()
    done = subprocess.run(
        [_cli(), "migrate"], env=env, capture_output=True, text=True, timeout=10, check=False
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - began < 10
    assert server.cli("SHOW DATABASES LIKE 'created_by_migrate'").strip() == "created_by_migrate"
