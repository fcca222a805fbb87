"""Without auth the service cannot know that a page is not personal (a proxy in front may be
authenticating users, docs/security.md "an ingress that already authenticates"): pages are
``Cache-Control: private`` on both request paths, so shared caches never keep them
(RFC 9111 5.2.2.7). Auth on adds ``Vary: Authorization`` (tests/integration/test_auth_api.py)."""

from __future__ import annotations

import dataclasses

import pytest

from service import close_app, create_app
from service.config import Settings
from service.wiring import api_services
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def test_pages_are_private_without_auth_on_the_flask_path_and_the_fast_path(
    settings: Settings,
) -> None:
    app = create_app(dataclasses.replace(settings, cache_max_lag=3600.0))
    try:
        near = api_services(app).near
        assert near is not None
        wait_for(near.live, 10, "the near cache's invalidation feed")
        client = app.test_client()
        first = client.get("/orders/3")  # a miss: Flask answers
        assert first.headers["Cache-Control"].startswith("private,")
        for _ in range(2):
            hit = client.get("/orders/3")  # answered in front of Flask (service.api.hits)
        assert hit.headers["X-Cache"] == "HIT"
        assert hit.headers["Cache-Control"].startswith("private,")
        assert "public" not in first.headers["Cache-Control"] + hit.headers["Cache-Control"]
    finally:
        close_app(app)
