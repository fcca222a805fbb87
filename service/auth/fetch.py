"""GET one JWKS document with one deadline for the whole exchange.

``urllib``'s timeout bounds each socket operation, not the fetch: a server sending a byte just
inside it every time holds the fetch for as long as it likes. Here a timer shuts the socket down
when the deadline passes, which ends any read in progress. Redirects are not followed (the
``jwks_uri`` of a discovery document is the key set itself) and any non-2xx status is an error.
Name resolution happens before the socket exists and is bounded by the system resolver only.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Callable
from contextlib import suppress
from urllib.parse import urlsplit

# A key set is a few kilobytes; a bigger body is a misconfigured URL or an attack on memory.
JWKS_MAX_BYTES = 1 << 20

Fetch = Callable[[], bytes]


def http_fetch(url: str, timeout: float) -> Fetch:
    """A function that GETs the key set at ``url`` within ``timeout`` seconds, or raises."""
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    headers = {
        "Accept": "application/jwk-set+json, application/json",
        "User-Agent": "orders-service",
        "Host": parts.netloc.rpartition("@")[2],
    }

    def connection() -> http.client.HTTPConnection:
        if parts.scheme == "https":
            return http.client.HTTPSConnection(
                parts.hostname or "",
                parts.port,
                timeout=timeout,
                context=ssl.create_default_context(),
            )
        return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)

    def fetch() -> bytes:
        conn = connection()
        expired = threading.Event()
        opened: list[socket.socket] = []  # the response keeps the socket after conn lets go

        def cut() -> None:
            expired.set()
            for sock in opened:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(timeout, cut)
        timer.daemon = True
        timer.start()
        try:
            conn.connect()  # bounded by the timeout itself
            opened.append(conn.sock)
            if expired.is_set():
                raise TimeoutError
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
            if not 200 <= response.status < 300:
                raise ValueError(f"the JWKS endpoint answered HTTP {response.status}")
            body = response.read(JWKS_MAX_BYTES + 1)
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set():
                raise TimeoutError(f"the JWKS fetch took longer than {timeout:g} s") from None
            raise exc from None
        finally:
            timer.cancel()
            conn.close()
        if expired.is_set():
            raise TimeoutError(f"the JWKS fetch took longer than {timeout:g} s")
        if len(body) > JWKS_MAX_BYTES:
            raise ValueError(f"the JWKS is larger than {JWKS_MAX_BYTES} bytes")
        return body

    return fetch
