"""compose.yaml is valid for the Compose CLI and runs what the chart runs, the same way."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from service.config import SETTINGS
from tests.support.chart import ROOT, helm_env, one, render, tool

# compose.yaml has no password defaults (run.sh writes random ones into .env): supply stand-ins.
PASSWORDS = dict.fromkeys(
    (
        "MYSQL_ROOT_PASSWORD",
        "MYSQL_API_PASSWORD",
        "MYSQL_INVALIDATOR_PASSWORD",
        "MYSQL_MIGRATE_PASSWORD",
        "REDIS_PASSWORD",
        "REDIS_API_PASSWORD",
        "REDIS_INVALIDATOR_PASSWORD",
    ),
    "stand-in",
)


def compose_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("docker-compose"), "-f", str(ROOT / "compose.yaml"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**helm_env(), **PASSWORDS},
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The project as the Compose CLI resolves it (anchors merged, defaults filled in)."""
    result = compose_cli("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_compose_config_is_valid() -> None:
    result = compose_cli("config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_has_no_password_of_its_own() -> None:
    without = subprocess.run(
        [tool("docker-compose"), "-f", str(ROOT / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={k: v for k, v in helm_env().items() if k not in PASSWORDS},
        cwd="/",
    )
    assert without.returncode != 0
    assert "set by ./run.sh" in without.stderr


def test_services_start_in_dependency_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "mysql",
        "redis",
        "migrate",
        "seed",
        "grants",
        "redis-functions",
        "orders",
        "invalidator",
        "inspector",
    }
    conditions = {
        name: {dep: spec["condition"] for dep, spec in service.get("depends_on", {}).items()}
        for name, service in services.items()
    }
    assert conditions["migrate"] == {"mysql": "service_healthy"}
    assert conditions["seed"] == {"migrate": "service_completed_successfully"}
    assert conditions["orders"]["seed"] == "service_completed_successfully"
    assert conditions["invalidator"]["migrate"] == "service_completed_successfully"
    assert conditions["inspector"]["migrate"] == "service_completed_successfully"
    # the cache's Redis functions are loaded (by the admin) before either uses the cache
    for name in ("orders", "invalidator", "inspector"):
        assert conditions[name]["redis-functions"] == "service_completed_successfully", name
    assert services["redis-functions"]["command"] == ["load-functions"]
    assert services["orders"]["ports"][0]["published"] == "5001"


def test_page_99_exists_after_the_seed(compose: dict[str, Any]) -> None:
    command = compose["services"]["seed"]["command"]
    assert int(command[command.index("--orders") + 1]) >= 99 * 10


def test_mysql_and_redis_match_the_chart(compose: dict[str, Any]) -> None:
    docs = render()
    chart_mysql = one(docs, "StatefulSet", "orders-mysql")["spec"]["template"]["spec"]
    mysql = compose["services"]["mysql"]
    assert mysql["image"] == chart_mysql["containers"][0]["image"]
    assert mysql["command"] == chart_mysql["containers"][0]["args"]
    redis = compose["services"]["redis"]
    chart_redis = one(docs, "StatefulSet", "orders-redis")["spec"]["template"]["spec"]
    assert redis["image"] == chart_redis["containers"][0]["image"]
    assert "maxmemory-policy volatile-lru" in compose["configs"]["redis-conf"]["content"]


def test_orders_containers_are_locked_down_like_the_chart(compose: dict[str, Any]) -> None:
    known = {setting.env for setting in SETTINGS}
    for name in ("migrate", "seed", "orders", "invalidator", "inspector"):
        service = compose["services"][name]
        assert service["read_only"] is True, name
        assert service["user"] == "10001:10001", name
        assert service["cap_drop"] == ["ALL"], name
        assert "/tmp" in service["tmpfs"], name  # noqa: S108 (a tmpfs mount, not a file we write)
        assert set(service["environment"]) <= known, set(service["environment"]) - known


def test_run_sh_is_executable_bash() -> None:
    script = ROOT / "run.sh"
    assert script.stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_each_role_has_its_own_users_with_the_packages_grants(compose: dict[str, Any]) -> None:
    """The grants and ACL rules in compose.yaml are what service/orders/roles.py declares."""
    from service.orders import roles

    configs = compose["configs"]
    first_start = configs["mysql-role-grants"]["content"]
    after_migrate = configs["mysql-after-migrate-grants"]["content"]
    for role in roles.ROLES:
        for statement in roles.grants(role, f"orders_{role}", "orders"):
            # A grant on one table needs the table: those run once migrate has made it.
            names_a_table = f"`.`{roles.HEARTBEAT_TABLE}`" in statement or (
                f"`.`{roles.COUNTS_TABLE}`" in statement
            )
            where = after_migrate if names_a_table else first_start
            assert f"{statement};" in where, statement
    services = compose["services"]
    redis_conf = configs["redis-conf"]["content"]
    for role in roles.REDIS_COMMANDS:
        rules = " ".join(roles.redis_acl(role, f"orders_{role}", "orders"))
        assert f"user orders_{role} {rules} >stand-in" in redis_conf, role
    users = {
        name: service["environment"]["ORDERS_DATABASE_URL"].split("//")[1].split("@")[0]
        for name, service in services.items()
        if "ORDERS_DATABASE_URL" in service.get("environment", {})
    }
    assert users == {
        "migrate": "orders_migrate",
        "seed": "orders_migrate",
        "orders": "orders_api",
        "invalidator": "orders_invalidator",
        "inspector": "orders_api",
    }


def test_no_password_is_on_any_command_line(compose: dict[str, Any]) -> None:
    """Argv is world-readable (ps, /proc): passwords reach processes through files or the
    environment only."""
    for name, service in compose["services"].items():
        argv = [*service.get("command", []), *service.get("healthcheck", {}).get("test", [])]
        assert not any("stand-in" in str(word) for word in argv), (name, argv)


def test_the_inspector_runs_beside_the_api_with_its_health_on_loopback(
    compose: dict[str, Any],
) -> None:
    inspector = compose["services"]["inspector"]
    assert inspector["command"] == ["inspect"]
    env = inspector["environment"]
    assert env["ORDERS_REDIS_URL"].startswith("redis://orders_api@")
    assert env["ORDERS_INSPECTOR_HOST"] == "0.0.0.0"  # noqa: S104 - inside its container
    (port,) = inspector["ports"]
    assert port["host_ip"] == "127.0.0.1"
    assert str(port["target"]) == env["ORDERS_INSPECTOR_METRICS_PORT"]
    probe = " ".join(inspector["healthcheck"]["test"])
    assert f"127.0.0.1:{env['ORDERS_INSPECTOR_METRICS_PORT']}/healthz" in probe
