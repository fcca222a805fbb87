"""The CLI finds the dev stack `make run` started (``.run/orders.env``), says what each command
targets, fails with one clear line (no traceback, no password), and `seed` does not append to
orders it was not asked to."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import ORDERS_SERVICE
from tests.support.shared import SHARED_MYSQL, SHARED_REDIS

pytestmark = [pytest.mark.integration]
SECRET = "s3cret-in-the-env-file"


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORDERS_")}
    return subprocess.run(
        [str(ORDERS_SERVICE), *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_clear_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def test_config_reads_the_env_file_make_run_writes_and_redacts_it(tmp_path: Path) -> None:
    (tmp_path / ".run").mkdir()
    (tmp_path / ".run" / "orders.env").write_text(
        "# written by make run\n"
        f"ORDERS_DATABASE_URL='mysql://orders_migrate:{SECRET}@127.0.0.1:3307/orders'\n"
        "ORDERS_CACHE_PREFIX=orders-dev-123\n"
        "ORDERS_PORT=5001\n"
    )
    done = cli("config", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ORDERS_CACHE_PREFIX=orders-dev-123" in done.stdout
    assert "127.0.0.1:3307/orders" in done.stdout
    assert SECRET not in done.stdout + done.stderr
    assert ".run/orders.env" in done.stdout + done.stderr
    # The environment wins over the file.
    done = cli("config", cwd=tmp_path, ORDERS_CACHE_PREFIX="mine")
    assert "ORDERS_CACHE_PREFIX=mine" in done.stdout


@pytest.mark.parametrize("command", ["seed", "recount", "migrate"])
def test_a_wrong_database_is_one_clear_line_naming_the_target(command: str, tmp_path: Path) -> None:
    url = "mysql://nobody:" + SECRET + "@127.0.0.1:3306/orders_missing_i23"
    done = cli(
        command,
        cwd=tmp_path,
        ORDERS_DATABASE_URL=url,
        ORDERS_REDIS_URL=SHARED_REDIS,
        ORDERS_DATABASE_WAIT_TIMEOUT="1",
    )
    line = _one_clear_line(done)
    assert "127.0.0.1:3306/orders_missing_i23" in line
    assert SECRET not in done.stdout + done.stderr


def test_seed_says_what_it_targets_and_refuses_orders_it_was_not_told_to_add_to(
    seeded_database_url: str, tmp_path: Path
) -> None:
    env = {"ORDERS_DATABASE_URL": seeded_database_url, "ORDERS_REDIS_URL": SHARED_REDIS}
    done = cli("seed", "--orders", "5", cwd=tmp_path, **env)
    line = _one_clear_line(done)
    assert "--yes" in line
    assert seeded_database_url.removeprefix(SHARED_MYSQL) in done.stderr  # the target, named
    done = cli("seed", "--orders", "0", "--yes", cwd=tmp_path, **env)
    assert done.returncode == 0, done.stderr
    assert "seeding" in done.stderr
    assert seeded_database_url.rsplit("/", 1)[1] in done.stderr


def test_run_all_beside_a_running_server_is_one_clear_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = cli(
            "run-all",
            cwd=tmp_path,
            ORDERS_HOST="127.0.0.1",
            ORDERS_PORT=str(port),
            ORDERS_DATABASE_URL=f"{SHARED_MYSQL}/orders_missing_i23",
        )
    line = _one_clear_line(done)
    assert f"127.0.0.1:{port}" in line
    assert "in use" in line
