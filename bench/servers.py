"""The processes a benchmark run owns: its own MariaDB, and one gunicorn per system under test.

The bench never touches the shared MariaDB on :3306: it starts ``mariadbd`` on its own port and
data directory, so ``Com_select`` counts only the bench's queries and the 10M-order table survives
between runs. Every process is started in its own session and stopped by its own pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pymysql
import redis

from tests.support.processes import ServiceProcess

VENV_BIN = Path(sys.executable).parent


class BenchError(RuntimeError):
    """Something the harness needs is missing or broke; the message says what to do."""


def _wait(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]
                return
        time.sleep(0.1)
    raise BenchError(f"{what} did not come up within {timeout:.0f} s")


@dataclass
class MariaDB:
    """A private ``mariadbd`` (no binlog) in ``datadir``; reused if it is already running."""

    datadir: Path
    port: int
    buffer_pool: str = "2G"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.datadir.parent / "mysqld.sock"

    def connect(self, database: str | None = None) -> pymysql.connections.Connection:  # type: ignore[type-arg]
        return pymysql.connect(
            host="127.0.0.1", port=self.port, user="root", database=database, autocommit=True
        )

    def url(self, database: str, driver: str = "mysql") -> str:
        return f"{driver}://root@127.0.0.1:{self.port}/{database}"

    def _alive(self) -> bool:
        with contextlib.suppress(pymysql.MySQLError), self.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT @@datadir")
            row = cur.fetchone()
            return row is not None and Path(row[0]).resolve() == self.datadir.resolve()
        return False

    def start(self) -> None:
        if self._alive():
            return
        for tool in ("mariadbd", "mariadb-install-db"):
            if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
                raise BenchError(f"{tool} not found: the bench needs MariaDB installed")
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        if not (self.datadir / "mysql").is_dir():
            subprocess.run(
                [
                    "mariadb-install-db",
                    "--no-defaults",
                    f"--datadir={self.datadir}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ],
                check=True,
                capture_output=True,
            )
        as_root = ["--user=root"] if os.geteuid() == 0 else []
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        log = self.datadir.parent / "mariadb.log"
        self.proc = subprocess.Popen(
            [
                mariadbd,
                "--no-defaults",
                *as_root,
                f"--datadir={self.datadir}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.datadir.parent / 'mysqld.pid'}",
                f"--log-error={log}",
                f"--innodb-buffer-pool-size={self.buffer_pool}",
                "--innodb-flush-log-at-trx-commit=2",
                "--innodb-log-file-size=512M",
                "--skip-log-bin",
                "--max-connections=500",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait(f"MariaDB on :{self.port} (see {log})", self._alive, 60)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def execute(self, sql: str, database: str | None = None) -> list[tuple[object, ...]]:
        with self.connect(database) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())

    def com_select(self) -> int:
        """The server's SELECT counter; only the bench talks to this server, so deltas are ours."""
        rows = self.execute("SHOW GLOBAL STATUS LIKE 'Com_select'")
        return int(str(rows[0][1]))


def redis_clear(client: redis.Redis, prefix: str) -> int:
    """Delete the keys under one prefix (SCAN + UNLINK): the shared Redis is never flushed."""
    removed = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            removed += client.unlink(*batch)
            batch.clear()
    if batch:
        removed += client.unlink(*batch)
    return removed


@dataclass
class Gunicorn:
    """One system under test: a gunicorn master on ``port`` and its workers."""

    name: str
    port: int
    argv: list[str]
    env: Mapping[str, str]
    log: Path
    process: ServiceProcess | None = None  # the suite's launcher (tests/support/processes.py)
    extra: dict[str, str] = field(default_factory=dict)
    # Sent with every measured request (a bearer token when the system has auth on).
    headers: dict[str, str] = field(default_factory=dict)
    # where gunicorn runs: ``python -m gunicorn`` puts the cwd first on sys.path, so a revision
    # checked out elsewhere (bench-compare) must run from its own checkout
    cwd: Path = field(default_factory=lambda: Path(__file__).resolve().parent.parent)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str = "/orders/1", timeout: float = 60) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.process = ServiceProcess(self.argv, {**os.environ, **self.env}, self.log, cwd=self.cwd)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
            with urllib.request.urlopen(self.base_url + ready_path, timeout=2) as resp:  # noqa: S310
                return bool(resp.status == 200)

        try:
            _wait(f"{self.name} on :{self.port} (see {self.log})", ready, timeout)
        except BenchError:
            self.stop()
            raise
        # every worker must have booted, or the first measurement pays for imports
        _wait(f"{self.name} workers", lambda: len(self.workers()) >= self.expected_workers(), 30)

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.process.proc if self.process is not None else None

    def expected_workers(self) -> int:
        return int(self.extra.get("workers", "1"))

    def workers(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            return psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.process is None:
            return
        # SIGINT: gunicorn's quick shutdown; the service's drain delay is not what we measure
        self.process.stop(30, signum=signal.SIGINT)
        self.process = None


@contextlib.contextmanager
def running(*servers: Gunicorn) -> Iterator[None]:
    """Start the servers in order; stop all of them whatever happens."""
    started: list[Gunicorn] = []
    try:
        for server in servers:
            server.start()
            started.append(server)
        yield
    finally:
        for server in reversed(started):
            server.stop()
