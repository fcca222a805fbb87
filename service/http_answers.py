"""The answers gunicorn's worker (service.gunicorn_worker) sends from its event loop, before a
request reaches the app: whole HTTP/1.1 responses as bytes, problem+json like the app's own."""

from __future__ import annotations

import json

from service.http_framing import Arrival


def problem(status: int, title: str, detail: str, retry_after: int | None = None) -> bytes:
    """A whole problem+json response that closes the connection (service.api.errors' shape)."""
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    extra = f"Retry-After: {retry_after}\r\n" if retry_after is not None else ""
    return (
        f"HTTP/1.1 {status} {title}\r\nContent-Type: application/problem+json\r\n{extra}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
    ).encode()


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
TIMEOUT = problem(408, "Request Timeout", "The request did not arrive in time.")
TOO_LARGE = {
    Arrival.HEADERS_TOO_LARGE: (
        "headers_too_large",
        problem(431, "Request Header Fields Too Large", "The request's headers are too large."),
    ),
    Arrival.BODY_TOO_LARGE: (
        "body_too_large",
        problem(413, "Content Too Large", "The request's body is too large."),
    ),
}
BUSY = problem(503, "Service Unavailable", "Too many connections from this address.", retry_after=1)
