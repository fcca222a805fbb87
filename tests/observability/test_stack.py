"""The whole picture against real components: the service under gunicorn with two workers, the
invalidator, a real Prometheus scraping both, and an OTLP receiver collecting their traces.

One module-scoped run drives known traffic (hits, misses, 404s, a Redis outage, a MySQL outage
and a committed change the invalidator must apply); the tests then check what an operator would
look at: every dashboard query and every rule returns data, the hit-rate panel agrees with the
traffic, the exposition is lint-clean, spans form the expected tree across workers, and each
request's log line carries the ids of its exported span.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.observability import harness
from tests.support.servers import MariaDBServer, RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.slow]

SEEDED_ORDERS = 500  # 50 pages of 10
HIT_RATE_PAGES = range(1, 31)  # 31-40 stay uncached for the Redis outage, 41-50 for MySQL's
REDIS_OUTAGE_PAGES = range(31, 41)
REQUESTS_PER_PAGE = 8
NAMESPACE = "test"
X_CACHE_OUTCOME = {"HIT": "hit", "MISS": "miss", "STALE": "stale", "BYPASS": "bypass"}


@dataclass
class Stack:
    workdir: Path
    base: str
    invalidator_base: str
    prometheus: harness.Prometheus
    receiver: harness.OTLPReceiver
    service: harness.Process
    invalidator: harness.Process
    started: float = 0.0
    hit_rate_window: tuple[float, float] = (0.0, 0.0)
    driven: Counter[str] = field(default_factory=Counter)
    request_ids: dict[str, int] = field(default_factory=dict)
    finished: float = 0.0
    inspector_base: str = ""

    def rate_interval(self) -> str:
        return f"{math.ceil(time.time() - self.started) + 5}s"

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.service.log_text().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines


def get(url: str, headers: dict[str, str] | None = None) -> requests.Response:
    # A new connection per request, so the kernel spreads them over both workers.
    return requests.get(url, headers={"Connection": "close", **(headers or {})}, timeout=10)


def wait_scraped(stack: Stack, scrapes: int = 3) -> None:
    since = time.time()
    harness.wait_for(lambda: stack.prometheus.scraped_since(since, scrapes), 30, "fresh scrapes")


def pause_for_the_picture() -> None:
    """With OBS_PICTURE set, leave time between phases so the drawn panels show each one."""
    if os.environ.get("OBS_PICTURE"):
        time.sleep(12)


def drive_hit_rate_phase(stack: Stack) -> None:
    urls = [
        f"{stack.base}/orders/{page}" for _ in range(REQUESTS_PER_PAGE) for page in HIT_RATE_PAGES
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(get, urls))
    for response in responses:
        assert response.status_code == 200, response.text
        stack.driven[X_CACHE_OUTCOME[response.headers["X-Cache"]]] += 1


def drive_errors_and_outages(
    stack: Stack, db: MariaDBServer, redis_server: RedisServer, database: str
) -> None:
    for path in ("/orders/9999", "/orders/0", "/nowhere"):  # 404, 400, unmatched route
        get(stack.base + path)
    rid = f"obs-{uuid.uuid4().hex[:8]}"
    assert get(f"{stack.base}/orders/3", {"X-Request-ID": rid}).headers["X-Request-ID"] == rid
    stack.request_ids["echoed"] = 1
    stack.request_ids[rid] = 3

    # A committed change: the invalidator follows the binlog and drops page 2.
    with db.connect(database) as conn, conn.cursor() as cur:
        cur.execute("UPDATE orders SET status = 'cancelled' WHERE id = 15")
    harness.wait_for(
        lambda: (
            "orders_invalidations_total"
            in requests.get(f"{stack.invalidator_base}/metrics", timeout=2).text
        ),
        30,
        "the invalidator to apply the change",
    )
    get(f"{stack.base}/orders/2")

    pause_for_the_picture()

    # Redis stops answering: calls time out, the breaker opens, pages come from MySQL. Pages
    # 31-40 were never read, so no worker's near cache can answer for Redis.
    redis_server.pause()
    try:
        for page in REDIS_OUTAGE_PAGES:
            assert get(f"{stack.base}/orders/{page}").status_code == 200
    finally:
        redis_server.resume()
    time.sleep(1.5)  # the breaker's reset period (ORDERS_CACHE_BREAKER_RESET=1)
    for page in (4, 5, 6, 7):
        get(f"{stack.base}/orders/{page}")
    pause_for_the_picture()

    # MySQL stops answering: uncached pages get 503 with Retry-After.
    db.pause()
    try:
        statuses = [get(f"{stack.base}/orders/{page}").status_code for page in range(41, 51)]
    finally:
        db.resume()
    assert 503 in statuses, statuses
    time.sleep(1.5)
    for page in range(41, 46):
        get(f"{stack.base}/orders/{page}")
    pause_for_the_picture()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    workdir = harness.temp_dir("orders-obs-stack-")
    prom_dir = workdir / "prometheus"
    prom_dir.mkdir()
    db = MariaDBServer.create(binlog=True)
    redis_server = RedisServer.create()
    receiver = harness.OTLPReceiver()
    processes: list[harness.Process] = []
    prometheus: harness.Prometheus | None = None
    try:
        database = db.create_database().name
        port, inv_port, insp_port = harness.free_port(), harness.free_port(), harness.free_port()
        env = harness.service_env(
            database_url=db.database_url(database),
            redis_url=redis_server.url,
            prefix=f"obs{uuid.uuid4().hex[:8]}",
            port=port,
            metrics_dir=workdir / "metrics",
            extra={
                "ORDERS_INVALIDATOR_METRICS_PORT": str(inv_port),
                "ORDERS_INSPECTOR_METRICS_PORT": str(insp_port),
                "ORDERS_INSPECTOR_INTERVAL": "0.2",
                "ORDERS_INSPECTOR_PAGES": "20",
                "ORDERS_CACHE_BREAKER_RESET": "1",
                "OTEL_SERVICE_NAME": "orders-test",
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_TRACES_SAMPLER": "always_on",
                "OTEL_BSP_SCHEDULE_DELAY": "200",
            },
        )
        harness.orders_cli(env, "migrate")
        harness.orders_cli(env, "seed", "--orders", str(SEEDED_ORDERS))
        invalidator = harness.start_invalidator(env, workdir / "invalidator.log")
        processes.append(invalidator)
        service = harness.start_service(env, workdir / "service.log")
        processes.append(service)
        processes.append(harness.start_inspector(env, workdir / "inspector.log"))

        # The rule file as shipped, with every group evaluated each second instead of every 30.
        rules = yaml.safe_load(harness.RULES.read_text())
        for group in rules["groups"]:
            group["interval"] = "1s"
        (prom_dir / "rules.yaml").write_text(yaml.safe_dump(rules))
        prometheus = harness.Prometheus(
            prom_dir,
            {
                "orders": [f"127.0.0.1:{port}"],
                "orders-invalidator": [f"127.0.0.1:{inv_port}"],
                "orders-inspector": [f"127.0.0.1:{insp_port}"],
            },
            {"namespace": NAMESPACE},
            rule_files=[prom_dir / "rules.yaml"],
        )
        stack = Stack(
            workdir,
            f"http://127.0.0.1:{port}",
            f"http://127.0.0.1:{inv_port}",
            prometheus,
            receiver,
            service,
            invalidator,
        )
        stack.inspector_base = f"http://127.0.0.1:{insp_port}"
        harness.wait_for(prometheus.targets_up, 30, "every target up")
        stack.started = time.time()

        # Warm-up: every cache-outcome series exists before the measured phase, and the hit and
        # miss counters are both above 0 (rate() stops extrapolating a counter at zero, which
        # would treat the two differently).
        for _ in range(3):
            assert get(f"{stack.base}/orders/1").status_code == 200
        wait_scraped(stack)
        window_start = time.time()
        drive_hit_rate_phase(stack)
        wait_scraped(stack)  # every request of the phase is in the samples before this time
        stack.hit_rate_window = (window_start, time.time())

        drive_errors_and_outages(stack, db, redis_server, database)
        wait_scraped(stack)
        stack.finished = time.time()
        harness.wait_for(lambda: receiver.requests > 0, 10, "spans to arrive")
        yield stack
    finally:
        for process in reversed(processes):
            process.stop()
        if prometheus is not None:
            prometheus.stop()
        receiver.stop()
        redis_server.close()
        db.close()
        if os.environ.get("OBS_KEEP") is None:
            shutil.rmtree(workdir, ignore_errors=True)


def has_data(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(r["value"][1])) for r in result)


def test_prometheus_scrapes_the_api_and_the_invalidator(stack: Stack) -> None:
    up = stack.prometheus.query('up{job=~".*orders.*"}')
    assert {r["metric"]["job"]: r["value"][1] for r in up} == {
        "orders": "1",
        "orders-invalidator": "1",
        "orders-inspector": "1",
    }


@pytest.mark.parametrize(
    ("title", "ref", "expr"), harness.dashboard_targets(), ids=lambda v: str(v)[:48]
)
def test_every_dashboard_query_returns_data(stack: Stack, title: str, ref: str, expr: str) -> None:
    query = harness.render_grafana_expr(
        expr, stack.rate_interval(), {"namespace": NAMESPACE, "instance": ".*"}
    )
    result = stack.prometheus.query(query, at=stack.finished)  # invalid PromQL raises here
    if title in harness.TOPOLOGY_PANELS:
        return  # their series exist only with Sentinel, a cluster or MySQL replicas
    assert has_data(result), f"panel {title!r} query {ref} returned no data:\n{query}"


def test_hit_rate_panel_matches_the_traffic_driven(stack: Stack) -> None:
    (expr,) = [e for t, _r, e in harness.dashboard_targets() if t == "Cache hit rate"]
    start, at = stack.hit_rate_window
    # Two seconds more than the phase: the window then holds a sample taken before its first
    # request (the misses come first), and no other traffic happened since the warm-up.
    window = f"{math.ceil(at - start) + 2}s"
    query = harness.render_grafana_expr(expr, window, {"namespace": NAMESPACE, "instance": ".*"})
    (sample,) = stack.prometheus.query(query, at=at)
    measured = float(sample["value"][1])
    lookups = sum(v for k, v in stack.driven.items() if k != "bypass")
    expected = stack.driven["hit"] / lookups
    assert lookups == len(HIT_RATE_PAGES) * REQUESTS_PER_PAGE
    print(f"hit rate: measured {measured:.4f}, driven {expected:.4f}, {dict(stack.driven)}")
    assert abs(measured - expected) < 0.03, (measured, expected, stack.driven)


@pytest.mark.parametrize("rule", harness.rules(), ids=lambda r: r.get("alert") or r["record"])
def test_every_rule_expression_returns_data(stack: Stack, rule: dict[str, Any]) -> None:
    expr = harness.signal_of(rule["expr"]) if "alert" in rule else rule["expr"]
    result = stack.prometheus.query(expr, at=stack.finished)  # invalid PromQL raises here
    if rule.get("alert") in harness.TOPOLOGY_ALERTS:
        return  # their series exist only on a cluster or with MySQL replicas
    assert has_data(result), f"{rule.get('alert') or rule['record']} has no data:\n{expr}"


def test_prometheus_evaluates_every_rule_without_error(stack: Stack) -> None:
    groups = stack.prometheus.api("rules")["groups"]
    evaluated = [r for g in groups for r in g["rules"]]
    assert len(evaluated) == len(harness.rules())
    for rule in evaluated:
        assert rule["health"] == "ok", rule


@pytest.mark.parametrize("target", ["api", "invalidator", "inspector"])
def test_promtool_check_metrics_is_clean(stack: Stack, target: str) -> None:
    base = {
        "api": stack.base,
        "invalidator": stack.invalidator_base,
        "inspector": stack.inspector_base,
    }[target]
    text, _elapsed = harness.scrape_metrics(f"{base}/metrics")
    done = subprocess.run(
        [str(harness.tool("promtool")), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


def test_api_scrape_is_fast(stack: Stack) -> None:
    timings = [harness.scrape_metrics(f"{stack.base}/metrics")[1] for _ in range(5)]
    assert min(timings) < 0.1, timings


def server_spans(stack: Stack) -> list[harness.ReceivedSpan]:
    return [
        s
        for s in stack.receiver.snapshot()
        if s.kind == 2 and s.attributes.get("http.route") == "/orders/<page>"  # SPAN_KIND_SERVER
    ]


def descendants(
    spans: list[harness.ReceivedSpan], root: harness.ReceivedSpan
) -> list[harness.ReceivedSpan]:
    children: dict[str, list[harness.ReceivedSpan]] = {}
    for span in spans:
        if span.trace_id == root.trace_id:
            children.setdefault(span.parent_span_id, []).append(span)
    found, todo = [], [root.span_id]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.span_id)
    return found


def is_db(span: harness.ReceivedSpan, system: str) -> bool:
    return system in (span.attributes.get("db.system"), span.attributes.get("db.system.name"))


def test_a_miss_is_traced_from_the_http_span_down_to_redis_and_mysql(stack: Stack) -> None:
    spans = stack.receiver.snapshot()
    misses = [s for s in server_spans(stack) if s.attributes.get("orders.cache.outcome") == "miss"]
    assert misses, "no server span carries orders.cache.outcome=miss"
    complete = [
        m
        for m in misses
        if any(is_db(d, "redis") for d in descendants(spans, m))
        and any(is_db(d, "mysql") for d in descendants(spans, m))
    ]
    assert complete, "no miss has both a Redis (cache lookup) and a MySQL child span"
    names = {d.name for d in descendants(spans, complete[0])}
    assert any(n.upper().startswith("SELECT") for n in names), names


def test_hits_carry_the_outcome_and_spans_come_from_both_workers(stack: Stack) -> None:
    spans = server_spans(stack)
    outcomes = Counter(s.attributes.get("orders.cache.outcome") for s in spans)
    assert outcomes["hit"] > 0, outcomes
    assert outcomes["miss"] > 0, outcomes
    workers = {s.resource.get("process.pid") for s in spans}
    assert len(workers) >= 2, workers
    assert {s.resource.get("service.name") for s in spans} == {"orders-test"}


def test_probes_and_scrapes_are_not_traced(stack: Stack) -> None:
    routes = {s.attributes.get("http.route") for s in stack.receiver.snapshot() if s.kind == 2}
    assert not routes & {"/metrics", "/healthz", "/readyz"}, routes


def test_one_canonical_json_line_per_request_with_its_span_ids(stack: Stack) -> None:
    lines = [line for line in stack.log_lines() if line.get("event") == "request"]
    pages = [line for line in lines if line["route"] == "/orders/<page>"]
    assert len(pages) >= len(HIT_RATE_PAGES) * REQUESTS_PER_PAGE
    for line in pages:
        assert {
            "method",
            "route",
            "path",
            "status",
            "duration_ms",
            "cache",
            "request_id",
            "trace_id",
            "span_id",
            "timestamp",
            "level",
        } <= set(line), line
        assert line["path"].startswith("/orders/")
    cache = Counter(line["cache"] for line in pages if line["status"] == 200)
    assert cache["hit"] >= stack.driven["hit"], cache
    assert cache["miss"] > 0, cache

    exported = {(s.trace_id, s.span_id) for s in server_spans(stack)}
    logged = {(line["trace_id"], line["span_id"]) for line in pages}
    matched = logged & exported
    assert len(matched) >= 0.95 * len(logged), (len(matched), len(logged))
    assert {line["route"] for line in lines} >= {"/orders/<page>", "unmatched"}


def test_request_id_is_echoed_and_bound_to_the_log_line(stack: Stack) -> None:
    (rid,) = [k for k, v in stack.request_ids.items() if v == 3]
    (line,) = [line for line in stack.log_lines() if line.get("request_id") == rid]
    assert line["path"] == "/orders/3"
    assert line["status"] == 200


def test_the_redis_outage_shows_as_errors_and_an_open_breaker(stack: Stack) -> None:
    errors = stack.prometheus.query(
        "sum(increase(orders_redis_errors_total[1h]))", at=stack.finished
    )
    assert float(errors[0]["value"][1]) >= 3
    opened = stack.prometheus.query(
        'max_over_time(orders_circuit_breaker_state{dependency="redis", state="open"}[1h])',
        at=stack.finished,
    )
    assert max(float(r["value"][1]) for r in opened) >= 1


def test_invalidator_exposes_its_own_metrics_and_health(stack: Stack) -> None:
    assert requests.get(f"{stack.invalidator_base}/healthz", timeout=5).status_code == 200
    samples = harness.parse_samples(harness.scrape_metrics(f"{stack.invalidator_base}/metrics")[0])
    assert any(k.startswith("orders_invalidations_total") and v > 0 for k, v in samples.items())
    assert "orders_invalidation_lag_seconds" in samples
    assert not any(k.startswith("http_request_duration_seconds") for k in samples)


def test_the_inspector_checked_the_cache_and_confirmed_no_inconsistency(stack: Stack) -> None:
    """Over the whole run (hits, a committed change, Redis and MySQL outages) the inspector
    compared cached entries with MySQL and found none served past the staleness bound."""
    checks = stack.prometheus.query("sum(orders_inspector_checks_total)", at=stack.finished)
    confirmed = stack.prometheus.query(
        "sum(orders_inspector_inconsistencies_total)", at=stack.finished
    )
    assert float(checks[0]["value"][1]) > 0, checks
    assert float(confirmed[0]["value"][1]) == 0, confirmed


def test_the_api_reports_the_checkpoint_it_has_seen(stack: Stack) -> None:
    samples = harness.parse_samples(harness.scrape_metrics(f"{stack.base}/metrics")[0])
    assert "orders_cache_checkpoint_age_seconds" in samples
    assert "orders_cache_checkpoint_seen" in samples


@pytest.mark.docs
def test_render_the_dashboard_picture(stack: Stack) -> None:
    """`make observability-picture` (OBS_PICTURE=path): draw every panel from this run's data."""
    out = os.environ["OBS_PICTURE"]
    panels = []
    start, end = stack.started, stack.finished
    step = max(1.0, (end - start) / 120)
    for panel in harness.dashboard()["panels"]:
        if panel["type"] == "row":
            continue
        series = []
        for target in panel["targets"]:
            query = harness.render_grafana_expr(
                target["expr"], "10s", {"namespace": NAMESPACE, "instance": ".*"}
            )
            for result in stack.prometheus.query_range(query, start, end, step):
                legend = target.get("legendFormat", "")
                for key, value in result["metric"].items():
                    legend = legend.replace("{{" + key + "}}", value)
                series.append({"legend": legend, "values": result["values"]})
        panels.append(
            {
                "title": panel["title"],
                "unit": panel["fieldConfig"]["defaults"].get("unit", ""),
                "series": series,
            }
        )
    data = stack.workdir / "panels.json"
    data.write_text(json.dumps({"start": start, "panels": panels}))
    subprocess.run(
        [
            str(harness.tool("obs-python")),
            str(Path(__file__).with_name("render_picture.py")),
            str(data),
            out,
        ],
        check=True,
        timeout=120,
    )
