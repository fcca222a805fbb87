"""The project's own commands as child processes: one launcher and one one-shot runner for every
test tier and for the bench.

Nothing here imports pytest (the bench uses it too); a failure is an ``AssertionError`` carrying
the tail of what the process printed, so a test fails with the reason and never skips. A
long-running command lives in its own session (gunicorn forks workers: a signal to the group
reaches every worker) with all its output in one log file; whatever a session started is killed at
interpreter exit as a last resort.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import requests

from tests.support.servers import free_port  # the port a launched service listens on

__all__ = [
    "ORDERS_SERVICE",
    "CommandFailed",
    "Process",
    "ServiceProcess",
    "clean_env",
    "free_port",
    "http_ok",
    "orders_cli",
    "orders_service",
    "service_env",
    "start_inspector",
    "start_invalidator",
    "start_service",
]

ORDERS_SERVICE = Path(sys.executable).parent / "orders-service"
_INSTALL_HINT = "run `make install` first"


class CommandFailed(AssertionError):
    """A command exited with an error, or a process did not become ready: the tail of its output."""


def clean_env(**overrides: str) -> dict[str, str]:
    """The machine's environment without ORDERS_*/OTEL_* variables, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORDERS_", "OTEL_"))}
    env.update(overrides)
    return env


def http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _binary(path: Path) -> str:
    if not path.exists():
        raise CommandFailed(f"{path} is missing: {_INSTALL_HINT}")
    return str(path)


def orders_service(
    *args: str,
    env: Mapping[str, str],
    timeout: float = 120,
    check: bool = True,
    binary: Path = ORDERS_SERVICE,
) -> subprocess.CompletedProcess[str]:
    """One short ``orders-service`` command (migrate, seed, stats ...); with ``check`` a non-zero
    exit raises ``CommandFailed`` with its stdout and stderr."""
    done = subprocess.run(
        [_binary(binary), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        raise CommandFailed(
            f"orders-service {' '.join(args)} failed ({done.returncode}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
    return done


_LIVE: set[ServiceProcess] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _reap() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for process in live:
        with contextlib.suppress(Exception):
            process.kill()


class ServiceProcess:
    """A long-running command (``orders-service serve``, Prometheus ...) in its own session, its
    stdout and stderr in ``log_path``; started at once unless ``start=False``."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        start: bool = True,
        cwd: Path | None = None,
    ) -> None:
        self.argv = [str(arg) for arg in argv]
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.cwd,
            )
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        assert self.proc is not None, f"{self.argv} was never started"
        return self.proc

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def alive(self) -> bool:
        return self.running

    def output(self) -> str:
        """Everything the process printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"

    log_text = output

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def signal_group(self, signum: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)  # our own child's group: it leads it

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        """Poll ``condition``; fail with the log's tail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while not condition():
            if not self.running:
                code = self.proc.returncode if self.proc else None
                raise CommandFailed(
                    f"{what}: {self.argv[-1]} exited with {code}\n{self.output()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise CommandFailed(
                    f"timed out after {timeout} s waiting for {what}\n{self.output()[-3000:]}"
                )
            time.sleep(0.05)

    def wait_ready(self, url: str, what: str, timeout: float = 60) -> None:
        """Until ``url`` answers 200; stops the process when it never does."""
        try:
            self.wait_until(lambda: http_ok(url), what, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(
        self, timeout: float = 20.0, *, group: bool = False, signum: int = signal.SIGTERM
    ) -> int | None:
        """``signum`` to the process (to its whole group with ``group``), SIGKILL to the group
        after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if group:
                self.signal_group(signum)
            else:
                self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL to the process and its children; waits for it."""
        if self.proc is None:
            return
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        with _LIVE_LOCK:
            _LIVE.discard(self)


# ---------------------------------------------------------------------------------------------
# The service's three processes on the machine's loopback
# ---------------------------------------------------------------------------------------------
Process = ServiceProcess  # the name the observability and auth tests know it by


def service_env(
    *,
    database_url: str,
    redis_url: str,
    prefix: str,
    port: int,
    metrics_dir: Path,
    workers: int = 2,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment `orders-service` runs with: ORDERS_* only, plus OTEL_* when given."""
    env = clean_env()
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        {
            "ORDERS_DATABASE_URL": database_url,
            "ORDERS_REDIS_URL": redis_url,
            "ORDERS_CACHE_PREFIX": prefix,
            "ORDERS_HOST": "127.0.0.1",
            "ORDERS_PORT": str(port),
            "ORDERS_WORKERS": str(workers),
            "ORDERS_THREADS": "2",
            "ORDERS_METRICS_DIR": str(metrics_dir),
            "ORDERS_LOG_FORMAT": "json",
            "ORDERS_SHUTDOWN_DELAY": "0",
            "ORDERS_GRACEFUL_TIMEOUT": "5",
        }
    )
    env.update(extra or {})
    return env


def orders_cli(env: Mapping[str, str], *args: str, timeout: float = 120) -> str:
    return orders_service(*args, env=env, timeout=timeout).stdout


def _start(
    command: str, env: Mapping[str, str], log_path: Path, url: str, timeout: float
) -> Process:
    """``orders-service <command>``, returned once ``url`` answers."""
    process = Process([str(ORDERS_SERVICE), command], env, log_path)
    process.wait_ready(url, f"orders-service {command}", timeout)
    return process


def start_service(env: Mapping[str, str], log_path: Path, timeout: float = 60) -> Process:
    """`orders-service serve` (gunicorn), returned once /healthz answers."""
    url = f"http://127.0.0.1:{env['ORDERS_PORT']}/healthz"
    return _start("serve", env, log_path, url, timeout)


def start_invalidator(env: Mapping[str, str], log_path: Path, timeout: float = 60) -> Process:
    url = f"http://127.0.0.1:{env['ORDERS_INVALIDATOR_METRICS_PORT']}/healthz"
    return _start("invalidate", env, log_path, url, timeout)


def start_inspector(env: Mapping[str, str], log_path: Path, timeout: float = 60) -> Process:
    """`orders-service inspect`, returned once its /metrics answers."""
    url = f"http://127.0.0.1:{env['ORDERS_INSPECTOR_METRICS_PORT']}/metrics"
    return _start("inspect", env, log_path, url, timeout)
