"""/status and `orders-service stats` show where fills were read and each replica's health and
lag, from the API's /metrics text (replica_metrics), as the page reads it."""

from __future__ import annotations

from service.observability import status
from service.observability.status_page import render

API = """\
# TYPE orders_cache_fills_total counter
orders_cache_fills_total{source="replica"} 40.0
orders_cache_fills_total{source="primary"} 2.0
# TYPE orders_db_replica_up gauge
orders_db_replica_up{replica="r1:3306"} 1.0
orders_db_replica_up{replica="r2:3306"} 0.0
# TYPE orders_db_replica_lag_seconds gauge
orders_db_replica_lag_seconds{replica="r1:3306"} 0.5
"""


def test_fills_by_source_and_each_replica_show_on_the_page_and_in_stats() -> None:
    figures = status.read(status.Figures(at=1.0), API)
    assert figures.fills == {"replica": 40.0, "primary": 2.0}
    assert figures.replicas == {"r1:3306": {"up": 1.0, "lag": 0.5}, "r2:3306": {"up": 0.0}}
    lines = "\n".join(status.lines(figures, None))
    assert "replica 40  primary 2" in lines
    assert "r1:3306   up  lag 0.50 s" in lines
    assert "r2:3306   down (the primary serves its reads)" in lines
    history = status.History()
    history.add(figures)
    page = render(history)
    assert "MySQL read replicas" in page
    assert "down (the primary serves its reads)" in page


def test_without_replicas_nothing_about_them_is_shown() -> None:
    figures = status.read(status.Figures(at=1.0), "")
    assert not any("replica" in line for line in status.lines(figures, None))
    history = status.History()
    history.add(figures)
    assert "MySQL read replicas" not in render(history)
