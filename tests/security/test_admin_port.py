"""ORDERS_ADMIN_PORT through a real gunicorn: /metrics and the probes only there, /orders/* only on
the public port, decided by the socket a request arrived on (a Host header cannot move it)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from tests.security.conftest import Launched, base_env
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

ADMIN_PATHS = ("/metrics", "/healthz", "/readyz")
PUBLIC_PATHS = ("/orders/1", "/openapi.json")


@pytest.fixture
def split_server(
    launch: Callable[..., Launched], seeded_database_url: str, cache_prefix: str
) -> tuple[Launched, int]:
    admin_port = free_port()
    env = base_env(
        ORDERS_DATABASE_URL=seeded_database_url,
        ORDERS_REDIS_URL="redis://127.0.0.1:6379/0",
        ORDERS_CACHE_PREFIX=cache_prefix,
        ORDERS_ADMIN_PORT=str(admin_port),
    )
    server = launch(["serve"], env)
    server.wait_http(port=admin_port)
    return server, admin_port


def test_admin_routes_answer_only_on_the_admin_port(split_server: tuple[Launched, int]) -> None:
    server, admin_port = split_server
    for path in ADMIN_PATHS:
        assert requests.get(server.url(path, admin_port), timeout=10).status_code == 200, path
        public = requests.get(server.url(path), timeout=10)
        assert public.status_code == 404, path
        assert public.headers["Content-Type"] == "application/problem+json"
    for path in PUBLIC_PATHS:
        assert requests.get(server.url(path), timeout=10).status_code == 200, path
        admin = requests.get(server.url(path, admin_port), timeout=10)
        assert admin.status_code == 404, path
        assert admin.headers["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("host", ["127.0.0.1:{admin}", "localhost:{admin}", "x:{admin}"])
def test_a_host_header_cannot_reach_the_admin_routes(
    split_server: tuple[Launched, int], host: str
) -> None:
    server, admin_port = split_server
    headers = {"Host": host.format(admin=admin_port), "X-Forwarded-Port": str(admin_port)}
    assert requests.get(server.url("/metrics"), headers=headers, timeout=10).status_code == 404
    public_host = {"Host": f"127.0.0.1:{server.port}"}
    assert (
        requests.get(
            server.url("/orders/1", admin_port), headers=public_host, timeout=10
        ).status_code
        == 404
    )


def test_without_an_admin_port_everything_answers_on_one_port(
    launch: Callable[..., Launched], seeded_database_url: str, cache_prefix: str
) -> None:
    env = base_env(
        ORDERS_DATABASE_URL=seeded_database_url,
        ORDERS_REDIS_URL="redis://127.0.0.1:6379/0",
        ORDERS_CACHE_PREFIX=cache_prefix,
    )
    server = launch(["serve"], env)
    server.wait_http()
    for path in (*ADMIN_PATHS, *PUBLIC_PATHS):
        assert requests.get(server.url(path), timeout=10).status_code == 200, path


def test_the_admin_port_must_differ_from_the_public_one() -> None:
    from service.config import Settings, SettingsError

    with pytest.raises(SettingsError, match="ORDERS_ADMIN_PORT"):
        Settings.from_env({"ORDERS_PORT": "5001", "ORDERS_ADMIN_PORT": "5001"})
