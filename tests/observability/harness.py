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
import signal
import subprocess
import sys
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

from tests.support.servers import free_port
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tools" / "bin"
OBS_VENV_PYTHON = ROOT / ".tools" / "obs-venv" / "bin" / "python"
DASHBOARD_SCHEMA = ROOT / ".tools" / "grafana-dashboard.schema.json"
DASHBOARD = ROOT / "helm" / "orders" / "dashboards" / "orders.json"
RULES = ROOT / "helm" / "orders" / "rules" / "orders-rules.yaml"
RULE_TESTS = ROOT / "helm" / "orders" / "rules" / "tests"
ORDERS_SERVICE = Path(sys.executable).parent / "orders-service"
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


def http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------
class Process:
    """A child process in its own session, its output in a log file, stopped with SIGTERM."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(
            argv,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        self._log.close()
        return self.popen.returncode


def service_env(
    *,
    database_url: str,
    redis_url: str,
    prefix: str,
    port: int,
    metrics_dir: Path,
    workers: int = 2,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment `orders-service` runs with: ORDERS_* only, plus OTEL_* when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORDERS_", "OTEL_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        {
            "ORDERS_DATABASE_URL": database_url,
            "ORDERS_REDIS_URL": redis_url,
            "ORDERS_CACHE_PREFIX": prefix,
            "ORDERS_HOST": "127.0.0.1",
            "ORDERS_PORT": str(port),
            "ORDERS_WORKERS": str(workers),
            "ORDERS_THREADS": "2",
            "ORDERS_METRICS_DIR": str(metrics_dir),
            "ORDERS_LOG_FORMAT": "json",
            "ORDERS_SHUTDOWN_DELAY": "0",
            "ORDERS_GRACEFUL_TIMEOUT": "5",
        }
    )
    env.update(extra or {})
    return env


def orders_cli(env: Mapping[str, str], *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [str(ORDERS_SERVICE), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"orders-service {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def start_service(env: Mapping[str, str], log_path: Path, timeout: float = 60) -> Process:
    """`orders-service serve` (gunicorn), returned once /healthz answers."""
    process = Process([str(ORDERS_SERVICE), "serve"], env, log_path)
    base = f"http://127.0.0.1:{env['ORDERS_PORT']}"
    try:
        wait_for(lambda: not process.alive() or http_ok(f"{base}/healthz"), timeout, "the API")
        if not process.alive():
            raise RuntimeError(f"orders-service serve exited:\n{process.log_text()[-3000:]}")
    except BaseException:
        process.stop()
        raise
    return process


def start_invalidator(env: Mapping[str, str], log_path: Path, timeout: float = 60) -> Process:
    process = Process([str(ORDERS_SERVICE), "invalidate"], env, log_path)
    url = f"http://127.0.0.1:{env['ORDERS_INVALIDATOR_METRICS_PORT']}/healthz"
    try:
        wait_for(lambda: not process.alive() or http_ok(url), timeout, "the invalidator")
        if not process.alive():
            raise RuntimeError(f"orders-service invalidate exited:\n{process.log_text()[-3000:]}")
    except BaseException:
        process.stop()
        raise
    return process


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
