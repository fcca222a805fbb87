"""An identity provider for tests: real key pairs, tokens signed with them, a JWKS over HTTP.

``SigningKey`` is one key pair with its ``kid``; ``IdentityProvider`` serves the public halves of
its current keys at ``jwks_url`` from a thread (http.server on a free port), counts the fetches,
can rotate keys in and out, and can be made to fail (HTTP 500 or connection refused) to test an
outage. Tokens are signed by PyJWT with the private keys: nothing is faked on the verifying side.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.support.servers import free_port

ISSUER = "https://idp.test/realms/orders"
AUDIENCE = "orders-api"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: PrivateKey

    @classmethod
    def generate(cls, alg: str = "RS256", kid: str | None = None) -> SigningKey:
        private: PrivateKey
        if alg.startswith(("RS", "PS")):
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        elif alg == "EdDSA":
            private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(alg)
        return cls(kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", alg, private)

    def public_jwk(self, *, with_alg: bool = True) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig"})
        if with_alg:
            jwk["alg"] = self.alg
        return jwk

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(
            claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **header}
        )


def claims(
    *,
    scope: str | None = "orders:read",
    lifetime: float = 300,
    issuer: str = ISSUER,
    audience: str | list[str] = AUDIENCE,
    **extra: Any,
) -> dict[str, Any]:
    """Typical access-token claims, valid now for ``lifetime`` seconds."""
    now = int(time.time())
    document: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": "user-42",
        "iat": now,
        "nbf": now,
        "exp": now + int(lifetime),
    }
    if scope is not None:
        document["scope"] = scope
    document.update(extra)
    return {k: v for k, v in document.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(payload: dict[str, Any], kid: str) -> str:
    """``alg: none`` (RFC 7519 6): a header, a payload and an empty signature."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    return f"{header}.{_b64(json.dumps(payload).encode())}."


def hmac_with_public_key(key: SigningKey, payload: dict[str, Any]) -> str:
    """The classic key-confusion forgery: HS256 keyed with the published public key's PEM.
    PyJWT refuses to *sign* with a PEM as an HMAC secret, so this signs by hand."""
    import hashlib
    import hmac

    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    body = _b64(json.dumps(payload).encode())
    signature = hmac.new(key.public_pem(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


class IdentityProvider:
    """A JWKS endpoint over real HTTP, in a thread of the test process."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys: list[SigningKey] = list(keys)
        self.fetches = 0
        self.failing = False
        self.body: bytes | None = None  # served instead of the key set when set
        self.extra: list[dict[str, Any]] = []  # raw entries served after the keys (garbage)
        # "trickle": the answer at one byte per 50 ms; "hang": no answer until stopped
        self.mode = "normal"
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = free_port()

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [key.public_jwk() for key in self.keys] + self.extra}

    def rotate_in(self, key: SigningKey) -> None:
        with self._lock:
            self.keys.append(key)

    def withdraw(self, key: SigningKey) -> None:
        with self._lock:
            self.keys.remove(key)

    def start(self) -> IdentityProvider:
        provider = self
        self._stopping.clear()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with provider._lock:
                    provider.fetches += 1
                    failing = provider.failing
                if failing or self.path != "/jwks.json":
                    self.send_error(500 if failing else 404)
                    return
                if provider.mode == "hang":
                    provider._stopping.wait(60)
                    return
                body = provider.body or json.dumps(provider.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/jwk-set+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if provider.mode == "trickle":
                    for index in range(len(body)):
                        self.wfile.write(body[index : index + 1])
                        self.wfile.flush()
                        if provider._stopping.wait(0.05):
                            return
                    return
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket: fetches now get connection refused."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


@contextmanager
def identity_provider(*keys: SigningKey) -> Iterator[IdentityProvider]:
    provider = IdentityProvider(*keys).start()
    try:
        yield provider
    finally:
        provider.stop()
