"""`orders-service migrate` started before MySQL: it waits with backoff, then migrates.

In Kubernetes the migrate init containers start beside a MySQL that may still be initialising, or
whose Service name does not resolve yet. Before the fix the command gave up after 60 s of fixed
1 s retries, and the chart's mysqladmin wait gave up at once on an unknown host.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.faults.conftest import _cli
from tests.support.fixtures import ThrowawayServers
from tests.support.servers import free_port

pytestmark = [pytest.mark.faults]


def _env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERS_")}
    return {**env, "ORDERS_DATABASE_URL": url, "ORDERS_LOG_FORMAT": "json", **extra}


def test_migrate_started_before_mariadb_waits_and_succeeds(throwaway: ThrowawayServers) -> None:
    server = throwaway.mariadb(binlog=False, start=False)
    migrate = subprocess.Popen(
        [_cli(), "migrate"],
        env=_env(server.database_url("orders_late"), ORDERS_DATABASE_WAIT_TIMEOUT="120"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert migrate.stdout is not None
        # Wait on the event, not a sleep: the first refused attempt is logged, then MySQL starts.
        seen: list[str] = []
        for line in migrate.stdout:
            seen.append(line)
            if "mysql not ready; retrying" in line:
                break
        assert any("2003" in line for line in seen), seen
        server.start()
        rest, _ = migrate.communicate(timeout=120)
    finally:
        if migrate.poll() is None:
            migrate.kill()
            migrate.wait()
    output = "".join(seen) + rest
    assert migrate.returncode == 0, output
    assert "migrations applied" in output
    assert server.cli("SHOW TABLES FROM orders_late LIKE 'orders'").strip() == "orders"


def test_migrate_gives_up_clearly_at_its_deadline_and_never_prints_the_password() -> None:
    port = free_port()  # nothing listens there
    began = time.monotonic()
    done = subprocess.run(
        [_cli(), "migrate"],
        env=_env(
            f"mysql://orders:s3cret-pw@127.0.0.1:{port}/orders",
            ORDERS_DATABASE_WAIT_TIMEOUT="3",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - began
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "did not answer within 3 s" in output, output
    assert "2003" in output
    assert "s3cret-pw" not in output
    assert 2.5 < elapsed < 45  # the deadline, not one attempt and not forever


def test_an_unknown_host_is_retried_not_fatal() -> None:
    """mysqladmin --wait stops at once on an unknown host (its error 2005); the migrate step
    keeps trying (PyMySQL reports it as 2003 with the resolver's message)."""
    done = subprocess.run(
        [_cli(), "migrate"],
        env=_env(
            "mysql://orders@orders-mysql-primary.invalid:3306/orders",
            ORDERS_DATABASE_WAIT_TIMEOUT="2",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "orders-mysql-primary.invalid" in output, output
    assert "Errno" in output  # the resolver's reason is kept: it says DNS, not "refused"
    assert output.count("mysql not ready; retrying") >= 2, output
