"""`make run` as the Quick start uses it: its own MariaDB (root with a password), the API on
127.0.0.1 only, the inspector and the invalidator beside it, `/status` on the admin port, the
environment the CLI reads in ``.run/orders.env``; Ctrl-C stops it all.

Everything on spare ports and in a private RUN_DIR, with a small seed, so it runs in seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.support.processes import ORDERS_SERVICE, http_ok
from tests.support.servers import free_port
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_make_run_serves_on_loopback_with_inspector_status_and_env_file(tmp_path: Path) -> None:
    if shutil.which("mariadbd") is None:
        pytest.fail("mariadbd is not installed (the MariaDB server package)")
    ports = {name: free_port() for name in ("api", "admin", "mysql", "inval", "insp")}
    run_dir = tmp_path / ".run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORDERS_", "MAKE"))}
    env.update(
        ORDERS_PORT=str(ports["api"]),
        ORDERS_INVALIDATOR_METRICS_PORT=str(ports["inval"]),
        ORDERS_INSPECTOR_METRICS_PORT=str(ports["insp"]),
        ORDERS_CACHE_PREFIX=f"orders-makerun-{os.getpid()}",
        ORDERS_WORKERS="1",
    )
    argv = [
        "make",
        "--no-print-directory",
        "run",
        f"RUN_DIR={run_dir}",
        f"DEV_MYSQL_PORT={ports['mysql']}",
        f"DEV_ADMIN_PORT={ports['admin']}",
        "SEED_ORDERS=200",
    ]
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        make = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    admin = f"http://127.0.0.1:{ports['admin']}"
    try:

        def api_ready() -> bool:
            assert make.poll() is None, log.read_text(errors="replace")[-3000:]
            return http_ok(f"{admin}/readyz")

        wait_for(api_ready, 180, "make run's API")
        wait_for(lambda: http_ok(f"http://127.0.0.1:{ports['insp']}/healthz"), 60, "inspector")
        assert requests.get(f"http://127.0.0.1:{ports['api']}/orders/2", timeout=5).ok
        page = requests.get(f"{admin}/status", timeout=5)
        assert page.ok
        assert "not answering" not in page.text, page.text  # invalidator and inspector both read
        # Loopback only: 127.0.0.1 (0100007F), never 0.0.0.0 or ::.
        for port in (ports["api"], ports["admin"], ports["mysql"]):
            assert _listening(port) == {"0100007F"}, (port, _listening(port))
        # MariaDB's root needs a password: none over TCP is refused.
        refused = subprocess.run(
            ["mariadb", "-h127.0.0.1", f"-P{ports['mysql']}", "-uroot", "-e", "SELECT 1"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        assert refused.returncode != 0
        assert "Access denied" in refused.stderr
        # The CLI, run from the checkout, finds this stack through .run/orders.env.
        shown = subprocess.run(
            [str(ORDERS_SERVICE), "config"],
            cwd=tmp_path,
            env={k: v for k, v in env.items() if not k.startswith("ORDERS_")},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        assert f"127.0.0.1:{ports['mysql']}/orders" in shown
        assert f"ORDERS_CACHE_PREFIX={env['ORDERS_CACHE_PREFIX']}" in shown
        assert (run_dir / "orders.env").stat().st_mode & 0o077 == 0
        began = time.monotonic()
        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C in the terminal
        make.wait(60)
        stopped = time.monotonic() - began
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait(10)
        subprocess.run(
            ["hack/dev-mysql.sh", "down"],
            cwd=ROOT,
            env={**env, "RUN_DIR": str(run_dir), "DEV_MYSQL_PORT": str(ports["mysql"])},
            check=False,
            timeout=60,
        )
    output = log.read_text(errors="replace")
    assert "SIGKILL" not in output
    assert "Traceback" not in output, output[-3000:]
    assert stopped < 15, f"make run took {stopped:.1f} s to stop (MariaDB included)"
    print(f"make run stopped {stopped:.1f} s after Ctrl-C (MariaDB included)")
