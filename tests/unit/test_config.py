"""Settings come from ORDERS_* variables; a bad value is refused with the variable's name."""

from __future__ import annotations

import pytest

from service.config import SETTINGS, Settings, SettingsError


def test_defaults_point_at_localhost_and_match_the_brief() -> None:
    settings = Settings.from_env({})
    assert settings.database_url.host == "127.0.0.1"
    assert settings.database_url.port == 3306
    assert settings.database_url.database == "orders"
    assert settings.redis_url.url == "redis://127.0.0.1:6379/0"
    assert (settings.cache_ttl, settings.page_size, settings.port) == (3600, 10, 5001)
    assert settings.workers >= 2


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ORDERS_CACHE_TTL", "0"),
        ("ORDERS_CACHE_TTL", "soon"),
        ("ORDERS_PAGE_SIZE", "-3"),
        ("ORDERS_PORT", "70000"),
        ("ORDERS_DATABASE_URL", "postgres://x@y/z"),
        ("ORDERS_DATABASE_URL", "mysql://user@host"),
        ("ORDERS_REDIS_URL", "http://localhost"),
        ("ORDERS_NEAR_CACHE", "maybe"),
        ("ORDERS_LOG_FORMAT", "xml"),
        ("ORDERS_CACHE_TIMEOUT", "nan"),
        ("ORDERS_CACHE_PREFIX", "has space"),
        ("ORDERS_AUTH_JWKS_REFRESH_INTERVAL", "0"),
    ],
)
def test_an_invalid_value_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def test_urls_are_parsed_and_passwords_never_shown() -> None:
    settings = Settings.from_env(
        {
            "ORDERS_DATABASE_URL": "mysql://app:s3cr%40t@db.example:3307/shop",
            "ORDERS_REDIS_URL": "redis://:hunter2@cache:6380/1",
        }
    )
    url = settings.database_url
    assert (url.user, url.password, url.host, url.port, url.database) == (
        "app",
        "s3cr@t",
        "db.example",
        3307,
        "shop",
    )
    shown = repr(settings) + str(settings.redacted())
    assert "s3cr" not in shown
    assert "hunter2" not in shown
    assert "mysql://app:***@db.example:3307/shop" in shown


def test_separate_password_variables_override_the_urls() -> None:
    settings = Settings.from_env(
        {"ORDERS_DATABASE_PASSWORD": "fromsecret", "ORDERS_REDIS_PASSWORD": "alsosecret"}
    )
    assert settings.database_url.password == "fromsecret"
    assert settings.redis_url.password == "alsosecret"
    assert "fromsecret" not in repr(settings)


def test_a_secret_value_is_not_echoed_in_the_error() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"ORDERS_DATABASE_URL": "oracle://u:topsecret@h/d"})
    assert "topsecret" not in str(refused.value)


def test_every_setting_has_help_and_a_field() -> None:
    names = {setting.field for setting in SETTINGS}
    assert names == set(Settings.__dataclass_fields__)
    assert all(setting.help.endswith(".") for setting in SETTINGS)


@pytest.mark.parametrize(
    "url",
    [
        "redis://cache:6379/0?password=hunter2",
        "redis://cache:6379/0?db=1&password=hunter2&socket_timeout=1",
        "rediss://user:hunter2@cache:6380/0?ssl_ca_certs=/etc/ca.pem",
        "redis://cache:6379/0?ssl_password=hunter2",
    ],
)
def test_redis_passwords_in_the_query_are_redacted(url: str) -> None:
    settings = Settings.from_env({"ORDERS_REDIS_URL": url})
    shown = repr(settings) + str(settings.redacted())
    assert "hunter2" not in shown
    assert "***" in shown
    assert "hunter2" in settings.secret_values()


def test_the_database_url_takes_tls_options() -> None:
    url = Settings.from_env(
        {"ORDERS_DATABASE_URL": f"mysql://app@db:3306/shop?ssl_ca={__file__}"}
    ).database_url
    assert url.ssl == {"ca": __file__, "check_hostname": True}
    relaxed = Settings.from_env(
        {
            "ORDERS_DATABASE_URL": f"mysql://app@db/shop?ssl_ca={__file__}"
            f"&ssl_cert={__file__}&ssl_key={__file__}&ssl_verify_identity=false"
        }
    ).database_url
    assert relaxed.ssl == {
        "ca": __file__,
        "cert": __file__,
        "key": __file__,
        "check_hostname": False,
    }
    assert "ssl_verify_identity=false" in relaxed.redacted()
    assert (
        Settings.from_env({"ORDERS_DATABASE_URL": "mysql://app@db/shop"}).database_url.ssl is None
    )


@pytest.mark.parametrize(
    "query",
    [
        "ssl-ca=/etc/ca.pem",
        "sslmode=require",
        "charset=latin1",
        "ssl_verify_identity=true",
        "ssl_ca=/nonexistent/ca.pem",
        "ssl_ca=SELF&ssl_cert=SELF",
        "ssl_ca=SELF&ssl_verify_identity=maybe",
        "password=topsecret",
    ],
)
def test_unknown_or_incomplete_database_options_are_refused(query: str) -> None:
    """A dropped ``ssl_ca`` would mean plain text where TLS was asked for: refuse, naming it."""
    url = f"mysql://app@db/shop?{query.replace('SELF', __file__)}"
    with pytest.raises(SettingsError, match="ORDERS_DATABASE_URL") as refused:
        Settings.from_env({"ORDERS_DATABASE_URL": url})
    assert "topsecret" not in str(refused.value)


def test_password_variables_are_masked_by_name() -> None:
    settings = Settings.from_env(
        {"ORDERS_DATABASE_PASSWORD": "pw1", "ORDERS_REDIS_PASSWORD": "pw2"}
    )
    shown = settings.redacted()
    assert shown["ORDERS_DATABASE_PASSWORD"] == shown["ORDERS_REDIS_PASSWORD"] == "***"


def test_a_setting_is_declared_once_on_its_field() -> None:
    """SETTINGS is read back from the fields: each has its variable, a default that parses and a
    type its parser returns, so a field cannot exist without a declaration or the reverse."""
    settings = Settings.from_env({})
    for setting in SETTINGS:
        assert setting.env == f"ORDERS_{setting.field.upper()}"
        parsed = setting.parse(setting.default)
        assert type(getattr(settings, setting.field)) is type(parsed), setting.field
    assert len({setting.env for setting in SETTINGS}) == len(SETTINGS)


def test_every_secret_setting_stays_out_of_the_repr() -> None:
    secrets = [setting for setting in SETTINGS if setting.secret]
    assert {setting.field for setting in secrets} >= {"database_password", "redis_password"}
    shown = repr(Settings.from_env({"ORDERS_DATABASE_PASSWORD": "pw-in-repr?"}))
    assert all(f"{setting.field}=" not in shown for setting in secrets)
    assert "pw-in-repr?" not in shown
