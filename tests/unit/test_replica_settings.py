"""ORDERS_DATABASE_REPLICA_*: the replicas' URLs, their password, the GTID wait."""

from __future__ import annotations

import pytest

from service.config import Settings, SettingsError


def test_no_replicas_by_default_and_a_wait_well_under_a_second() -> None:
    settings = Settings.from_env({})
    assert settings.database_replica_urls == ()
    assert 0 < settings.database_replica_wait < 1


def test_replica_urls_are_comma_separated_in_the_primary_url_form() -> None:
    settings = Settings.from_env(
        {
            "ORDERS_DATABASE_REPLICA_URLS": "mysql://api:pw@r1:3307/orders, mariadb://api@r2/orders",
            "ORDERS_DATABASE_REPLICA_WAIT": "0.5",
        }
    )
    first, second = settings.database_replica_urls
    assert (first.host, first.port, first.password) == ("r1", 3307, "pw")
    assert (second.host, second.port) == ("r2", 3306)
    assert settings.database_replica_wait == 0.5


def test_the_replica_password_overrides_every_replica_and_never_shows() -> None:
    settings = Settings.from_env(
        {
            "ORDERS_DATABASE_REPLICA_URLS": "mysql://api:old-secret@r1/orders,mysql://api@r2/orders",
            "ORDERS_DATABASE_REPLICA_PASSWORD": "new-secret-value",
        }
    )
    assert {url.password for url in settings.database_replica_urls} == {"new-secret-value"}
    assert "new-secret-value" in settings.secret_values()
    shown = str(settings.redacted()) + repr(settings)
    assert "new-secret-value" not in shown
    assert settings.redacted()["ORDERS_DATABASE_REPLICA_URLS"] == (
        "mysql://api:***@r1:3306/orders,mysql://api:***@r2:3306/orders"
    )


@pytest.mark.parametrize(
    "value", ["postgres://x@y/z", "mysql://api:hunter2-secret@r1", "mysql://r1/orders?ssl_x=1"]
)
def test_a_bad_replica_url_is_refused_by_its_place_without_its_text(value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"ORDERS_DATABASE_REPLICA_URLS": f"mysql://r0/orders,{value}"})
    message = str(refused.value)
    assert "ORDERS_DATABASE_REPLICA_URLS" in message
    assert "replica 2" in message
    assert "hunter2" not in message


def test_a_negative_wait_is_refused() -> None:
    with pytest.raises(SettingsError, match="ORDERS_DATABASE_REPLICA_WAIT"):
        Settings.from_env({"ORDERS_DATABASE_REPLICA_WAIT": "-1"})
