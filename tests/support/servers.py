"""Throwaway MariaDB, Redis and "hung Redis" processes for tests that need to break a server.

Nothing here imports pytest: the fixtures in `tests.support.fixtures` wrap these classes, and a
benchmark or a one-off script can use them directly (`with MariaDBServer.create() as db: ...`).
Every server lives in its own temp dir on a spare loopback port; the shared servers on 3306 and
6379 are never touched. Each handle can stop, kill (SIGKILL), pause (SIGSTOP), resume (SIGCONT)
and start again on the same port and data dir, so fault tests can script an outage precisely.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pymysql

__all__ = [
    "BINLOG_OPTIONS",
    "Database",
    "HungRedis",
    "MariaDBServer",
    "ProcessServer",
    "RedisServer",
    "ServerStartError",
    "free_port",
    "redis_server_binary",
]

SHARED_PORTS = frozenset({3306, 6379})

# What the invalidator needs from the server (contract.md, "What MySQL and Redis must provide").
BINLOG_OPTIONS: tuple[str, ...] = (
    "--server-id=1",
    "--log-bin=mysql-bin",
    "--binlog-format=ROW",
    "--binlog-row-image=FULL",
    "--binlog-row-metadata=FULL",
    "--log-bin-trust-function-creators=1",
)

# Start in ~1 s and stay small: tests hold little data and never need durability across an
# OS crash (a killed mariadbd still finds its writes in the page cache).
_FAST_OPTIONS: tuple[str, ...] = (
    "--skip-name-resolve",
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-file-size=16M",
    "--innodb-log-buffer-size=4M",
    "--innodb-flush-log-at-trx-commit=2",
    "--innodb-doublewrite=0",
    "--innodb-use-native-aio=0",
    "--performance-schema=OFF",
    "--max-connections=300",
    "--key-buffer-size=1M",
)

_INSTALL_HINT = (
    "install the server packages (on Debian: `apt-get install mariadb-server redis-server`); "
    "the machines this project runs on have them"
)


class ServerStartError(RuntimeError):
    """A throwaway server did not become ready; the message carries the tail of its log."""


def free_port() -> int:
    """A loopback port nobody listens on right now (never one of the shared servers' ports)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in SHARED_PORTS:
            return port


def require_tool(binary: str) -> str:
    """The path of ``binary`` (PATH, then the sbin directories); missing: fails, never skips."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if path is None:
        raise ServerStartError(f"`{binary}` is not on PATH: {_INSTALL_HINT}")
    return path


def redis_server_binary() -> str:
    """The server binary of every throwaway Redis: `ORDERS_TEST_REDIS_SERVER` (a path or a name on
    PATH; the Valkey tier of `make test` sets valkey-server's), else the machine's redis-server.
    One place, so the Sentinels and clusters of the Valkey tier are Valkey too."""
    configured = os.environ.get("ORDERS_TEST_REDIS_SERVER", "").strip() or "redis-server"
    if os.sep not in configured:
        return require_tool(configured)
    if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
        raise ServerStartError(f"ORDERS_TEST_REDIS_SERVER={configured} is not an executable file")
    return configured


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# Every process started here, so an interrupted session still reaps them.
_LIVE: set[ProcessServer] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _reap_all() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        with contextlib.suppress(Exception):
            server.close()


class ProcessServer:
    """One child process on a fixed port, with the lifecycle verbs fault tests need.

    Subclasses say how to build the command line and how to tell the server is ready.
    `close()` kills the process and deletes the work dir; it runs at fixture teardown and,
    as a last resort, at interpreter exit.
    """

    name = "server"
    start_timeout = 30.0

    def __init__(self, workdir: Path, port: int, *, owns_workdir: bool) -> None:
        if port in SHARED_PORTS:
            raise ValueError(f"port {port} belongs to a shared server; use free_port()")
        self.workdir = workdir
        self.port = port
        self.log_path = workdir / f"{self.name}.log"
        self.start_seconds: float | None = None
        self._owns_workdir = owns_workdir
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._closed = False

    # ---- to be provided by subclasses -------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def is_ready(self) -> bool:
        raise NotImplementedError

    # ---- lifecycle ----------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the process exists (a paused process is still running)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused and self.running

    def start(self, timeout: float | None = None) -> Self:
        """Start on the same port and work dir; returns once the server answers."""
        if self._closed:
            raise RuntimeError(f"{self.name} on :{self.port} was closed")
        if self.running:
            return self
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # a Ctrl-C aimed at pytest must not hit the servers first
            )
        self._paused = False
        with _LIVE_LOCK:
            _LIVE.add(self)
        deadline = began + (timeout or self.start_timeout)
        while True:
            if self._proc.poll() is not None:
                raise ServerStartError(
                    f"{self.name} on :{self.port} exited with {self._proc.returncode} while "
                    f"starting; log {self.log_path}:\n{_tail(self.log_path)}"
                )
            if self.is_ready():
                break
            if time.monotonic() > deadline:
                self.kill()
                raise ServerStartError(
                    f"{self.name} on :{self.port} not ready after {timeout or self.start_timeout}"
                    f" s; log {self.log_path}:\n{_tail(self.log_path)}"
                )
            time.sleep(0.02)
        self.start_seconds = time.monotonic() - began
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Graceful stop (SIGTERM, SIGKILL after `timeout`); a paused server is resumed first."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        if self._paused:
            self.resume()
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: the crash case (no shutdown work, open connections reset)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait()
        self._paused = False

    def pause(self) -> None:
        """SIGSTOP: the server keeps its port and sockets but answers nothing."""
        if not self.running or self._proc is None:
            raise RuntimeError(f"{self.name} on :{self.port} is not running")
        os.kill(self._proc.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGCONT)
        self._paused = False

    def restart(self, timeout: float | None = None) -> Self:
        """Graceful stop, then start on the same port and data."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Kill the process and delete the work dir (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGCONT)
            self._proc.kill()
            self._proc.wait()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"<{type(self).__name__} :{self.port} {state} {self.workdir}>"


def _tcp_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# MariaDB
# --------------------------------------------------------------------------------------------

_TEMPLATE_LOCK = threading.Lock()
_TEMPLATES: dict[bool, Path] = {}


def _template_datadir(*, as_root: bool) -> Path:
    """An initialised, never-started data dir, made once per process and copied per server.

    `mariadb-install-db` costs ~2-4 s; copying its result costs ~0.1 s, so fault tests can
    afford a private server each.
    """
    with _TEMPLATE_LOCK:
        cached = _TEMPLATES.get(as_root)
        if cached is not None and cached.exists():
            return cached
        root = Path(tempfile.mkdtemp(prefix="mariadb-template-"))
        atexit.register(shutil.rmtree, root, True)
        datadir = root / "data"
        # A tmpdir of its own: bootstraps running at once (xdist workers) in the shared /tmp
        # collide on their temporary tables ("Unknown table 'mysql.tmp_proxies_priv'").
        tmpdir = root / "tmp"
        tmpdir.mkdir()
        argv = [
            require_tool("mariadb-install-db"),
            "--no-defaults",
            f"--datadir={datadir}",
            f"--tmpdir={tmpdir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            "--innodb-log-file-size=16M",
            "--innodb-buffer-pool-size=32M",
        ]
        if as_root:
            argv.append("--user=root")
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            raise ServerStartError(f"mariadb-install-db failed:\n{done.stdout}\n{done.stderr}")
        _TEMPLATES[as_root] = datadir
        return datadir


@dataclass(frozen=True)
class Database:
    """A database on a throwaway server, with the URL the service's settings take."""

    server: MariaDBServer
    name: str

    @property
    def url(self) -> str:
        return self.server.database_url(self.name)

    def connect(self, **kwargs: Any) -> pymysql.connections.Connection[Any]:
        return self.server.connect(self.name, **kwargs)

    def execute(self, *statements: str) -> None:
        """Run statements in autocommit mode (set-up code; use connect() for transactions)."""
        with self.connect() as conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)

    def cli(self, sql: str) -> str:
        """Run SQL through the `mariadb` command-line client, as an admin would."""
        return self.server.cli(sql, database=self.name)


class MariaDBServer(ProcessServer):
    """A private `mariadbd`: root with an empty password, TCP on 127.0.0.1:port only.

    With `binlog=True` (the default) it runs with the settings the invalidator requires
    (`BINLOG_OPTIONS`).
    """

    name = "mariadbd"
    start_timeout = 60.0

    def __init__(
        self,
        workdir: Path,
        port: int,
        *,
        owns_workdir: bool,
        binlog: bool = True,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(workdir, port, owns_workdir=owns_workdir)
        self.binlog = binlog
        self.extra_args = tuple(extra_args)
        self.datadir = workdir / "data"
        self.socket_path = workdir / "mysqld.sock"
        self.install_seconds: float | None = None

    @classmethod
    def create(
        cls,
        *,
        port: int | None = None,
        binlog: bool = True,
        extra_args: Sequence[str] = (),
        start: bool = True,
    ) -> MariaDBServer:
        """A fresh server in a new temp dir (data copied from a per-process template)."""
        as_root = os.geteuid() == 0
        began = time.monotonic()
        template = _template_datadir(as_root=as_root)
        workdir = Path(tempfile.mkdtemp(prefix="mariadb-"))
        try:
            shutil.copytree(template, workdir / "data", symlinks=True)
            server = cls(
                workdir,
                port or free_port(),
                owns_workdir=True,
                binlog=binlog,
                extra_args=extra_args,
            )
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        server.install_seconds = time.monotonic() - began
        if start:
            try:
                server.start()
            except BaseException:
                server.close()
                raise
        return server

    def command(self) -> list[str]:
        argv = [
            require_tool("mariadbd"),
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.socket_path}",
            f"--pid-file={self.workdir / 'mysqld.pid'}",
            f"--log-error={self.log_path}",
            f"--tmpdir={self.workdir}",
            *_FAST_OPTIONS,
        ]
        if os.geteuid() == 0:
            argv.append("--user=root")  # mariadbd refuses to run as root otherwise
        argv.extend(BINLOG_OPTIONS if self.binlog else ("--skip-log-bin",))
        argv.extend(self.extra_args)
        return argv

    def is_ready(self) -> bool:
        if not _tcp_accepts(self.port):
            return False
        try:
            conn = self.connect(connect_timeout=1, read_timeout=2)
        except pymysql.MySQLError:
            return False
        conn.close()
        return True

    # ---- addresses and clients ---------------------------------------------------------------
    @property
    def url(self) -> str:
        """`mysql://root@127.0.0.1:N/` (no database); see database_url()."""
        return self.database_url("")

    def database_url(self, name: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{name}"

    def connection_settings(self) -> dict[str, Any]:
        """Keyword arguments for pymysql.connect / pymysqlreplication."""
        return {"host": "127.0.0.1", "port": self.port, "user": "root", "password": ""}

    def connect(self, database: str | None = None, **kwargs: Any) -> Any:
        """A PyMySQL connection (autocommit on unless overridden; timeouts always set)."""
        options: dict[str, Any] = {
            **self.connection_settings(),
            "autocommit": True,
            "connect_timeout": 5,
            "read_timeout": 30,
            "write_timeout": 30,
            "charset": "utf8mb4",
        }
        if database:
            options["database"] = database
        options.update(kwargs)
        return pymysql.connect(**options)

    def cli(self, sql: str, *, database: str | None = None, timeout: float = 30.0) -> str:
        """Run SQL with the `mariadb` command-line client over TCP; returns its stdout."""
        argv = [
            require_tool("mariadb"),
            "--no-defaults",
            "--protocol=tcp",
            "-h127.0.0.1",
            f"-P{self.port}",
            "-uroot",
            "--batch",
            "--skip-column-names",
        ]
        if database:
            argv.append(database)
        done = subprocess.run(
            argv, input=sql, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"mariadb client failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def create_database(self, name: str | None = None) -> Database:
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        return Database(self, name)

    def drop_database(self, name: str) -> None:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(ProcessServer):
    """A private `redis-server` with no persistence (`--save ''`), on 127.0.0.1:port."""

    name = "redis-server"
    start_timeout = 15.0

    def __init__(
        self, workdir: Path, port: int, *, owns_workdir: bool, extra_args: Sequence[str] = ()
    ) -> None:
        super().__init__(workdir, port, owns_workdir=owns_workdir)
        self.extra_args = tuple(extra_args)

    @classmethod
    def create(
        cls, *, port: int | None = None, extra_args: Sequence[str] = (), start: bool = True
    ) -> RedisServer:
        workdir = Path(tempfile.mkdtemp(prefix="redis-"))
        server = cls(workdir, port or free_port(), owns_workdir=True, extra_args=extra_args)
        if start:
            try:
                server.start()
            except BaseException:
                server.close()
                raise
        return server

    def command(self) -> list[str]:
        return [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
            *self.extra_args,
        ]

    def is_ready(self) -> bool:
        return _redis_ping(self.port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


# A listener that completes TCP handshakes and then never reads or writes: what a Redis that
# is wedged (or a black-holed proxy) looks like to a client. It holds every connection open.
_HUNG_LISTENER = textwrap.dedent(
    """
    import socket, sys
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(sys.argv[1])))
    srv.listen(1024)
    held = []
    while True:
        conn, _ = srv.accept()
        held.append(conn)
    """
)


class HungRedis(ProcessServer):
    """Accepts connections on 127.0.0.1:port and never answers (a hung Redis)."""

    name = "hung-redis"
    start_timeout = 10.0

    @classmethod
    def create(cls, *, port: int | None = None, start: bool = True) -> HungRedis:
        workdir = Path(tempfile.mkdtemp(prefix="hung-redis-"))
        server = cls(workdir, port or free_port(), owns_workdir=True)
        if start:
            try:
                server.start()
            except BaseException:
                server.close()
                raise
        return server

    def command(self) -> list[str]:
        return [sys.executable, "-c", _HUNG_LISTENER, str(self.port)]

    def is_ready(self) -> bool:
        return _tcp_accepts(self.port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"
