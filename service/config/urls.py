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
from dataclasses import dataclass, field
from typing import Any, Literal
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


Topology = Literal["standalone", "sentinel", "cluster"]
_SCHEMES: dict[str, tuple[Topology, bool]] = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "unix": ("standalone", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
_DEFAULT_PORTS: dict[Topology, int] = {"standalone": 6379, "sentinel": 26379, "cluster": 6379}
# What a Sentinel or cluster URL's query may say (handed to redis-py's connections); anything
# else is refused rather than dropped, as a dropped TLS option would mean plain text.
REDIS_MULTI_HOST_QUERY_KEYS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
_SHAPES: dict[Topology, str] = {
    "standalone": "redis://[[user]:password@]host:6379/0",
    "sentinel": "redis+sentinel://[[user]:password@]host:26379[,host:port...]/<master-name>[/<db>]",
    "cluster": "redis+cluster://[[user]:password@]host:6379[,host:port...]",
}


@dataclass(frozen=True)
class RedisURL:
    """Where Redis is, and as what (``topology``): one server, a Sentinel-watched primary, or a
    cluster. One server's URL is handed to redis-py whole, so its query options keep working;
    Sentinel and cluster URLs are read here into ``hosts``, ``master_name``, ``db`` and
    ``options`` (service/cache/topology.py builds the clients)."""

    url: str
    password: str
    topology: Topology = "standalone"
    hosts: tuple[tuple[str, int], ...] = ()
    master_name: str = ""
    db: int = 0
    username: str = ""
    tls: bool = False
    options: tuple[tuple[str, str], ...] = ()
    # ORDERS_REDIS_SENTINEL_PASSWORD: what the Sentinels themselves want ('' = no AUTH)
    sentinel_password: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return f"RedisURL({self.redacted()})"

    def redacted(self) -> str:
        """The URL without its password: userinfo and secret-looking query values (``?password=``
        is read by redis-py's ``from_url`` too) become ``***``."""
        if self.topology != "standalone":
            return self._redacted_multi_host()
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = _port(parts, None)
        netloc = f"{host}:{port}" if port else host
        if parts.password or self.password:
            netloc = f"{parts.username or ''}:***@{netloc}"
        elif parts.username:
            netloc = f"{parts.username}@{netloc}"
        return parts._replace(netloc=netloc, query=_redacted_query(parts.query)).geturl()

    def _redacted_multi_host(self) -> str:
        scheme = f"{'rediss' if self.tls else 'redis'}+{self.topology}"
        user = quote(self.username, safe="")
        auth = f"{user}:***@" if self.password else (f"{user}@" if user else "")
        hosts = ",".join(f"{_bracketed(host)}:{port}" for host, port in self.hosts)
        path = f"/{self.master_name}/{self.db}" if self.topology == "sentinel" else ""
        query = f"?{urlencode(self.options, safe='/')}" if self.options else ""
        return f"{scheme}://{auth}{hosts}{path}{query}"

    def secrets(self) -> list[str]:
        """Every password this URL carries (userinfo, query, the overrides), for log scrubbing."""
        found = [self.password] if self.password else []
        if self.sentinel_password:
            found.append(self.sentinel_password)
        if self.topology == "standalone":
            found += _query_secrets(urlsplit(self.url).query)
        return found


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


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
    """``ORDERS_REDIS_URL``'s parser: the scheme says the topology (``_SCHEMES``); one server's
    URL is handed to redis-py percent-encoded, the others are read into hosts and a path."""
    url = _encoded_userinfo(raw)
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        raise ValueError(
            "must look like redis://host:6379/0, redis+sentinel://host:26379/<master-name> or "
            "redis+cluster://host:6379[,host:port...]"
        )
    topology, tls = _SCHEMES[scheme]
    if topology != "standalone":
        return _multi_host_url(url, topology, tls)
    parts = urlsplit(url)
    _port(parts, None)
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("must name a host: redis://host:6379/0")
    port = _port(parts, 6379) or 6379
    hosts = ((parts.hostname, port),) if parts.hostname else ()
    return RedisURL(
        url=url,
        password=unquote(parts.password or ""),
        hosts=hosts,
        username=unquote(parts.username or ""),
        tls=tls,
    )


def _multi_host_url(url: str, topology: Topology, tls: bool) -> RedisURL:
    """A Sentinel or cluster URL: ``host:port[,host:port...]`` after the userinfo, then the
    master's name and database (Sentinel) or nothing (a cluster has database 0 only)."""
    shape = _SHAPES[topology]
    rest = url.partition("://")[2]
    rest, _, fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    userinfo, at, hostlist = authority.rpartition("@")
    if fragment:
        raise ValueError(f"a fragment (#...) means nothing here: {shape}")
    username, _, password = userinfo.partition(":") if at else ("", "", "")
    hosts = tuple(_host_port(item, _DEFAULT_PORTS[topology], shape) for item in hostlist.split(","))
    master_name, db = "", 0
    segments = path.split("/") if slash else []
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash
    if topology == "sentinel":
        if not segments or not segments[0] or len(segments) > 2:
            raise ValueError(f"must name the master Sentinel watches: {shape}")
        master_name = unquote(segments[0])
        db = _db_number(segments[1] if len(segments) > 1 else "0", shape)
    elif segments and (len(segments) > 1 or _db_number(segments[0], shape) != 0):
        raise ValueError(f"a cluster has database 0 only and takes no path: {shape}")
    return RedisURL(
        url=url,
        password=unquote(password),
        topology=topology,
        hosts=hosts,
        master_name=master_name,
        db=db,
        username=unquote(username),
        tls=tls,
        options=_multi_host_options(query),
    )


def _host_port(item: str, default_port: int, shape: str) -> tuple[str, int]:
    """One ``host[:port]`` of a host list; a bracketed IPv6 address keeps its colons."""
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?", item.strip())
    if match is None:
        raise ValueError(f"cannot read a host and port in the host list: {shape}")
    host, port = match.group(1).strip("[]"), int(match.group(2) or default_port)
    if not 0 < port < 65536:
        raise ValueError(f"a port is out of range (1-65535): {shape}")
    return host, port


def _db_number(text: str, shape: str) -> int:
    if not text.isdigit():
        raise ValueError(f"the database must be a number: {shape}")
    return int(text)


def _multi_host_options(query: str) -> tuple[tuple[str, str], ...]:
    pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    for key, _ in pairs:
        if key not in REDIS_MULTI_HOST_QUERY_KEYS:
            shown = "***" if is_secret_name(key) else key
            raise ValueError(
                f"unknown query parameter {shown!r} "
                f"(known: {', '.join(REDIS_MULTI_HOST_QUERY_KEYS)})"
            )
    return tuple(pairs)


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
