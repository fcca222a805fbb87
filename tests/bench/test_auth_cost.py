"""`make bench-auth` in miniature, so the microbenchmark cannot rot: it runs with a few
iterations and writes complete results. Speed is not asserted; `make bench-auth` measures it."""

from __future__ import annotations

import json
from pathlib import Path

from bench import auth_cost


def test_the_auth_microbenchmark_reports_every_figure(tmp_path: Path) -> None:
    auth_cost.main(["--iterations", "5", "--rounds", "1", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "auth.json").read_text())
    assert set(result["verifier"]) == {"RS256", "ES256", "EdDSA"}
    for costs in result["verifier"].values():
        assert costs["first_us"] > 0
        assert costs["cached_us"] > 0
    assert {"off_us", "on_cached_us", "on_first_rs256_us", "added_per_hit_us"} <= set(
        result["request"]
    )
    assert "Added to every request" in (tmp_path / "auth.md").read_text()
