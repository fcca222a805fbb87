"""Real components for the observability tests: Prometheus, the service under gunicorn, the
invalidator, and an OTLP/HTTP receiver. Nothing here imports pytest, so a script can use it too.

Tools come from `make observability-tools` (.tools/bin); a missing tool is a failure that names
that target, never a skip.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support.processes import (
    ORDERS_SERVICE,
    Process,
    http_ok,
    orders_cli,
    service_env,
    start_inspector,
    start_invalidator,
    start_service,
)
from tests.support.servers import free_port
from tests.support.waiting import wait_for

# The service's processes come from the suite's one launcher (tests/support/processes.py); they are
# named here too for the observability tests that reach them as ``harness.<name>``.
__all__ = [
    "ORDERS_SERVICE",
    "Process",
    "free_port",
    "http_ok",
    "orders_cli",
    "service_env",
    "start_inspector",
    "start_invalidator",
    "start_service",
    "wait_for",
]

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tools" / "bin"
OBS_VENV_PYTHON = ROOT / ".tools" / "obs-venv" / "bin" / "python"
DASHBOARD_SCHEMA = ROOT / ".tools" / "grafana-dashboard.schema.json"
DASHBOARD = ROOT / "helm" / "orders" / "dashboards" / "orders.json"
RULES = ROOT / "helm" / "orders" / "rules" / "orders-rules.yaml"
RULE_TESTS = ROOT / "helm" / "orders" / "rules" / "tests"
INSTALL_TARGET = "make observability-tools"


class ToolMissing(AssertionError):
    """A tool the test needs is not installed: the message names the make target."""


def tool(name: str) -> Path:
    """Path of a tool installed by `make observability-tools`; fails (never skips) if absent."""
    candidates = {
        "prometheus": TOOLS_BIN / "prometheus",
        "promtool": TOOLS_BIN / "promtool",
        "check-jsonschema": ROOT / ".tools" / "obs-venv" / "bin" / "check-jsonschema",
        "obs-python": OBS_VENV_PYTHON,
        "dashboard-schema": DASHBOARD_SCHEMA,
    }
    path = candidates[name]
    if not path.exists():
        raise ToolMissing(f"{name} is not installed at {path}: run `{INSTALL_TARGET}`")
    return path


# ---------------------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------------------
class Prometheus:
    """A real Prometheus on loopback with a temp data dir, scraping the given jobs every second."""

    def __init__(
        self,
        workdir: Path,
        jobs: Mapping[str, list[str]],
        labels: Mapping[str, str],
        rule_files: list[Path] | None = None,
        interval: str = "1s",
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {
                "scrape_interval": interval,
                "evaluation_interval": interval,
                "scrape_timeout": interval,
            },
            "rule_files": [str(p) for p in rule_files or []],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets, "labels": dict(labels)}]}
                for job, targets in jobs.items()
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process = Process(
            [
                str(tool("prometheus")),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            os.environ,
            workdir / "prometheus.log",
        )
        try:
            wait_for(lambda: http_ok(f"{self.base}/-/ready"), 30, "Prometheus to be ready")
        except BaseException:
            self.process.stop()
            raise

    def api(self, path: str, **params: Any) -> Any:
        response = requests.get(f"{self.base}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path} {params}: {body}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        data = self.api("query", **params)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else []
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=start, end=end, step=step)
        result: list[dict[str, Any]] = data["result"]
        return result

    def targets_up(self) -> bool:
        targets = self.api("targets")["activeTargets"]
        return bool(targets) and all(t["health"] == "up" for t in targets)

    def scraped_since(self, when: float, scrapes: int = 2) -> bool:
        """Every target has been scraped at least `scrapes` times after `when`."""
        targets = self.api("targets")["activeTargets"]
        return all(_rfc3339(t["lastScrape"]) > when + scrapes - 1 for t in targets)

    def stop(self) -> None:
        self.process.stop()


def _rfc3339(text: str) -> float:
    from datetime import datetime

    trimmed = re.sub(r"(\.\d{6})\d*", r"\1", text.replace("Z", "+00:00"))
    return datetime.fromisoformat(trimmed).timestamp()


# ---------------------------------------------------------------------------------------------
# OTLP/HTTP receiver
# ---------------------------------------------------------------------------------------------
@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any] = field(default_factory=dict)


def _attr_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class OTLPReceiver:
    """Accepts OTLP/HTTP protobuf trace exports on /v1/traces and keeps the decoded spans."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                receiver.accept(body)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def accept(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        received: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _attr_value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            attributes={a.key: _attr_value(a.value) for a in span.attributes},
                            resource=resource,
                        )
                    )
        with self._lock:
            self.spans.extend(received)
            self.requests += 1

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


# ---------------------------------------------------------------------------------------------
# Dashboard and rules
# ---------------------------------------------------------------------------------------------
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


# Panels whose series exist only with a topology (a Sentinel or cluster URL, MySQL replicas,
# GTIDs): the one-server stack of test_stack.py checks that their queries are valid PromQL, not
# that they return data.
TOPOLOGY_PANELS = frozenset(
    {
        "Redis failovers and lost steps",
        "Oldest group checkpoint (cluster)",
        "MySQL primary changes",
        "MySQL replica lag",
        "Cache fills by source",
        "GTID waits",
    }
)


# Alerts whose series exist only with a topology (a cluster's groups, MySQL replicas): on the
# one-server stack their expressions are checked as valid PromQL; promtool's unit tests
# (helm/orders/rules/tests) check that each fires and stays silent when it should.
TOPOLOGY_ALERTS = frozenset(
    {"OrdersCacheGroupCheckpointStalled", "OrdersDBReplicaBehind", "OrdersReplicaFillsFallingBack"}
)


def dashboard_targets() -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query in the dashboard, rows included."""
    found: list[tuple[str, str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                found.append((panel["title"], target["refId"], target["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard()["panels"])
    return found


def render_grafana_expr(expr: str, rate_interval: str, variables: Mapping[str, str]) -> str:
    """Substitute what Grafana would: $__rate_interval and the template variables."""
    out = expr.replace("$__rate_interval", rate_interval)
    for name, value in variables.items():
        out = out.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return out


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


_COMPARISON = re.compile(r"(<=|>=|==|!=|<|>)\s*(?!bool\b)(?=[\d(])")


def signal_of(expr: str) -> str:
    """The alert expression with every comparison to a number made `bool`: it then returns a
    series (0 or 1) wherever the underlying signal has data, firing or not."""
    return _COMPARISON.sub(lambda m: f"{m.group(1)} bool ", expr)


def scrape_metrics(url: str) -> tuple[str, float]:
    started = time.perf_counter()
    response = requests.get(url, timeout=10)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return response.text, elapsed


def parse_samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value for every sample line of a text exposition."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        samples[key] = float(value)
    return samples


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
