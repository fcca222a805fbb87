"""Settings of the HTTP server (gunicorn, ports, proxies, clients) and of what it exposes
about itself (logs, metrics, /status)."""

from __future__ import annotations

from dataclasses import dataclass

from service.config.declare import setting
from service.config.parsers import (
    choice,
    http_urls,
    non_negative_int,
    optional_port,
    positive_float,
    positive_int,
    proxy_addresses,
    tcp_port,
    worker_count,
)


@dataclass(frozen=True)
class ServerSettings:
    """The HTTP server: addresses, ports, workers, shutdown, proxies, clients, responses."""

    page_size: int = setting(
        "10",
        positive_int,
        "Orders per page.",
    )
    http_max_age: int = setting(
        "1",
        non_negative_int,
        "max-age of the Cache-Control header, in seconds (clients then revalidate with ETag).",
    )
    host: str = setting(
        "0.0.0.0",  # noqa: S104
        str,
        "Address the HTTP server binds.",
    )
    port: int = setting(
        "5001",
        tcp_port,
        "Port the HTTP server listens on.",
    )
    workers: int = setting(
        "",
        worker_count,
        "gunicorn worker processes (default: 2 per CPU).",
    )
    threads: int = setting(
        "4",
        positive_int,
        "Threads per worker (gthread worker class).",
    )
    graceful_timeout: int = setting(
        "20",
        positive_int,
        "Seconds gunicorn gives in-flight requests on shutdown.",
    )
    shutdown_delay: int = setting(
        "3",
        non_negative_int,
        "Seconds /readyz reports 503 after SIGTERM before the server stops accepting, so load "
        "balancers drain first.",
    )
    max_requests: int = setting(
        "0",
        non_negative_int,
        "Recycle a worker after this many requests (0: never).",
    )
    admin_port: int = setting(
        "",
        optional_port,
        "Port for /metrics, /healthz and /readyz only (they then answer 404 on ORDERS_PORT, and"
        " /orders/* answers 404 here); empty: everything on ORDERS_PORT.",
    )
    forwarded_allow_ips: tuple[str, ...] = setting(
        "",
        proxy_addresses,
        "Proxies (IPs or CIDRs, comma-separated, or *) trusted to set X-Forwarded-Proto and "
        "friends; empty: none, not even 127.0.0.1.",
    )
    client_timeout: float = setting(
        "10",
        positive_float,
        "Seconds a client has to send a whole request (headers and body) and to take the "
        "response; slower clients are disconnected, so they cannot hold worker threads.",
    )
    client_max_connections: int = setting(
        "64",
        non_negative_int,
        "Open connections each gunicorn worker admits from one client address (per port; 503 "
        "beyond it); 0: no cap. Behind a proxy every client is the proxy: raise it.",
    )


@dataclass(frozen=True)
class ObservabilitySettings:
    """Logs, the multiprocess metrics directory and the sources /status reads."""

    log_level: str = setting(
        "info",
        choice("debug", "info", "warning", "error"),
        "Log level.",
    )
    log_format: str = setting(
        "auto",
        choice("auto", "json", "console"),
        "auto: JSON when stdout is not a terminal, readable console output when it is.",
    )
    metrics_dir: str = setting(
        "",
        str,
        "Directory for prometheus-client multiprocess files, emptied at start (default: a new "
        "private directory under /tmp).",
    )
    status_sources: tuple[str, ...] = setting(
        "",
        http_urls,
        "/metrics URLs of the invalidator and the inspector that /status and `orders-service "
        "stats` read besides the API's own (comma-separated); empty: both on 127.0.0.1 at "
        "ORDERS_INVALIDATOR_METRICS_PORT and ORDERS_INSPECTOR_METRICS_PORT.",
    )
