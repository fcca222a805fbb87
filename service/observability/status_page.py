"""``GET /status``: a live page of the cache's health, server-rendered with inline SVG charts.

No front-end build, no script: the page refreshes itself (``<meta http-equiv="refresh">``) and
each view takes one sample (``status.sample``) into this worker's history, so the charts cover the
minutes someone has been watching. Each worker keeps its own history (a view lands on one worker),
so consecutive views may show a few points more or less. Every figure is also in the markup as
``data-value`` (its raw number), which the browser test compares with ``/metrics``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from html import escape

from flask import Flask, Response

from service.observability import status
from service.observability.status import Figures, History, Rates, replica_text

REFRESH_SECONDS = 5
_WIDTH, _HEIGHT = 320, 70

_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 .2em}p.sub{color:#666;margin:0 0 1em}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.tile{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:200px}
.tile h2{font-size:12px;text-transform:uppercase;color:#666;margin:0 0 4px;font-weight:600}
.big{font-size:26px;font-weight:600}.bad{color:#b00020}.ok{color:#137333}
svg{display:block;margin-top:6px}table{border-collapse:collapse}
td,th{padding:2px 8px;text-align:left}
"""


def _value(key: str, value: float | None, shown: str, css: str = "big") -> str:
    raw = "" if value is None else repr(float(value))
    return f'<span class="{css}" id="{key}" data-value="{raw}">{escape(shown)}</span>'


def _fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


def chart(points: Sequence[tuple[float, float]], label: str, ceiling: float | None = None) -> str:
    """A line chart of ``points`` (time, value) as inline SVG, scaled to its own range."""
    if len(points) < 2:
        return (
            f'<svg width="{_WIDTH}" height="{_HEIGHT}" role="img" aria-label="{escape(label)}">'
            f'<text x="4" y="{_HEIGHT // 2}" fill="#999">waiting for samples with traffic</text>'
            "</svg>"
        )
    start, end = points[0][0], points[-1][0]
    top = ceiling if ceiling is not None else max(value for _, value in points) or 1.0
    span = (end - start) or 1.0
    coords = " ".join(
        f"{(at - start) / span * (_WIDTH - 8) + 4:.1f},"
        f"{_HEIGHT - 4 - min(value / top, 1.0) * (_HEIGHT - 16):.1f}"
        for at, value in points
    )
    minutes = span / 60
    return (
        f'<svg width="{_WIDTH}" height="{_HEIGHT}" role="img" aria-label="{escape(label)}">'
        f'<rect width="{_WIDTH}" height="{_HEIGHT}" fill="#f4f6fb"/>'
        f'<polyline fill="none" stroke="#1a73e8" stroke-width="2" points="{coords}"/>'
        f'<text x="4" y="11" font-size="10" fill="#666">max {top:,.2f}; last {minutes:.1f} min'
        "</text></svg>"
    )


def _series(history: History, pick: Callable[[Rates], float | None]) -> list[tuple[float, float]]:
    return [(at, value) for at, r in history.series() if (value := pick(r)) is not None]


def _breakers(figures: Figures) -> str:
    if not figures.breakers:
        return "<p>no breaker reported yet</p>"
    rows = []
    for dependency, states in sorted(figures.breakers.items()):
        cells = " ".join(
            f"<td>{escape(state)}: "
            + _value(f"breaker-{dependency}-{state}", count, f"{count:.0f}", "")
            + "</td>"
            for state, count in sorted(states.items())
        )
        rows.append(f"<tr><th>{escape(dependency)}</th>{cells}</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _replicas(figures: Figures) -> str:
    """Each replica's health and lag, and where the fills were read."""
    rows: list[Row] = [
        (f"fills from {source}", f"fills-{source}", count, f"{count:,.0f}")
        for source, count in sorted(figures.fills.items())
    ]
    rows += [
        (f"replica {name}", f"replica-{name}", seen.get("lag"), replica_text(seen))
        for name, seen in sorted(figures.replicas.items())
    ]
    return _table(rows, "")


Row = tuple[str, str, float | None, str]  # label, element id, raw value, shown text


def _table(rows: Sequence[Row], css: str = "") -> str:
    cells = "".join(
        f"<tr><th>{escape(label)}</th><td>{_value(key, value, shown, css)}</td></tr>"
        for label, key, value, shown in rows
    )
    return f"<table>{cells}</table>"


def _counts(figures: Figures) -> tuple[str, str, str]:
    """The totals, invalidation and inspector tables."""
    totals: list[Row] = [
        ("hits", "hits-total", figures.hits, f"{figures.hits:,.0f}"),
        ("misses", "misses-total", figures.misses, f"{figures.misses:,.0f}"),
        ("requests", "requests-total", figures.requests, f"{figures.requests:,.0f}"),
        ("MySQL queries", "db-queries-total", figures.db_queries, f"{figures.db_queries:,.0f}"),
        ("MySQL errors", "db-errors-total", figures.db_errors, f"{figures.db_errors:,.0f}"),
    ]
    age, lag, done = figures.checkpoint_age, figures.invalidation_lag, figures.invalidations
    gtid, changes = figures.gtid_positions, figures.primary_changes
    invalidation: list[Row] = [
        ("checkpoint age", "checkpoint-age", age, _fmt(age, " s", 2)),
        ("invalidation lag", "invalidation-lag", lag, _fmt(lag, " s", 2)),
        ("invalidations", "invalidations-total", done, _fmt(done, "", 0)),
        ("MySQL failover", "gtid-positions", gtid, status.gtid_resume(gtid)),
        ("primary changes followed", "primary-changes", changes, _fmt(changes, "", 0)),
    ]
    checks, seen = figures.inspector_checks, figures.inspector_mismatches
    confirmed = figures.inspector_inconsistencies
    inspector: list[Row] = [
        ("checks", "inspector-checks", checks, _fmt(checks, "", 0)),
        ("mismatches seen", "inspector-mismatches", seen, _fmt(seen, "", 0)),
    ]
    verdict = _table(
        [("confirmed", "inspector-inconsistencies", confirmed, _fmt(confirmed, "", 0))],
        "bad" if confirmed else "ok",
    )
    return _table(totals), _table(invalidation), _table(inspector) + verdict


def render(history: History) -> str:
    """The whole page from the history's latest sample and its rates."""
    figures = history.latest() or Figures(at=0.0)
    series = history.series()
    last = series[-1][1] if series else None
    hit = None if last is None or last.hit_ratio is None else last.hit_ratio * 100
    requests = None if last is None else last.requests
    misses = None if last is None else last.misses
    totals, invalidation, inspector = _counts(figures)
    near = figures.near_cache_entries
    tiles = [
        (
            "Hit rate",
            _value("hit-rate", hit, _fmt(hit, " %"))
            + chart(_series(history, lambda r: r.hit_ratio), "hit ratio", 1.0),
        ),
        (
            "Requests per second",
            _value("requests-rate", requests, _fmt(requests))
            + chart(_series(history, lambda r: r.requests), "requests per second"),
        ),
        (
            "Misses served by MySQL (/s)",
            _value("misses-rate", misses, _fmt(misses))
            + chart(_series(history, lambda r: r.misses), "misses per second"),
        ),
        ("Totals since start", totals),
        ("Invalidation", invalidation),
        ("Consistency (inspector)", inspector),
        ("Near cache (all workers)", _value("near-cache-entries", near, _fmt(near, " pages", 0))),
        ("Circuit breakers (workers in each state)", _breakers(figures)),
    ]
    if figures.replicas:
        tiles.append(("MySQL read replicas", _replicas(figures)))
    unreachable = "".join(
        f"<p class='bad'>not answering: {escape(url)}</p>" for url in figures.unreachable
    )
    body = "".join(f'<div class="tile"><h2>{escape(t)}</h2>{html}</div>' for t, html in tiles)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<link rel='icon' href='data:,'>"  # no /favicon.ico request per view
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        f"<title>orders: cache status</title><style>{_STYLE}</style></head><body>"
        "<h1>orders: cache status</h1>"
        f"<p class='sub'>From /metrics of this API and its invalidator and inspector; "
        f"refreshes every {REFRESH_SECONDS} s; {len(history.samples)} samples in this worker."
        f"</p>{unreachable}<div class='grid'>{body}</div></body></html>"
    )


def init_app(app: Flask, own_metrics: Callable[[], str], sources: Sequence[str]) -> None:
    """Register ``GET /status``: each view samples ``own_metrics()`` and ``sources``."""
    history = History()
    lock = threading.Lock()

    def status_view() -> Response:
        figures = status.sample(own_metrics(), sources)
        with lock:
            history.add(figures)
            page = render(history)
        return Response(
            page, content_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"}
        )

    app.add_url_rule("/status", "status", status_view, methods=["GET"])
