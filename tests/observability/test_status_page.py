"""`/status` in a real headless Chromium: it loads, its numbers are /metrics' numbers, it
refreshes itself after traffic; a screenshot is kept. And `orders-service stats` prints the same.

Real gunicorn (admin port on), a real inspector beside it, Debian's chromium over CDP.
"""

from __future__ import annotations

import math
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from service.observability import status
from tests.observability.harness import (
    ORDERS_SERVICE,
    Process,
    http_ok,
    service_env,
)
from tests.support.browser import Browser
from tests.support.servers import free_port
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / ".run" / "test-artefacts" / "status-page.png"


@pytest.fixture(scope="module")
def stack(
    seeded_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    logs = tmp_path_factory.mktemp("status")
    inspector_port = free_port()
    env = service_env(
        database_url=seeded_database_url,
        redis_url="redis://127.0.0.1:6379/0",
        prefix=f"orders-status-{os.getpid()}",
        port=free_port(),
        metrics_dir=logs / "metrics",
        extra={
            "ORDERS_ADMIN_PORT": str(free_port()),
            "ORDERS_INSPECTOR_METRICS_PORT": str(inspector_port),
            "ORDERS_STATUS_SOURCES": f"http://127.0.0.1:{inspector_port}/metrics",
        },
    )
    inspector = Process([str(ORDERS_SERVICE), "inspect"], env, logs / "inspect.log")
    admin = f"http://127.0.0.1:{env['ORDERS_ADMIN_PORT']}"
    api_process = Process([str(ORDERS_SERVICE), "serve"], env, logs / "serve.log")
    try:
        wait_for(lambda: http_ok(f"{admin}/healthz"), 60, "the API")
        wait_for(lambda: http_ok(f"http://127.0.0.1:{inspector_port}/healthz"), 60, "inspector")
        yield {
            "admin": admin,
            "public": f"http://127.0.0.1:{env['ORDERS_PORT']}",
            "inspector": f"http://127.0.0.1:{inspector_port}",
            **env,
        }
    finally:
        api_process.stop()
        inspector.stop()


def _traffic(public: str, pages: range) -> None:
    with requests.Session() as session:
        for page in pages:
            assert session.get(f"{public}/orders/{page}", timeout=10).status_code == 200


def _steady_traffic(public: str, stop: threading.Event) -> None:
    with requests.Session() as session:
        while not stop.wait(0.05):
            for page in range(1, 4):
                session.get(f"{public}/orders/{page}", timeout=10)


def _dom_value(browser: Browser, key: str) -> float:
    """The figure's raw number; NaN while the page reloads (compares false, so waits go on)."""
    raw = browser.evaluate(f"document.getElementById({key!r})?.dataset.value")
    return float(raw) if raw else math.nan


def test_status_page_loads_matches_metrics_and_updates_after_traffic(
    stack: dict[str, str],
) -> None:
    _traffic(stack["public"], range(1, 6))  # misses
    _traffic(stack["public"], range(1, 6))  # hits
    browser = Browser()
    try:
        browser.open(f"{stack['admin']}/status")
        assert browser.evaluate("document.title") == "orders: cache status"
        assert browser.evaluate("document.querySelectorAll('svg').length") >= 3
        # No traffic since the page's sample: its totals are /metrics' totals.
        scraped = status.read(
            status.Figures(at=0), requests.get(f"{stack['admin']}/metrics", timeout=5).text
        )
        assert _dom_value(browser, "hits-total") == scraped.hits >= 5
        assert _dom_value(browser, "misses-total") == scraped.misses >= 5
        assert _dom_value(browser, "requests-total") == scraped.requests
        assert _dom_value(browser, "db-queries-total") == scraped.db_queries
        inspector = status.read(
            status.Figures(at=0), requests.get(f"{stack['inspector']}/metrics", timeout=5).text
        )
        assert inspector.inspector_checks is not None
        assert _dom_value(browser, "inspector-checks") <= inspector.inspector_checks
        assert _dom_value(browser, "inspector-inconsistencies") == 0

        before = _dom_value(browser, "requests-total")
        _traffic(stack["public"], range(1, 21))
        # The page refreshes itself (meta refresh): no navigation from here.
        wait_for(
            lambda: _dom_value(browser, "requests-total") >= before + 20, 30, "the page to refresh"
        )
        wait_for(
            lambda: browser.evaluate("document.getElementById('hit-rate').dataset.value") != "",
            30,
            "a hit rate from two samples",
        )
        assert 0 <= _dom_value(browser, "hit-rate") <= 100
        # Steady traffic until every chart has two points in the worker that answers.
        stop = threading.Event()
        load = threading.Thread(target=_steady_traffic, args=(stack["public"], stop))
        load.start()
        try:
            wait_for(
                lambda: browser.evaluate("document.querySelectorAll('polyline').length") == 3,
                60,
                "three charts with two points each",
            )
        finally:
            stop.set()
            load.join(30)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browser.screenshot(SCREENSHOT)
        print(f"status page screenshot: {SCREENSHOT}")
        assert SCREENSHOT.stat().st_size > 10_000
    finally:
        browser.close()


def test_status_answers_only_on_the_admin_port(stack: dict[str, str]) -> None:
    assert requests.get(f"{stack['public']}/status", timeout=5).status_code == 404
    page = requests.get(f"{stack['admin']}/status", timeout=5)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "<script" not in page.text  # no front-end build, no script


def test_stats_prints_the_same_figures_in_a_terminal(stack: dict[str, str]) -> None:
    done = subprocess.run(
        [str(ORDERS_SERVICE), "stats", "--interval", "0.5"],
        env=stack,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    scraped = status.read(
        status.Figures(at=0), requests.get(f"{stack['admin']}/metrics", timeout=5).text
    )
    assert f"hits {scraped.hits:,.0f}" in done.stdout
    assert "hit rate" in done.stdout
    assert "inspector" in done.stdout
