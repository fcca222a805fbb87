"""``python -m bench.auth_cost``: what a bearer-token check costs per request, in microseconds.

Two levels, each side by side in one process:

- the verifier alone: a token seen for the first time (hash, header, key lookup, signature and
  claims) against the same token again (the verified-token cache), for RS256, ES256 and EdDSA;
- the whole Flask request path of a trivial view behind ``service.api.pipeline``, called as
  WSGI: authentication off, on with a cached token, on with a new token per request. The
  difference between "off" and "cached" is what auth adds to every cache hit of the service.

Keys are real, tokens are signed by PyJWT, and the JWKS comes over HTTP from a server in a
thread (fetched once; key fetching is not on the measured path).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from flask import Flask, Response
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from werkzeug.test import EnvironBuilder

from service.api import pipeline
from service.auth.jwks import JWKSCache
from service.auth.tokens import TokenVerifier
from service.config import AUTH_ALGORITHMS, Settings
from service.wiring import build_verifier

ISSUER, AUDIENCE = "https://idp.bench/", "orders-api"
ALGORITHMS = ("RS256", "ES256", "EdDSA")


def _private_key(alg: str) -> Any:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _jwk(alg: str, kid: str, private: Any) -> dict[str, Any]:
    kind = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[alg]
    jwk: dict[str, Any] = kind.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


class Keys:
    """One key pair per algorithm, and the JWKS of their public halves served over HTTP."""

    def __init__(self) -> None:
        self.private = {alg: _private_key(alg) for alg in ALGORITHMS}
        body = json.dumps(
            {"keys": [_jwk(alg, alg, key) for alg, key in self.private.items()]}
        ).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/jwk-set+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def token(self, alg: str) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": uuid.uuid4().hex,  # unique: a new token every call
            "scope": "openid orders:read",
            "iat": now,
            "exp": now + 3600,
        }
        return jwt.encode(claims, self.private[alg], algorithm=alg, headers={"kid": alg})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _per_call_us(call: Callable[[int], object], n: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean cost of ``n`` calls, in microseconds."""
    results = []
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(n):
            call(i)
        results.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(results)


def _interleaved(calls: dict[str, Callable[[], object]], n: int, rounds: int) -> dict[str, float]:
    """Each variant for ``n`` calls, alternating within every round so that the load of a shared
    machine falls on all of them alike; the median of each variant's per-call cost."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(rounds):
        order = list(calls.items()) if r % 2 == 0 else list(reversed(calls.items()))
        for name, call in order:
            started = time.perf_counter()
            for _ in range(n):
                call()
            samples[name].append((time.perf_counter() - started) / n * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def verifier_costs(keys: Keys, n: int, rounds: int) -> dict[str, dict[str, float]]:
    jwks = JWKSCache(keys.url, cache_time=3600, refresh_interval=10, timeout=2, background=False)
    jwks.start()
    jwks.run_pending()  # the worker's first fetch, here in this thread
    check = TokenVerifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=jwks,
        algorithms=AUTH_ALGORITHMS,
        required_scope="orders:read",
        leeway=30,
        cache_size=n * rounds + 10,
    )
    out: dict[str, dict[str, float]] = {}
    for alg in ALGORITHMS:
        check.verify(keys.token(alg))  # fetch the key set and build the key object once
        fresh = iter([keys.token(alg) for _ in range(n * rounds)])
        first_us = _per_call_us(lambda _i, tokens=fresh: check.verify(next(tokens)), n, rounds)
        same = keys.token(alg)
        cached_us = _per_call_us(lambda _i, t=same: check.verify(t), n * 10, rounds)
        out[alg] = {"first_us": round(first_us, 1), "cached_us": round(cached_us, 2)}
    return out


def _app(settings: Settings) -> Flask:
    app = Flask("bench-auth")
    app.add_url_rule("/orders/<page>", "page", lambda page: Response("ok"))
    verifier = build_verifier(settings) if settings.auth_enabled else None
    if verifier is not None and isinstance(verifier.keys, JWKSCache):
        verifier.keys.start()  # the first fetch, in the background; its tokens wait for it
        deadline = time.monotonic() + 10
        while verifier.keys.generation == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    pipeline.install(app, hits=None, verifier=verifier, admin_port=0)
    return app


def request_costs(keys: Keys, n: int, rounds: int) -> dict[str, float]:
    """Per-request cost through Flask + the auth hook, called as WSGI (no sockets, no server)."""
    off = _app(Settings.from_env({}))
    on = _app(
        Settings.from_env(
            {
                "ORDERS_AUTH_ISSUER": ISSUER,
                "ORDERS_AUTH_AUDIENCE": AUDIENCE,
                "ORDERS_AUTH_JWKS_URL": keys.url,
            }
        )
    )

    def environ(token: str | None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return EnvironBuilder(path="/orders/1", headers=headers).get_environ()

    def call(app: Flask, env: dict[str, Any]) -> None:
        statuses: list[str] = []
        body = app(dict(env), lambda status, headers, exc_info=None: statuses.append(status))
        b"".join(body)  # type: ignore[arg-type]
        if not statuses or not statuses[0].startswith("200"):
            raise RuntimeError(f"bench request failed: {statuses}")

    plain = environ(None)
    cached = environ(keys.token("RS256"))
    fresh = iter([environ(keys.token("RS256")) for _ in range(n * rounds)])
    call(on, cached)  # warm: key set fetched, token cached
    costs = _interleaved(
        {
            "off_us": lambda: call(off, plain),
            "on_cached_us": lambda: call(on, cached),
        },
        n * 5,
        rounds,
    )
    costs["on_first_rs256_us"] = _per_call_us(lambda _i: call(on, next(fresh)), n, rounds)
    costs["added_per_hit_us"] = costs["on_cached_us"] - costs["off_us"]
    return {name: round(value, 1) for name, value in costs.items()}


def render(result: dict[str, Any]) -> str:
    lines = [
        "# Cost of the bearer-token check (`make bench-auth`)",
        "",
        f"Machine: {result['cpus']} CPUs, load average {result['load']} at the start; "
        f"medians of {result['rounds']} rounds.",
        "",
        "## The verifier alone (per token, microseconds)",
        "",
        "| Algorithm | First verification | Same token again (cached) |",
        "| --- | --- | --- |",
    ]
    for alg, costs in result["verifier"].items():
        lines.append(f"| {alg} | {costs['first_us']} | {costs['cached_us']} |")
    flask = result["request"]
    lines += [
        "",
        "## One request through Flask and the auth hook (trivial view, WSGI call)",
        "",
        "| Authentication | Per request (us) |",
        "| --- | --- |",
        f"| off | {flask['off_us']} |",
        f"| on, token already verified | {flask['on_cached_us']} |",
        f"| on, new RS256 token every request | {flask['on_first_rs256_us']} |",
        "",
        f"Added to every request with a cached token: {flask['added_per_hit_us']} us.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.auth_cost", description=__doc__)
    parser.add_argument("--iterations", type=int, default=2000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (the median is reported)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="result directory")
    args = parser.parse_args(argv)
    keys = Keys()
    try:
        load = os.getloadavg()
        result = {
            "cpus": os.cpu_count(),
            "load": " ".join(f"{x:.2f}" for x in load),
            "rounds": args.rounds,
            "iterations": args.iterations,
            "verifier": verifier_costs(keys, args.iterations, args.rounds),
            "request": request_costs(keys, args.iterations, args.rounds),
        }
    finally:
        keys.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "auth.json").write_text(json.dumps(result, indent=2) + "\n")
    text = render(result)
    (args.out / "auth.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
