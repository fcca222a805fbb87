"""Issue 22: the secrets Job's script, run as rendered against an HTTPS endpoint that speaks the
Kubernetes Secrets API (GET, POST, merge PATCH).

No Kubernetes API server runs on this machine (FIELD-NOTES section 6), so the endpoint is a small
in-test stand-in with the API's status codes (404 absent, 409 exists, 201 created); what it
cannot show (RBAC, hook order, Argo CD) is listed in docs/kubernetes.md for a real cluster.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.chart import one, render

TOKEN = "test-token"  # the stand-in's bearer token, not a credential
SECRETS = "/api/v1/namespaces/orders/secrets"


class SecretsAPI(BaseHTTPRequestHandler):
    store: dict[str, dict[str, Any]]
    requests: list[str]

    def log_message(self, *_args: Any) -> None:
        """Quiet."""

    def _reply(self, status: int, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body or {"kind": "Status", "code": status}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        self.requests.append(f"{self.command} {self.path}")
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._reply(401)
            return False
        return True

    def _body(self) -> dict[str, Any]:
        return dict(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

    def do_GET(self) -> None:
        if self._authorised():
            name = self.path.removeprefix(SECRETS + "/")
            if name in self.store:
                self._reply(200, self.store[name])
            else:
                self._reply(404)

    def do_POST(self) -> None:
        if self._authorised():
            body = self._body()
            name = body["metadata"]["name"]
            if self.path != SECRETS:
                self._reply(404)
            elif name in self.store:
                self._reply(409)
            else:
                self.store[name] = body
                self._reply(201, body)

    def do_PATCH(self) -> None:
        if self._authorised():
            name = self.path.removeprefix(SECRETS + "/")
            assert self.headers["Content-Type"] == "application/merge-patch+json"
            if name not in self.store:
                self._reply(404)
                return
            self.store[name]["data"].update(self._body()["data"])
            self._reply(200, self.store[name])


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, Path, SecretsAPI]]:
    """The stand-in on 127.0.0.1 over TLS, and a service-account dir with its token and CA."""
    account = tmp_path / "account"
    account.mkdir()
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(tmp_path / "key.pem"),
            "-out",
            str(account / "ca.crt"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (account / "token").write_text(TOKEN)
    handler = type("Handler", (SecretsAPI,), {"store": {}, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(account / "ca.crt", tmp_path / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", account, handler  # type: ignore[misc]
    finally:
        server.shutdown()
        server.server_close()


def run_job(
    url: str, account: Path, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """The rendered Job's container: its script and env; the given Secret's keys as files."""
    docs = render(args)
    container = one(docs, "Job", "orders-secrets")["spec"]["template"]["spec"]["containers"][0]
    given = tmp_path / "given"
    given.mkdir(exist_ok=True)
    for old in given.iterdir():
        old.unlink()
    given_secret = [
        d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-given")
    ]
    for secret in given_secret:
        for key, value in secret["data"].items():
            (given / key).write_bytes(base64.b64decode(value))
    env = {e["name"]: e["value"] for e in container["env"]}
    env.update(KUBERNETES_API=url, SERVICE_ACCOUNT_DIR=str(account), GIVEN_DIR=str(given))
    assert container["command"] == ["python3", "-c"]
    return subprocess.run(
        [sys.executable, "-c", container["args"][0]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def stored(handler: Any) -> dict[str, str]:
    data = handler.store["orders"]["data"]
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def test_the_job_creates_the_secret_once_and_keeps_it(
    api: tuple[str, Path, Any], tmp_path: Path
) -> None:
    url, account, handler = api
    first = run_job(url, account, tmp_path)
    assert first.returncode == 0, first.stderr
    created = stored(handler)
    assert set(created) == {
        "mysql-root-password",
        "mysql-api-password",
        "mysql-invalidator-password",
        "mysql-migrate-password",
        "redis-password",
        "redis-api-password",
        "redis-invalidator-password",
    }
    assert len(set(created.values())) == len(created)
    assert all(len(value) >= 24 for value in created.values())
    for password in created.values():
        assert password not in first.stdout + first.stderr  # keys are logged, never values
    labels = handler.store["orders"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "orders"

    again = run_job(url, account, tmp_path)  # every upgrade, every Argo CD sync
    assert again.returncode == 0, again.stderr
    assert stored(handler) == created
    assert not any(r.startswith(("POST", "PATCH")) for r in handler.requests[2:])


def test_the_job_adds_only_missing_keys_and_writes_given_ones(
    api: tuple[str, Path, Any], tmp_path: Path
) -> None:
    url, account, handler = api
    assert run_job(url, account, tmp_path).returncode == 0
    created = stored(handler)
    del handler.store["orders"]["data"]["redis-api-password"]  # a key a newer chart needs
    result = run_job(url, account, tmp_path, "--set-string", "mysql.auth.apiPassword=chosen")
    assert result.returncode == 0, result.stderr
    after = stored(handler)
    assert after["mysql-api-password"] == "chosen"
    assert after["redis-api-password"] not in {"", created["redis-api-password"]}
    unchanged = set(created) - {"mysql-api-password", "redis-api-password"}
    assert {k: after[k] for k in unchanged} == {k: created[k] for k in unchanged}
    assert "chosen" not in result.stdout + result.stderr


def test_the_job_refuses_a_plain_http_api(tmp_path: Path) -> None:
    account = tmp_path / "account"
    account.mkdir()
    result = run_job("http://127.0.0.1:1", account, tmp_path)
    assert result.returncode != 0
    assert "https" in result.stderr
