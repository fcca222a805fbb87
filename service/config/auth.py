"""Settings of bearer-token authentication (service/auth): on when ORDERS_AUTH_ISSUER is set."""

from __future__ import annotations

from dataclasses import dataclass

from service.config.declare import setting
from service.config.errors import SettingsError
from service.config.parsers import (
    AUTH_ALGORITHMS,
    algorithm_list,
    boolean,
    non_negative_int,
    optional_http_url,
    positive_float,
    positive_int,
    safe_jwks_url,
    scope,
)


@dataclass(frozen=True)
class AuthSettings:
    """JWT verification: issuer, audience, key set, scope, algorithms; checked together."""

    auth_issuer: str = setting(
        "",
        str.strip,
        "Turns bearer-token authentication on: the exact `iss` of accepted JWTs; "
        "ORDERS_AUTH_AUDIENCE and ORDERS_AUTH_JWKS_URL are then required (empty: no "
        "authentication).",
    )
    auth_audience: str = setting(
        "",
        str.strip,
        "The `aud` a token must carry (this API's id).",
    )
    auth_jwks_url: str = setting(
        "",
        optional_http_url,
        "The identity provider's JSON Web Key Set (the `jwks_uri` of its discovery document).",
    )
    auth_required_scope: str = setting(
        "orders:read",
        scope,
        "Scope a token needs (in `scope` or `scp`) to read orders; empty: any valid token.",
    )
    auth_leeway: int = setting(
        "30",
        non_negative_int,
        "Seconds of clock skew allowed on `exp`, `nbf` and `iat`.",
    )
    auth_algorithms: tuple[str, ...] = setting(
        ",".join(AUTH_ALGORITHMS),
        algorithm_list,
        "JWS algorithms accepted, comma-separated; asymmetric only (never none or HMAC).",
    )
    auth_jwks_allow_http: bool = setting(
        "false",
        boolean,
        "Accept an ORDERS_AUTH_JWKS_URL over plain http to a host that is not loopback (whoever"
        " can answer it can mint tokens); off: https only, except 127.0.0.1/::1/localhost.",
    )
    auth_jwks_cache_time: int = setting(
        "55",
        positive_int,
        "Seconds the fetched keys are used before they are fetched again in the background "
        "(kept if that fails); a key withdrawn from the set stops verifying within this plus "
        "ORDERS_AUTH_JWKS_TIMEOUT.",
    )
    auth_jwks_refresh_interval: float = setting(
        "10",
        positive_float,
        "Least seconds between two JWKS fetches (an unknown `kid` triggers one), so tokens with"
        " made-up key ids cannot hammer the identity provider (0 would let them: refused).",
    )
    auth_jwks_timeout: float = setting(
        "2",
        positive_float,
        "Deadline of one whole JWKS fetch (connect, headers, body), in seconds.",
    )

    def __post_init__(self) -> None:
        if self.auth_enabled and not (self.auth_audience and self.auth_jwks_url):
            raise SettingsError(
                "ORDERS_AUTH_ISSUER is set, so ORDERS_AUTH_AUDIENCE and ORDERS_AUTH_JWKS_URL "
                "must be set too: without an audience any token of that issuer would do, "
                "without a key set none can be checked."
            )
        if self.auth_enabled and not (
            self.auth_jwks_allow_http or safe_jwks_url(self.auth_jwks_url)
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
