"""/status and `orders-service stats` say what a MySQL promotion does to the cache: followed by
GTID (and how many were), or, with GTIDs off, a cleared cache. Read from the invalidator's
/metrics text, as the page reads it."""

from __future__ import annotations

from service.observability import status
from service.observability.status_page import render

INVALIDATOR = """\
# HELP orders_invalidator_gtid_positions 1 when positions carry the GTID state.
# TYPE orders_invalidator_gtid_positions gauge
orders_invalidator_gtid_positions {gtid}
# HELP orders_invalidator_primary_changes_total MySQL primaries changed and followed.
# TYPE orders_invalidator_primary_changes_total counter
orders_invalidator_primary_changes_total 2.0
"""


def test_the_status_page_and_stats_show_how_a_promotion_is_followed() -> None:
    figures = status.read(status.Figures(at=1.0), INVALIDATOR.format(gtid="1.0"))
    assert figures.gtid_positions == 1.0
    assert figures.primary_changes == 2.0
    history = status.History()
    history.add(figures)
    page = render(history)
    assert "follows by GTID" in page
    assert 'id="primary-changes"' in page or "primary-changes" in page
    assert any("follows by GTID" in line and " 2" in line for line in status.lines(figures, None))


def test_with_gtids_off_they_say_a_promotion_clears_the_cache() -> None:
    figures = status.read(status.Figures(at=1.0), INVALIDATOR.format(gtid="0.0"))
    assert "a promotion clears the cache" in "\n".join(status.lines(figures, None))
    assert status.gtid_resume(None) == "n/a"  # no invalidator answering
