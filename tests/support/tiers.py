"""How the suite is split for `make test` (a pytest plugin, loaded by the root conftest).

- The unit tier runs first (``tests/unit``: pure logic, seconds), so a broken invariant shows
  before any server starts; a plain ``pytest`` also collects it first.
- The parallel tier runs everything else on pytest-xdist workers (``--dist loadgroup``). A module
  stays on one worker (its module- and session-scoped servers start once), the container tests
  share one worker (one image build), and the modules that assert on timing share one worker
  too, so no two of them ever run at once. The longest modules are handed out first.
- The serial tier (marker ``serial``) runs alone afterwards: tests whose assertions measure a CPU
  the other workers would take.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

# Assert on elapsed time or latency with bounds a 3x slower machine passes, but not two of them
# at once on two cores: one at a time, beside the other workers.
TIMING = frozenset(
    {
        "tests/faults/test_bounded_staleness.py",
        "tests/faults/test_invalidation.py",
        "tests/faults/test_outages.py",
        "tests/integration/test_auth_jwks_server.py",
        "tests/integration/test_ctrl_c.py",
        "tests/integration/test_make_run.py",
        "tests/integration/test_orders_api.py",
        "tests/observability/test_multiproc.py",
        "tests/security/test_slow_clients.py",
    }
)

# ~100 gunicorn worker boots with scrape times asserted under 100 ms: CPU-bound, runs alone.
SERIAL = frozenset({"tests/observability/test_recycle.py"})

# The Redis test tier: the modules that exercise what the cache asks of its Redis (scripts,
# functions, ACLs, eviction, pub/sub, races, topologies). `make test` runs them a second time
# against Valkey 9 (tests/support/valkey_tier.py); a new Redis-facing module is added here.
REDIS_TIER: tuple[str, ...] = (
    "tests/integration/test_cache_protocol.py",
    "tests/integration/test_cache_races.py",
    "tests/integration/test_invalidation.py",
    "tests/integration/test_invalidator_cases.py",
    "tests/integration/test_freshness.py",
    "tests/integration/test_eviction.py",
    "tests/integration/test_hit_fast_path.py",
    "tests/security/test_redis_roles.py",
    "tests/chart/test_chart_replication.py",
    "tests/faults/test_sentinel_failover.py",
    "tests/faults/test_sentinel_topology.py",
    "tests/faults/test_cluster_protocol.py",
    "tests/faults/test_cluster_stack.py",
)

# Seconds each took in the last measured run (--durations, setup included): handed out first so
# the tier does not end waiting for one long module started last.
LONG = {
    "tests/bench/test_smoke.py": 90,
    "tests/container/": 120,
    "tests/observability/test_stack.py": 60,
    "tests/integration/test_ctrl_c.py": 90,
    "tests/faults/": 40,
}


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def _group(module: str) -> str:
    if module in TIMING:
        return "timing"
    if module.startswith("tests/container/"):
        return "container"
    return module


def _weight(module: str) -> int:
    group = _group(module)
    if group == "timing":
        return sum(LONG.get(m, 30) for m in TIMING)
    return max((s for prefix, s in LONG.items() if module.startswith(prefix)), default=0)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "serial: measures CPU time or latency; runs alone after the parallel tier"
    )


# A wrapper: `serial` goes on before every other implementation runs (-m selects on it); the
# order is set after them.
@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Generator[None, None, None]:
    for item in items:
        if _module(item) in SERIAL:
            item.add_marker(pytest.mark.serial)
    yield
    if getattr(config.option, "loadgroup", False):  # an xdist worker of the parallel tier
        items.sort(key=lambda item: -_weight(_module(item)))
    else:
        items.sort(key=lambda item: not _module(item).startswith("tests/unit/"))


class _GroupScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with the groups above as scopes. (``xdist_group`` marks are no
    use here: xdist 3.8 suffixes ``item._nodeid``, which pytest 9.2's ``nodeid`` no longer
    reads, so every test would become a scope of its own.)"""

    def _split_scope(self, nodeid: str) -> str:
        return _group(nodeid.split("::", 1)[0])


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling | None:
    if config.getvalue("dist") != "loadgroup":
        return None
    return _GroupScheduling(config, log)
