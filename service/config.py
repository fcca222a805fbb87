"""Settings: one frozen, typed object built from ``ORDERS_*`` environment variables at start-up.

Every setting is declared once in ``SETTINGS`` with its variable, default and help text; the
README's configuration table and ``orders-service config`` come from that declaration, and an
invalid value is refused with a message naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from service.urls import (
    DatabaseURL,
    RedisURL,
    database_url,
    is_secret_name,
    redact_url,
    redis_url,
    url_secrets,
)

__all__ = ["SETTINGS", "DatabaseURL", "RedisURL", "Setting", "Settings", "SettingsError"]
__all__ += ["is_secret_name", "load"]


class SettingsError(ValueError):
    """A variable holds a value the service cannot run with; the message names the variable."""


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be a whole number, 0 or more")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a number of seconds greater than 0")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be a number of seconds, 0 or more")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 65535:
        raise ValueError("must be a TCP port between 1 and 65535")
    return value


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return parse


def _prefix(raw: str) -> str:
    value = raw.strip()
    if not value or any(c.isspace() for c in value) or len(value) > 64:
        raise ValueError("must be 1-64 characters without spaces")
    return value


def _optional_port(raw: str) -> int:
    """A port, or empty for "not used" (0)."""
    return _port(raw) if raw.strip() else 0


def _proxy_addresses(raw: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or networks (CIDR), or ``*``; empty trusts no proxy."""
    values = tuple(part.strip() for part in raw.split(",") if part.strip())
    for value in values:
        if value != "*":
            try:
                ipaddress.ip_network(value)
            except ValueError:
                raise ValueError(
                    f"{value!r} is not an IP address or network (e.g. 10.0.0.0/8), or *"
                ) from None
    return values


def _default_workers() -> int:
    """Two per core, at least two: the usual gunicorn starting point (not swept here; README)."""
    return max(2, 2 * (os.cpu_count() or 1))


# Authentication (service/auth): parsers of the ORDERS_AUTH_* block below.
# Asymmetric JWS algorithms only: the keys come from a public JWKS, and an HMAC "key" there would
# be a shared secret published to everyone (RFC 8725 3.1, 3.2). ``none`` is never a choice.
AUTH_ALGORITHMS = (
    *("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    *("ES256", "ES384", "ES512", "EdDSA"),
)


class AlgorithmList(tuple[str, ...]):
    """The allowed algorithms; shown as the variable is written (``orders-service config``)."""

    def __str__(self) -> str:
        return ",".join(self)


def _auth_algorithms(raw: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    unknown = [name for name in names if name not in AUTH_ALGORITHMS]
    if not names or unknown:
        raise ValueError(f"must be a comma-separated list of {', '.join(AUTH_ALGORITHMS)}")
    return AlgorithmList(dict.fromkeys(names))


def _optional_http_url(raw: str) -> str:
    value = raw.strip()
    if value:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http(s) URL, e.g. https://idp.example.com/jwks.json")
    return value


def _safe_jwks_url(url: str) -> bool:
    """https, or http to this host only (a sidecar or a test's identity provider)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = (parts.hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _http_urls(raw: str) -> tuple[str, ...]:
    """Comma-separated http(s) URLs."""
    return tuple(_optional_http_url(part) for part in raw.split(",") if part.strip())


def _scope(raw: str) -> str:
    value = raw.strip()
    if any(c.isspace() or c in '"\\' for c in value):
        raise ValueError("must be one scope, without spaces or quotes (empty: any scope)")
    return value


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, default, parser and the help line the README shows."""

    field: str
    default: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False

    @property
    def env(self) -> str:
        return f"ORDERS_{self.field.upper()}"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database_url",
        "mysql://root@127.0.0.1:3306/orders",
        database_url,
        "MySQL/MariaDB to read orders from: mysql://user:password@host:3306/database.",
        secret=True,
    ),
    Setting(
        "database_password",
        "",
        str,
        "Overrides the password in ORDERS_DATABASE_URL (for a Kubernetes Secret).",
        secret=True,
    ),
    Setting(
        "database_timeout",
        "0.4",
        _positive_float,
        "Connect, read and write timeout of every request-path MySQL call, in seconds (a ping "
        "plus a reconnect stay under one second).",
    ),
    Setting(
        "database_max_concurrency",
        "4",
        _positive_int,
        "MySQL queries one worker process runs at once; more wait, then get 503.",
    ),
    Setting(
        "database_pool_timeout",
        "0.5",
        _positive_float,
        "Seconds a request waits for a free MySQL connection of its worker before a 503.",
    ),
    Setting(
        "database_breaker_failures",
        "3",
        _positive_int,
        "Consecutive MySQL failures that open its circuit breaker.",
    ),
    Setting(
        "database_breaker_reset",
        "1",
        _positive_float,
        "Seconds the MySQL breaker stays open before one trial call.",
    ),
    Setting(
        "database_wait_timeout",
        "300",
        _positive_float,
        "Seconds `orders-service migrate` (and other start-up steps) retry, with backoff, a "
        "MySQL that is not up yet before giving up.",
    ),
    Setting(
        "redis_url",
        "redis://127.0.0.1:6379/0",
        redis_url,
        "Redis holding the cache: redis://[:password@]host:6379/db.",
        secret=True,
    ),
    Setting(
        "redis_password",
        "",
        str,
        "Overrides the password in ORDERS_REDIS_URL (for a Kubernetes Secret).",
        secret=True,
    ),
    Setting(
        "cache_ttl",
        "3600",
        _positive_int,
        "Seconds a cached page is fresh. Invalidation usually removes it sooner.",
    ),
    Setting(
        "cache_max_stale",
        "3600",
        _non_negative_int,
        "Seconds past the TTL a cached page may still be served (marked stale) while MySQL "
        "is down.",
    ),
    Setting(
        "cache_prefix",
        "orders",
        _prefix,
        "Namespace of every Redis key, so deployments and test runs can share one Redis.",
    ),
    Setting(
        "cache_timeout",
        "0.1",
        _positive_float,
        "Timeout of every Redis call, in seconds. A slow Redis counts as a miss, never an error.",
    ),
    Setting(
        "cache_breaker_failures",
        "3",
        _positive_int,
        "Consecutive Redis failures that open the circuit breaker.",
    ),
    Setting(
        "cache_breaker_reset",
        "5",
        _positive_float,
        "Seconds the breaker stays open before one trial call.",
    ),
    Setting(
        "cache_lock_wait",
        "0.5",
        _positive_float,
        "Seconds a request waits for another request that is already filling the same page.",
    ),
    Setting(
        "near_cache",
        "true",
        _bool,
        "Keep recent pages in each worker's memory, kept exact by invalidations from Redis.",
    ),
    Setting(
        "near_cache_size",
        "4096",
        _positive_int,
        "Pages each worker keeps in its near cache (the oldest entries are dropped first).",
    ),
    Setting(
        "cache_max_lag",
        "2",
        _positive_float,
        "Seconds a cached page may be behind MySQL and still be served as a hit. Past it (the "
        "invalidator dead, paused or behind) the page is refilled, or served marked STALE if "
        "MySQL fails.",
    ),
    Setting(
        "inspector_interval",
        "1",
        _positive_float,
        "Seconds between two samples of the consistency inspector (orders-service inspect).",
    ),
    Setting(
        "inspector_pages",
        "100",
        _positive_int,
        "Pages the inspector looks at per sample (a quarter for the most read, the rest a tour "
        "of every page number in blocks of 10); its MySQL cost is bounded by "
        "ORDERS_INSPECTOR_MAX_QUERIES.",
    ),
    Setting(
        "inspector_max_queries",
        "20",
        _positive_float,
        "MySQL queries a second the consistency inspector may make at most (first checks and "
        "rechecks together; entries the API would not serve as hits cost none).",
    ),
    Setting(
        "inspector_metrics_port",
        "9103",
        _port,
        "Port of the inspector's own /metrics endpoint.",
    ),
    Setting("page_size", "10", _positive_int, "Orders per page."),
    Setting(
        "http_max_age",
        "1",
        _non_negative_int,
        "max-age of the Cache-Control header, in seconds (clients then revalidate with ETag).",
    ),
    # Authentication (service/auth): on when ORDERS_AUTH_ISSUER is set.
    Setting(
        "auth_issuer",
        "",
        str.strip,
        "Turns bearer-token authentication on: the exact `iss` of accepted JWTs; "
        "ORDERS_AUTH_AUDIENCE and ORDERS_AUTH_JWKS_URL are then required (empty: no "
        "authentication).",
    ),
    Setting("auth_audience", "", str.strip, "The `aud` a token must carry (this API's id)."),
    Setting(
        "auth_jwks_url",
        "",
        _optional_http_url,
        "The identity provider's JSON Web Key Set (the `jwks_uri` of its discovery document).",
    ),
    Setting(
        "auth_required_scope",
        "orders:read",
        _scope,
        "Scope a token needs (in `scope` or `scp`) to read orders; empty: any valid token.",
    ),
    Setting(
        "auth_leeway",
        "30",
        _non_negative_int,
        "Seconds of clock skew allowed on `exp`, `nbf` and `iat`.",
    ),
    Setting(
        "auth_algorithms",
        ",".join(AUTH_ALGORITHMS),
        _auth_algorithms,
        "JWS algorithms accepted, comma-separated; asymmetric only (never none or HMAC).",
    ),
    Setting(
        "auth_jwks_allow_http",
        "false",
        _bool,
        "Accept an ORDERS_AUTH_JWKS_URL over plain http to a host that is not loopback "
        "(whoever can answer it can mint tokens); off: https only, except 127.0.0.1/::1/localhost.",
    ),
    Setting(
        "auth_jwks_cache_time",
        "55",
        _positive_int,
        "Seconds the fetched keys are used before they are fetched again in the background (kept "
        "if that fails); a key withdrawn from the set stops verifying within this plus "
        "ORDERS_AUTH_JWKS_TIMEOUT.",
    ),
    Setting(
        "auth_jwks_refresh_interval",
        "10",
        _non_negative_float,
        "Least seconds between two JWKS fetches (an unknown `kid` triggers one), so tokens with "
        "made-up key ids cannot hammer the identity provider.",
    ),
    Setting(
        "auth_jwks_timeout",
        "2",
        _positive_float,
        "Deadline of one whole JWKS fetch (connect, headers, body), in seconds.",
    ),
    Setting("host", "0.0.0.0", str, "Address the HTTP server binds."),  # noqa: S104
    Setting("port", "5001", _port, "Port the HTTP server listens on."),
    Setting("workers", "", _positive_int, "gunicorn worker processes (default: 2 per CPU)."),
    Setting("threads", "4", _positive_int, "Threads per worker (gthread worker class)."),
    Setting(
        "graceful_timeout",
        "20",
        _positive_int,
        "Seconds gunicorn gives in-flight requests on shutdown.",
    ),
    Setting(
        "shutdown_delay",
        "3",
        _non_negative_int,
        "Seconds /readyz reports 503 after SIGTERM before the server stops accepting, so "
        "load balancers drain first.",
    ),
    Setting(
        "max_requests",
        "0",
        _non_negative_int,
        "Recycle a worker after this many requests (0: never).",
    ),
    Setting("log_level", "info", _choice("debug", "info", "warning", "error"), "Log level."),
    Setting(
        "log_format",
        "auto",
        _choice("auto", "json", "console"),
        "auto: JSON when stdout is not a terminal, readable console output when it is.",
    ),
    Setting(
        "metrics_dir",
        "",
        str,
        "Directory for prometheus-client multiprocess files, emptied at start "
        "(default: a new private directory under /tmp).",
    ),
    Setting(
        "invalidator_metrics_port",
        "9102",
        _port,
        "Port of the invalidator's own /metrics (and /healthz) endpoint.",
    ),
    Setting(
        "admin_port",
        "",
        _optional_port,
        "Port for /metrics, /healthz and /readyz only (they then answer 404 on ORDERS_PORT, and "
        "/orders/* answers 404 here); empty: everything on ORDERS_PORT.",
    ),
    Setting(
        "status_sources",
        "",
        _http_urls,
        "/metrics URLs of the invalidator and the inspector that /status and `orders-service "
        "stats` read besides the API's own (comma-separated); empty: both on 127.0.0.1 at "
        "ORDERS_INVALIDATOR_METRICS_PORT and ORDERS_INSPECTOR_METRICS_PORT.",
    ),
    Setting(
        "inspector_host",
        "127.0.0.1",
        str,
        "Address the inspector's /metrics and /healthz bind (0.0.0.0 where something else must "
        "scrape it, as in a container).",
    ),
    Setting(
        "forwarded_allow_ips",
        "",
        _proxy_addresses,
        "Proxies (IPs or CIDRs, comma-separated, or *) trusted to set X-Forwarded-Proto and "
        "friends; empty: none, not even 127.0.0.1.",
    ),
    Setting(
        "client_timeout",
        "10",
        _positive_float,
        "Seconds a client has to send a whole request (headers and body) and to take the "
        "response; slower clients are disconnected, so they cannot hold worker threads.",
    ),
    Setting(
        "client_max_connections",
        "64",
        _non_negative_int,
        "Open connections each gunicorn worker admits from one client address (per port; "
        "503 beyond it); 0: no cap. Behind a proxy every client is the proxy: raise it.",
    ),
    Setting(
        "invalidator_server_id",
        "4242",
        _positive_int,
        "Replica server id the invalidator uses on the binlog stream; unique per MySQL.",
    ),
    Setting(
        "invalidator_stall_after",
        "10",
        _positive_float,
        "Seconds without progress on the binlog stream (no event, no heartbeat) after which "
        "the invalidator's /healthz answers 503.",
    ),
    Setting(
        "invalidator_heartbeat",
        "0.5",
        _positive_float,
        "Seconds between the invalidator's heartbeat writes to MySQL; each proves, once it comes "
        "back through the binlog, that every earlier commit is applied (the checkpoint).",
    ),
    Setting(
        "invalidator_recheck_delay",
        "0.1",
        _non_negative_float,
        "Seconds after an invalidation that the same pages are invalidated again: a binlog "
        "reader can see a commit a moment before other sessions can read it (0: off).",
    ),
    Setting(
        "invalidator_chunk_rows",
        "5000",
        _positive_int,
        "Rows of a large transaction applied per step while it is still being read.",
    ),
    Setting(
        "invalidator_lease_ttl",
        "3",
        _positive_float,
        "Seconds the active invalidator's lease lasts without renewal; a standby takes over "
        "after it lapses.",
    ),
    Setting(
        "invalidator_verify_blocks",
        "4",
        _positive_int,
        "Block counts (4096 ids each) the active invalidator checks against the rows every "
        "ORDERS_INVALIDATOR_VERIFY_INTERVAL; a drifted one is recounted and its pages dropped.",
    ),
    Setting(
        "invalidator_verify_interval",
        "1",
        _positive_float,
        "Seconds between two rounds of block-count checks (a full tour takes blocks / "
        "ORDERS_INVALIDATOR_VERIFY_BLOCKS rounds).",
    ),
    Setting(
        "invalidator_repair_settle",
        "0",
        _non_negative_float,
        "Seconds without DDL on orders before the invalidator rebuilds the block counts after "
        "one; it always waits for orders to exist (it never creates tables or triggers: "
        "`orders-service migrate` does).",
    ),
)


@dataclass(frozen=True)
class Settings:
    """The service's whole configuration, validated. Build it with ``Settings.from_env()``."""

    database_url: DatabaseURL
    database_password: str = field(repr=False)
    database_timeout: float
    database_max_concurrency: int
    database_pool_timeout: float
    database_breaker_failures: int
    database_breaker_reset: float
    database_wait_timeout: float
    redis_url: RedisURL
    redis_password: str = field(repr=False)
    cache_ttl: int
    cache_max_stale: int
    cache_prefix: str
    cache_timeout: float
    cache_breaker_failures: int
    cache_breaker_reset: float
    cache_lock_wait: float
    near_cache: bool
    near_cache_size: int
    cache_max_lag: float
    inspector_interval: float
    inspector_pages: int
    inspector_max_queries: float
    inspector_metrics_port: int
    page_size: int
    http_max_age: int
    auth_issuer: str
    auth_audience: str
    auth_jwks_url: str
    auth_jwks_allow_http: bool
    auth_required_scope: str
    auth_leeway: int
    auth_algorithms: tuple[str, ...]
    auth_jwks_cache_time: int
    auth_jwks_refresh_interval: float
    auth_jwks_timeout: float
    host: str
    port: int
    workers: int
    threads: int
    graceful_timeout: int
    shutdown_delay: int
    max_requests: int
    log_level: str
    log_format: str
    metrics_dir: str
    invalidator_metrics_port: int
    admin_port: int
    forwarded_allow_ips: tuple[str, ...]
    client_timeout: float
    client_max_connections: int
    status_sources: tuple[str, ...]
    inspector_host: str
    invalidator_server_id: int
    invalidator_stall_after: float
    invalidator_heartbeat: float
    invalidator_recheck_delay: float
    invalidator_chunk_rows: int
    invalidator_lease_ttl: float
    invalidator_verify_blocks: int
    invalidator_verify_interval: float
    invalidator_repair_settle: float

    def __post_init__(self) -> None:
        if self.auth_enabled and not (self.auth_audience and self.auth_jwks_url):
            raise SettingsError(
                "ORDERS_AUTH_ISSUER is set, so ORDERS_AUTH_AUDIENCE and ORDERS_AUTH_JWKS_URL "
                "must be set too: without an audience any token of that issuer would do, "
                "without a key set none can be checked."
            )
        if self.auth_enabled and not (
            self.auth_jwks_allow_http or _safe_jwks_url(self.auth_jwks_url)
        ):
            raise SettingsError(
                "ORDERS_AUTH_JWKS_URL must be https (or http to a loopback address): whoever "
                "answers a plain-http key set URL can mint tokens. Set "
                "ORDERS_AUTH_JWKS_ALLOW_HTTP=true to accept it anyway."
            )

    @property
    def auth_enabled(self) -> bool:
        """Bearer tokens are required on the API (ORDERS_AUTH_ISSUER is set)."""
        return bool(self.auth_issuer)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Parse every ``ORDERS_*`` variable; keyword overrides (tests) win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            if setting.field in overrides:
                values[setting.field] = overrides.pop(setting.field)
                continue
            raw = env.get(setting.env, setting.default)
            if setting.field == "workers" and raw == "":
                values["workers"] = _default_workers()
                continue
            try:
                values[setting.field] = setting.parse(raw)
            except ValueError as exc:
                shown = "(hidden)" if setting.secret else repr(raw)
                raise SettingsError(f"{setting.env}={shown} is invalid: {exc}") from None
        if overrides:
            raise TypeError(f"unknown settings: {', '.join(sorted(overrides))}")
        if values["admin_port"] and values["admin_port"] == values["port"]:
            raise SettingsError("ORDERS_ADMIN_PORT must differ from ORDERS_PORT (or be empty)")
        return cls(**values)._with_passwords()

    def _with_passwords(self) -> Settings:
        """Fold the separate password variables into the URLs they override."""
        database_url, redis_url = self.database_url, self.redis_url
        if self.database_password:
            database_url = replace(database_url, password=self.database_password)
        if self.redis_password:
            redis_url = RedisURL(redis_url.url, self.redis_password)
        return replace(self, database_url=database_url, redis_url=redis_url)

    def secret_values(self) -> tuple[str, ...]:
        """Every password the settings hold, so logging can scrub them from any line."""
        found = [
            self.database_url.password,
            *self.redis_url.secrets(),
            *url_secrets(self.auth_jwks_url),
        ]
        return tuple(sorted({value for value in found if value}, key=len, reverse=True))

    def redacted(self) -> dict[str, Any]:
        """The settings as a log-safe dict: URLs without passwords, passwords as ``***``."""
        shown: dict[str, Any] = {}
        for setting in SETTINGS:
            value = getattr(self, setting.field)
            if isinstance(value, DatabaseURL | RedisURL):
                shown[setting.env] = value.redacted()
            elif setting.secret or is_secret_name(setting.env):
                shown[setting.env] = "***" if value else ""
            elif isinstance(value, str) and "://" in value:  # any other URL, e.g. the JWKS one
                shown[setting.env] = redact_url(value)
            elif isinstance(value, tuple):
                shown[setting.env] = ",".join(value)
            else:
                shown[setting.env] = value
        return shown


_loaded: Settings | None = None


def load() -> Settings:
    """The process's settings from ``ORDERS_*``, parsed once: the gunicorn config, its logger and
    every worker's ``create_app`` (workers inherit the master's copy across fork) share them."""
    global _loaded  # noqa: PLW0603 - one parse per process is the point
    if _loaded is None:
        _loaded = Settings.from_env()
    return _loaded
