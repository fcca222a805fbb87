"""Authentication end to end: `orders-service serve` (gunicorn, two workers) with ORDERS_AUTH_*
pointing at a JWKS served over HTTP, asked over real sockets; the token never reaches the log."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support import processes as harness
from tests.support.tokens import AUDIENCE, ISSUER, IdentityProvider, SigningKey, claims

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def served(
    seeded_database_url: str, cache_prefix: str, tmp_path: Path
) -> Iterator[tuple[str, SigningKey, IdentityProvider, harness.Process]]:
    key = SigningKey.generate("ES256")
    idp = IdentityProvider(key).start()
    port = harness.free_port()
    env = harness.service_env(
        database_url=seeded_database_url,
        redis_url="redis://127.0.0.1:6379/0",
        prefix=cache_prefix,
        port=port,
        metrics_dir=tmp_path / "metrics",
        extra={
            "ORDERS_AUTH_ISSUER": ISSUER,
            "ORDERS_AUTH_AUDIENCE": AUDIENCE,
            "ORDERS_AUTH_JWKS_URL": idp.jwks_url,
            "ORDERS_LOG_LEVEL": "debug",
        },
    )
    process = harness.start_service(env, tmp_path / "service.log")
    try:
        yield f"http://127.0.0.1:{port}", key, idp, process
    finally:
        process.stop()
        idp.stop()


def test_gunicorn_serves_pages_only_to_token_holders(
    served: tuple[str, SigningKey, IdentityProvider, harness.Process],
) -> None:
    base, key, idp, process = served
    refused = requests.get(f"{base}/orders/1", timeout=10)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="orders"'
    assert refused.headers["Content-Type"] == "application/problem+json"

    token = key.sign(claims())
    for _ in range(6):  # both workers, most of them from the verified-token cache
        page = requests.get(
            f"{base}/orders/1", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert page.status_code == 200
        assert page.headers["Cache-Control"].startswith("private, ")
        assert "Authorization" in page.headers["Vary"]
    assert 1 <= idp.fetches <= 2  # one key set fetch per worker at most

    wrong = requests.get(
        f"{base}/orders/1",
        headers={"Authorization": f"Bearer {key.sign(claims(scope='x'))}"},
        timeout=10,
    )
    assert wrong.status_code == 403
    assert 'error="insufficient_scope"' in wrong.headers["WWW-Authenticate"]

    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert requests.get(f"{base}{path}", timeout=10).status_code == 200

    process.stop()
    log = process.log_text()
    assert '"status": 401' in log or '"status":401' in log
    assert token not in log
    assert token.split(".")[2] not in log


def test_the_charts_helm_test_expects_a_challenge_when_auth_is_on(
    served: tuple[str, SigningKey, IdentityProvider, harness.Process],
) -> None:
    """The chart's `helm test` pod script, run as rendered against this server: with auth on it
    passes on the 401 challenge; told auth is off, the same 401 fails it."""
    from tests.support.chart import AUTH, one, render

    base = served[0]
    pod = one(render(AUTH), "Pod", "orders-test-page")
    script, auth_flag, _url, _seeded, _inspector = pod["spec"]["containers"][0]["args"]
    assert auth_flag == "true"
    ok = subprocess.run(
        [sys.executable, "-c", script, "true", f"{base}/orders/1", "false", ""],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "401 Bearer" in ok.stdout
    wrong = subprocess.run(
        [sys.executable, "-c", script, "false", f"{base}/orders/1", "false", ""],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert wrong.returncode != 0
