"""Connection URLs: MySQL's and Redis' parsed once, passwords kept out of every printed form.

A generated password often holds ``/``, ``#``, ``?`` or ``@``, which RFC 3986 wants
percent-encoded in a URL's userinfo; pasted unencoded, a standard parser reads part of the
password as the port or the path, and its error message repeats it. ``_encoded_userinfo`` reads
such a URL as meant (everything before the last ``@`` that is followed by a host is the
userinfo); what still cannot be read is refused with a message that shows no part of it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit

# Names whose values are secrets wherever they appear: URL query keys, log keys, variables
# (``*_PASSWORD``). Matched as substrings of the lower-cased name, so ``ssl_keyfile_password``,
# ``client_secret`` and ``ORDERS_REDIS_PASSWORD`` are all caught.
_SECRET_NAME_PARTS = ("password", "passwd", "pwd", "secret", "token", "credential")
_SECRET_NAMES = frozenset(("pass", "key", "auth", "authorization", "api_key", "apikey"))


def is_secret_name(name: str) -> bool:
    """Whether a key, query parameter or variable named ``name`` holds a secret."""
    lowered = name.lower()
    return any(part in lowered for part in _SECRET_NAME_PARTS) or lowered in _SECRET_NAMES


def _redacted_query(query: str) -> str:
    """The query string with the value of every secret-looking key replaced by ``***``."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode(
        [(key, "***" if is_secret_name(key) and value else value) for key, value in pairs],
        safe="*/",
    )


def _query_secrets(query: str) -> list[str]:
    return [value for key, value in parse_qsl(query) if is_secret_name(key) and value]


def redact_url(url: str) -> str:
    """Any URL without its credentials: the userinfo's password and every secret-looking query
    value become ``***`` (for URLs the service does not parse itself, such as the JWKS URL)."""
    parts = urlsplit(_encoded_userinfo(url))
    if not (parts.password or parts.username or _query_secrets(parts.query)):
        return url
    host = (parts.netloc.rpartition("@")[2]) if "@" in parts.netloc else parts.netloc
    netloc = f"{parts.username or ''}:***@{host}" if parts.password else host
    if parts.username and not parts.password:
        netloc = f"{parts.username}@{host}"
    return parts._replace(netloc=netloc, query=_redacted_query(parts.query)).geturl()


def url_secrets(url: str) -> list[str]:
    """Every secret a URL carries (its password, secret-looking query values), for scrubbing."""
    if not url:
        return []
    parts = urlsplit(_encoded_userinfo(url))
    found = [unquote(parts.password)] if parts.password else []
    return found + _query_secrets(parts.query)


# host (a name, an IPv4 address or a bracketed IPv6 one), an optional port of any text (checked
# later, without repeating it), then the path, query, fragment or the end.
_AUTHORITY = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[^/?#@]*)?([/?#]|$)")
_USERINFO_SAFE = ":%!$&'()*+,;="


def _encoded_userinfo(raw: str) -> str:
    """``raw`` with ``/``, ``?``, ``#`` and ``@`` percent-encoded in its userinfo, taken as all
    that precedes the last ``@`` followed by a host; other URLs are returned unchanged."""
    scheme, separator, rest = raw.partition("://")
    at = rest.rfind("@")
    if not separator or at < 0 or not _AUTHORITY.match(rest, at + 1):
        return raw
    userinfo = rest[:at]
    if not any(c in userinfo for c in "/?#@"):
        return raw
    return f"{scheme}://{quote(userinfo, safe=_USERINFO_SAFE)}@{rest[at + 1 :]}"


def _port(parts: SplitResult, default: int | None) -> int | None:
    """The URL's port; an unreadable one is refused without repeating it (it may be the middle of
    a password that a parser split at a reserved character)."""
    try:
        return parts.port or default
    except ValueError:
        raise ValueError(
            "cannot read the host and port (write a password's reserved characters "
            "percent-encoded: / as %2F, # as %23, ? as %3F, @ as %40)"
        ) from None


@dataclass(frozen=True)
class DatabaseURL:
    """Where MySQL is. The password is kept out of ``repr`` so it never reaches a log line."""

    host: str
    port: int
    user: str
    password: str
    database: str
    # PyMySQL's ``ssl`` argument (ca, cert, key, check_hostname) from ``?ssl_ca=...``; None: plain.
    ssl: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"DatabaseURL({self.redacted()})"

    def redacted(self) -> str:
        auth = f"{quote(self.user)}:***" if self.password else quote(self.user)
        url = f"mysql://{auth}@{self.host}:{self.port}/{self.database}"
        if self.ssl:
            query = {
                f"ssl_{name}": value for name, value in self.ssl.items() if name != "check_hostname"
            }
            query["ssl_verify_identity"] = str(self.ssl["check_hostname"]).lower()
            url += "?" + urlencode(query, safe="/")
        return url


@dataclass(frozen=True)
class RedisURL:
    """Where Redis is; the URL is handed to redis-py, so its query options keep working."""

    url: str
    password: str

    def __repr__(self) -> str:
        return f"RedisURL({self.redacted()})"

    def redacted(self) -> str:
        """The URL without its password: userinfo and secret-looking query values (``?password=``
        is read by redis-py's ``from_url`` too) become ``***``."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = _port(parts, None)
        netloc = f"{host}:{port}" if port else host
        if parts.password or self.password:
            netloc = f"{parts.username or ''}:***@{netloc}"
        elif parts.username:
            netloc = f"{parts.username}@{netloc}"
        return parts._replace(netloc=netloc, query=_redacted_query(parts.query)).geturl()

    def secrets(self) -> list[str]:
        """Every password this URL carries (userinfo, query, the override), for log scrubbing."""
        found = [self.password] if self.password else []
        return found + _query_secrets(urlsplit(self.url).query)


_DATABASE_TLS_FILES = ("ssl_ca", "ssl_cert", "ssl_key")
DATABASE_QUERY_KEYS = (*_DATABASE_TLS_FILES, "ssl_verify_identity")


def _database_tls(query: str) -> dict[str, Any] | None:
    """PyMySQL's ``ssl`` argument from the URL's query. Unknown keys are refused rather than
    dropped: a dropped ``ssl_ca`` would mean plain text where TLS was asked for."""
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key not in DATABASE_QUERY_KEYS:
            shown = "***" if is_secret_name(key) else key
            raise ValueError(
                f"unknown query parameter {shown!r} (known: {', '.join(DATABASE_QUERY_KEYS)})"
            )
        if key in options:
            raise ValueError(f"query parameter {key!r} is given twice")
        options[key] = value
    if not options:
        return None
    if "ssl_ca" not in options:
        raise ValueError("TLS options need ssl_ca=<path of the CA certificate>")
    if ("ssl_cert" in options) != ("ssl_key" in options):
        raise ValueError("ssl_cert and ssl_key go together (a client certificate and its key)")
    for key in _DATABASE_TLS_FILES:
        if key in options and not os.path.isfile(options[key]):
            raise ValueError(f"{key}={options[key]} is not a readable file")
    verify = _true_or_false(options.get("ssl_verify_identity", "true"))
    ssl: dict[str, Any] = {
        key.removeprefix("ssl_"): options[key] for key in _DATABASE_TLS_FILES if key in options
    }
    ssl["check_hostname"] = verify
    return ssl


def _true_or_false(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("ssl_verify_identity must be true or false")


def database_url(raw: str) -> DatabaseURL:
    """``ORDERS_DATABASE_URL``'s parser."""
    parts = urlsplit(_encoded_userinfo(raw))
    if parts.scheme not in {"mysql", "mysql+pymysql", "mariadb"}:
        raise ValueError("must look like mysql://user:password@host:3306/orders")
    database = parts.path.lstrip("/")
    if not parts.hostname or not database or "/" in database:
        raise ValueError("must name a host and a database: mysql://user:password@host:3306/orders")
    return DatabaseURL(
        host=parts.hostname,
        port=_port(parts, 3306) or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=database,
        ssl=_database_tls(parts.query),
    )


def redis_url(raw: str) -> RedisURL:
    """``ORDERS_REDIS_URL``'s parser; the URL handed to redis-py is the percent-encoded one."""
    url = _encoded_userinfo(raw)
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ValueError("must look like redis://host:6379/0")
    _port(parts, None)
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("must name a host: redis://host:6379/0")
    return RedisURL(url=url, password=unquote(parts.password or ""))


def database_urls(raw: str) -> tuple[DatabaseURL, ...]:
    """``ORDERS_DATABASE_REPLICA_URLS``' parser: comma-separated ``database_url`` forms (a
    password holding a comma is written percent-encoded, ``%2C``); empty: no replicas. A bad one
    is refused by its place in the list, never by its text (it may hold a password)."""
    found: list[DatabaseURL] = []
    for number, part in enumerate((p.strip() for p in raw.split(",")), start=1):
        if not part:
            continue
        try:
            found.append(database_url(part))
        except ValueError as exc:
            raise ValueError(f"replica {number}: {exc}") from None
    return tuple(found)
