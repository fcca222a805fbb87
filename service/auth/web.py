"""The HTTP side of authentication: with it on, every request needs a bearer token except the
probes, ``/metrics`` and ``/openapi.json`` (kubelets, Prometheus and API clients read those
without one).

Anything else is refused by default, unknown paths included, so a route added later is protected
without anyone remembering to. Failures are RFC 6750 challenges as problem+json: no credentials
(or another scheme) 401 without an error code (3.1), a malformed header 400 ``invalid_request``,
a bad token 401 ``invalid_token``, a valid token without the scope 403 ``insufficient_scope``,
keys that cannot be fetched for an uncached ``kid`` 503 with Retry-After (service.auth.jwks).
Tokens are read from the Authorization header only: never the query string (RFC 6750 5.3, logs).
The request pipeline (service.api.pipeline) asks ``verdict`` once per request and answers a
refusal with ``refusal_response``, before the fast path or Flask sees the request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask import Response

from service.auth.jwks import KeysUnavailable
from service.auth.tokens import InsufficientScope, InvalidToken, Principal, TokenVerifier
from service.problems import problem_at

PUBLIC_ENDPOINTS = frozenset(("health.healthz", "health.readyz", "metrics", "openapi.openapi"))
REALM = "orders"
# RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_UNQUOTABLE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def with_vary(headers: list[tuple[str, str]]) -> None:
    """Every protected answer depends on who asks: shared caches must key on the token. Adds
    Authorization to ``headers``' Vary (a WSGI header list), or the header itself."""
    for index, (name, value) in enumerate(headers):
        if name.lower() == "vary":
            if not value:
                headers[index] = (name, "Authorization")
            elif "authorization" not in value.lower():
                headers[index] = (name, f"{value}, Authorization")
            return
    headers.append(("Vary", "Authorization"))


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request's credentials are refused, as plain values (an exception kept on the
    request would keep its traceback, and a failed JWKS fetch's socket, alive with it)."""

    status: int
    description: str
    error: str | None = None  # the RFC 6750 3.1 code; None for a bare challenge
    scope: str | None = None
    retry_after: int | None = None  # 503: the keys could not be fetched


def bearer_token(header: str | None) -> str | Refusal:
    """The token of an ``Authorization: Bearer`` header, or why the header is refused."""
    if header is None:
        return Refusal(401, "This API needs a bearer token: Authorization: Bearer <token>.")
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return Refusal(
            401, "The Authorization header uses another scheme; this API takes Bearer tokens."
        )
    token = credentials.strip()
    if not _B64TOKEN.fullmatch(token):
        return Refusal(
            400,
            "The Authorization header must be 'Bearer ' followed by one token.",
            error="invalid_request",
        )
    return token


def verdict(verifier: TokenVerifier, header: str | None) -> Principal | Refusal:
    """Who the Authorization header speaks for, or why it is refused."""
    token = bearer_token(header)
    if isinstance(token, Refusal):
        return token
    try:
        return verifier.verify(token)
    except InvalidToken as exc:
        return Refusal(401, exc.description, error="invalid_token")
    except InsufficientScope as exc:
        return Refusal(403, exc.description, error="insufficient_scope", scope=exc.scope)
    except KeysUnavailable as exc:
        return Refusal(
            503,
            "The identity provider's signing keys cannot be fetched to check this token; "
            "retry shortly.",
            retry_after=exc.retry_after,
        )


def refusal_response(found: Refusal, path: str) -> Response:
    """The answer to a request for ``path`` whose credentials are refused."""
    if found.retry_after is not None:
        response = problem_at(path, found.status, "Service Unavailable", found.description)
        response.headers["Retry-After"] = str(found.retry_after)
        return response
    return _challenge(path, found.status, found.description, error=found.error, scope=found.scope)


_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}


def _challenge(
    path: str, status: int, description: str, *, error: str | None = None, scope: str | None = None
) -> Response:
    """A problem document with the RFC 6750 3 ``WWW-Authenticate: Bearer`` challenge."""
    params = [f'realm="{REALM}"']
    if error is not None:
        params.append(f'error="{error}"')
        params.append(f'error_description="{_UNQUOTABLE.sub("", description)}"')
    if scope is not None:
        params.append(f'scope="{_UNQUOTABLE.sub("", scope)}"')
    response = problem_at(path, status, _TITLES[status], description)
    response.headers["WWW-Authenticate"] = "Bearer " + ", ".join(params)
    return response
