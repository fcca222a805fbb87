"""The request hooks, logging and tracing switches, in-process on a bare Flask app (no servers)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pytest
from flask import Flask

from service.api import pipeline
from service.api.exchange import current
from service.cache_outcomes import CacheOutcome
from service.config import DatabaseURL
from service.observability import logging as obs_logging
from service.observability import tracing, web
from service.observability.gunicorn_hooks import gunicorn_on_starting


@dataclass(frozen=True)
class LogSettings:
    log_level: str = "info"
    log_format: str = "json"


@pytest.fixture
def app(restore_logging: None) -> Flask:
    app = Flask(__name__)

    @app.get("/orders/<int:page>")
    def page(page: int) -> str:
        current().outcome = CacheOutcome.HIT if page % 2 else CacheOutcome.MISS
        return "ok"

    @app.get("/plain")
    def plain() -> str:
        return "plain"

    web.init_app(app)
    pipeline.install(app, hits=None, verifier=None, admin_port=0)
    return app


def request_lines(out: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "request"]


def test_one_json_line_per_request_labelled_by_route_template(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    obs_logging.configure(LogSettings())
    client = app.test_client()
    client.get("/orders/7")
    client.get("/orders/8")
    client.get("/no/such/thing")
    lines = request_lines(capsys.readouterr().out)
    assert [(x["route"], x["path"], x["status"], x["cache"]) for x in lines] == [
        ("/orders/<int:page>", "/orders/7", 200, "hit"),
        ("/orders/<int:page>", "/orders/8", 200, "miss"),
        ("unmatched", "/no/such/thing", 404, None),
    ]
    for line in lines:
        assert isinstance(line["duration_ms"], float)
        assert line["level"] == "info"
        assert "trace_id" not in line  # tracing is off


def test_request_id_is_taken_from_the_header_or_generated_and_echoed(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    obs_logging.configure(LogSettings())
    client = app.test_client()
    given = client.get("/plain", headers={"X-Request-ID": "abc-123"})
    made = client.get("/plain", headers={"X-Request-ID": "bad id with spaces"})
    assert given.headers["X-Request-ID"] == "abc-123"
    assert made.headers["X-Request-ID"] != "bad id with spaces"
    lines = request_lines(capsys.readouterr().out)
    assert [x["request_id"] for x in lines] == ["abc-123", made.headers["X-Request-ID"]]


def test_probes_and_scrapes_log_at_debug_only(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    obs_logging.configure(LogSettings())
    client = app.test_client()
    assert client.get("/metrics").status_code == 200
    assert request_lines(capsys.readouterr().out) == []


def test_metrics_endpoint_counts_requests_by_route_template(app: Flask) -> None:
    client = app.test_client()
    client.get("/orders/3")
    body = client.get("/metrics").get_data(as_text=True)
    assert 'orders_cache_requests_total{outcome="hit",route="/orders/<int:page>"}' in body
    assert 'orders_cache_requests_total{outcome="error",route="/orders/<int:page>"} 0.0' in body
    assert 'route="/orders/3"' not in body


def test_secrets_never_reach_a_log_line(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    obs_logging.configure(LogSettings())
    url = DatabaseURL("db", 3306, "orders", "s3cret-pw", "orders")
    obs_logging.get_logger("test").info("connecting", database_url=url, password="s3cret-pw")
    logging.getLogger("library").warning("library says %s", "hello")
    out = capsys.readouterr().out
    assert "s3cret-pw" not in out
    assert "mysql://orders:***@db:3306/orders" in out
    library = [json.loads(x) for x in out.splitlines() if "library says" in x]
    assert library[0]["level"] == "warning"


def test_console_format_is_readable_text(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    obs_logging.configure(LogSettings(log_format="console"))
    obs_logging.get_logger("test").info("hello there", answer=42)
    out = capsys.readouterr().out
    assert "hello there" in out
    assert "answer" in out
    assert not out.lstrip().startswith("{")


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "orders"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_on_only_when_an_exporter_is_configured(env: dict[str, str], on: bool) -> None:
    assert tracing.enabled(env) is on


def test_span_is_a_shared_no_op_when_tracing_is_off() -> None:
    assert not tracing.active()
    first, second = tracing.span("cache.lookup", page=1), tracing.span("mysql.query")
    assert first is second
    with first as span:
        span.set_attribute("ignored", True)


def test_gunicorn_refuses_to_start_without_a_metrics_directory(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    from service.config import Settings

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR is not set"):
        gunicorn_on_starting(Settings.from_env({}))


def test_gunicorn_log_lines_share_the_service_format(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from gunicorn.config import Config

    from service.observability.gunicorn_logging import GunicornLogger

    obs_logging.configure(LogSettings())
    cfg = Config()
    cfg.set("errorlog", "-")
    logger = GunicornLogger(cfg)
    logger.info("Booting worker with pid: %s", 4242)
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if "Booting" in x]
    assert line["event"] == "Booting worker with pid: 4242"
    assert line["logger"] == "gunicorn.error"


def _fail_with_a_password_in_a_frame(password: str) -> None:
    connect_arguments = {"user": "orders", "password": password}
    raise struct_error(f"unpack requires a buffer of 4 bytes ({len(connect_arguments)} args)")


struct_error = __import__("struct").error


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_tracebacks_carry_no_frame_locals(
    restore_logging: None, capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    """A driver's connect() frame holds the password: logged tracebacks show code, not values.
    (No secret is registered for scrubbing here: the traceback itself must be clean.)"""
    obs_logging.configure(LogSettings(log_format=log_format))
    try:
        _fail_with_a_password_in_a_frame("s3cret-" + "in-a-frame")  # source lines are shown
    except struct_error:
        obs_logging.get_logger("test").exception("structlog path")
        logging.getLogger("flask.app").exception("stdlib path")
    out = capsys.readouterr().out
    assert "_fail_with_a_password_in_a_frame" in out
    assert "structlog path" in out
    assert "stdlib path" in out
    assert "s3cret-in-a-frame" not in out


@dataclass(frozen=True)
class SecretLogSettings(LogSettings):
    def secret_values(self) -> tuple[str, ...]:
        return ('pa"ss/word',)


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_known_passwords_are_scrubbed_from_every_line(
    restore_logging: None, capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    obs_logging.configure(SecretLogSettings(log_format=log_format))
    obs_logging.get_logger("test").info('driver said pa"ss/word', detail="x pa%22ss%2Fword")
    logging.getLogger("library").warning("library said %s", 'pa"ss/word')
    out = capsys.readouterr().out
    assert "driver said ***" in out
    assert "library said ***" in out
    assert "ss/word" not in out
    assert "ss%2Fword" not in out


@pytest.mark.parametrize("key", ["password", "redis_password", "client_secret", "api_token"])
def test_secret_looking_keys_are_masked(
    restore_logging: None, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    obs_logging.configure(LogSettings())
    obs_logging.get_logger("test").info("connecting", **{key: "visible-value"})
    assert "visible-value" not in capsys.readouterr().out


REQUEST_FIELDS = {
    "method": "GET",
    "route": "/orders/<page>",
    "path": "/orders/7",
    "status": 200,
    "duration_ms": 0.042,
    "cache": CacheOutcome.HIT,
}


@pytest.mark.parametrize("quiet", [False, True])
def test_the_request_line_writer_renders_what_structlog_would(
    restore_logging: None, capsys: pytest.CaptureFixture[str], quiet: bool
) -> None:
    """The request line skips structlog's chain for speed: same keys, order and values."""
    import structlog

    obs_logging.configure(LogSettings(log_level="debug"))
    obs_logging.log_request(REQUEST_FIELDS, "req-1", quiet=quiet)
    structlog.contextvars.bind_contextvars(request_id="req-1")
    try:
        log = obs_logging.request_logger()
        (log.debug if quiet else log.info)("request", **REQUEST_FIELDS)
    finally:
        structlog.contextvars.clear_contextvars()
    fast, chain = (json.loads(x) for x in capsys.readouterr().out.splitlines())
    assert list(fast) == list(chain)
    assert fast.pop("timestamp").endswith("Z")
    chain.pop("timestamp")
    assert fast == chain
    assert fast["level"] == ("debug" if quiet else "info")


def test_the_request_line_follows_the_level_and_the_scrubber(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    obs_logging.configure(SecretLogSettings(log_level="warning"))
    obs_logging.log_request(REQUEST_FIELDS, "req-2")
    assert capsys.readouterr().out == ""
    obs_logging.configure(SecretLogSettings())
    obs_logging.log_request(REQUEST_FIELDS, "req-2", quiet=True)  # debug: below info
    assert capsys.readouterr().out == ""
    obs_logging.log_request({**REQUEST_FIELDS, "path": '/orders/pa"ss/word'}, "req-3")
    out = capsys.readouterr().out
    assert json.loads(out)["path"] == "/orders/***"
