"""The real ``orders-service`` processes (gunicorn, the invalidator, one-shot commands) for the
security tests, with every byte they print captured so a test can grep all of it.

``launch(args, env)`` starts a command in its own process group with stdout and stderr in one
file; teardown kills the group, also when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.support.servers import free_port

CLI = Path(sys.executable).parent / "orders-service"


def base_env(**overrides: str) -> dict[str, str]:
    """The machine's environment without ORDERS_*/OTEL_* variables, plus a small server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORDERS_", "OTEL_"))}
    env.update(
        {
            "ORDERS_HOST": "127.0.0.1",
            "ORDERS_PORT": str(free_port()),
            "ORDERS_INVALIDATOR_METRICS_PORT": str(free_port()),
            "ORDERS_WORKERS": "1",
            "ORDERS_THREADS": "2",
            "ORDERS_SHUTDOWN_DELAY": "0",
            "ORDERS_GRACEFUL_TIMEOUT": "2",
            "ORDERS_LOG_FORMAT": "json",
            "ORDERS_LOG_LEVEL": "debug",
            # migrate and the invalidator retry a MySQL that is not up yet; a few attempts are
            # enough to drive every error path into the log.
            "ORDERS_DATABASE_WAIT_TIMEOUT": "3",
        }
    )
    env.update(overrides)
    return env


class Launched:
    """One ``orders-service`` command; ``output()`` is everything it printed so far."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        if not CLI.exists():
            pytest.fail(f"{CLI} is missing: run `make install` first")
        self.env = env
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(CLI), *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def port(self) -> int:
        return int(self.env["ORDERS_PORT"])

    def url(self, path: str, port: int | None = None) -> str:
        return f"http://127.0.0.1:{port or self.port}{path}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(
                    f"{what}: the process exited with {self.proc.returncode}\n"
                    f"{self.output()[-3000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"timed out after {timeout} s waiting for {what}\n{self.output()[-3000:]}"
                )
            time.sleep(0.05)

    def wait_http(self, port: int | None = None, path: str = "/healthz") -> None:
        def answers() -> bool:
            with contextlib.suppress(requests.RequestException):
                requests.get(self.url(path, port), timeout=2)
                return True
            return False

        self.wait_for(answers, f"HTTP on :{port or self.port}")

    def stop(self, timeout: float = 30) -> str:
        """SIGTERM to the group, SIGKILL after ``timeout``; returns the whole output."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.output()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Launched]]:
    made: list[Launched] = []

    def start(args: list[str], env: dict[str, str]) -> Launched:
        launched = Launched(args, env, tmp_path / f"{args[0]}-{len(made)}.log")
        made.append(launched)
        return launched

    yield start
    for launched in made:
        launched.kill()


def run_command(args: list[str], env: dict[str, str], timeout: float = 60) -> str:
    """A one-shot command; returns stdout and stderr together (whatever its exit code)."""
    done = subprocess.run(
        [str(CLI), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return done.stdout + done.stderr
