"""Parsers of ``ORDERS_*`` values: each turns the raw string into a typed value or raises
``ValueError`` with a message that completes "ORDERS_X='...' is invalid: ..."."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from urllib.parse import urlsplit


def positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be a whole number, 0 or more")
    return value


def positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a number of seconds greater than 0")
    return value


def non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be a number of seconds, 0 or more")
    return value


def tcp_port(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 65535:
        raise ValueError("must be a TCP port between 1 and 65535")
    return value


def optional_port(raw: str) -> int:
    """A port, or empty for "not used" (0)."""
    return tcp_port(raw) if raw.strip() else 0


def boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return parse


def prefix(raw: str) -> str:
    value = raw.strip()
    if not value or any(c.isspace() for c in value) or len(value) > 64:
        raise ValueError("must be 1-64 characters without spaces")
    return value


def worker_count(raw: str) -> int:
    """A worker count; empty: two per core, at least two (the usual gunicorn starting point)."""
    if raw == "":
        return max(2, 2 * (os.cpu_count() or 1))
    return positive_int(raw)


def proxy_addresses(raw: str) -> tuple[str, ...]:
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


def algorithm_list(raw: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    unknown = [name for name in names if name not in AUTH_ALGORITHMS]
    if not names or unknown:
        raise ValueError(f"must be a comma-separated list of {', '.join(AUTH_ALGORITHMS)}")
    return AlgorithmList(dict.fromkeys(names))


def optional_http_url(raw: str) -> str:
    value = raw.strip()
    if value:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http(s) URL, e.g. https://idp.example.com/jwks.json")
    return value


def http_urls(raw: str) -> tuple[str, ...]:
    """Comma-separated http(s) URLs."""
    return tuple(optional_http_url(part) for part in raw.split(",") if part.strip())


def scope(raw: str) -> str:
    value = raw.strip()
    if any(c.isspace() or c in '"\\' for c in value):
        raise ValueError("must be one scope, without spaces or quotes (empty: any scope)")
    return value


def safe_jwks_url(url: str) -> bool:
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
