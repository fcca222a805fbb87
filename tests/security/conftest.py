"""The real ``orders-service`` processes (gunicorn, the invalidator, one-shot commands) for the
security tests, with every byte they print captured so a test can grep all of it.

``launch(args, env)`` starts a command in its own process group with stdout and stderr in one
file; teardown kills the group, also when the test fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.support.processes import ORDERS_SERVICE, ServiceProcess, clean_env, orders_service
from tests.support.servers import free_port


def base_env(**overrides: str) -> dict[str, str]:
    """The machine's environment without ORDERS_*/OTEL_* variables, plus a small server."""
    env = clean_env()
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


class Launched(ServiceProcess):
    """One ``orders-service`` command (the suite's launcher); ``output()`` is everything it
    printed so far, ``stop()`` signals the whole group and returns that output."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        super().__init__([str(ORDERS_SERVICE), *args], env, log_path)

    @property
    def port(self) -> int:
        return int(self.env["ORDERS_PORT"])

    def url(self, path: str, port: int | None = None) -> str:
        return f"http://127.0.0.1:{port or self.port}{path}"

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        self.wait_until(condition, what, timeout)

    def wait_http(self, port: int | None = None, path: str = "/healthz") -> None:
        def answers() -> bool:
            with contextlib.suppress(requests.RequestException):
                requests.get(self.url(path, port), timeout=2)
                return True
            return False

        self.wait_until(answers, f"HTTP on :{port or self.port}")

    def stop(self, timeout: float = 30, *, group: bool = True) -> str:  # type: ignore[override]
        """SIGTERM to the group, SIGKILL after ``timeout``; returns the whole output."""
        super().stop(timeout, group=group)
        return self.output()


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
    done = orders_service(*args, env=env, timeout=timeout, check=False)
    return done.stdout + done.stderr
