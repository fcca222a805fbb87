"""Settings: one frozen, typed object built from ``ORDERS_*`` environment variables at start-up.

Every setting is one field of a concern's settings class (service/config/storage.py, serving.py,
auth.py, processes.py) whose declaration carries its variable, default and help text;
``SETTINGS`` reads them back, and the docs' configuration table and ``orders-service config``
come from it. An invalid value is refused with a message naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from service.config.auth import AuthSettings
from service.config.declare import Setting, declarations
from service.config.errors import SettingsError
from service.config.processes import InspectorSettings, InvalidatorSettings
from service.config.serving import ObservabilitySettings, ServerSettings
from service.config.storage import CacheSettings, DatabaseSettings
from service.config.urls import DatabaseURL, RedisURL, is_secret_name, redact_url, url_secrets


# The fields come from the bases, last base first: that is the order of SETTINGS and the docs.
@dataclass(frozen=True)
class Settings(
    InspectorSettings,
    InvalidatorSettings,
    ObservabilitySettings,
    AuthSettings,
    ServerSettings,
    CacheSettings,
    DatabaseSettings,
):
    """The service's whole configuration, validated. Build it with ``Settings.from_env()``."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Parse every ``ORDERS_*`` variable; keyword overrides (tests) win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            if setting.field in overrides:
                values[setting.field] = overrides.pop(setting.field)
                continue
            raw = env.get(setting.env, setting.default)
            try:
                values[setting.field] = setting.parse(raw)
            except ValueError as exc:
                shown = "(hidden)" if setting.secret else repr(raw)
                raise SettingsError(f"{setting.env}={shown} is invalid: {exc}") from None
        if overrides:
            raise TypeError(f"unknown settings: {', '.join(sorted(overrides))}")
        if values["admin_port"] and values["admin_port"] == values["port"]:
            raise SettingsError("ORDERS_ADMIN_PORT must differ from ORDERS_PORT (or be empty)")
        return cls(**values)._with_passwords()

    def _with_passwords(self) -> Settings:
        """Fold the separate password variables into the URLs they override."""
        database_url, redis_url = self.database_url, self.redis_url
        if self.database_password:
            database_url = replace(database_url, password=self.database_password)
        if self.redis_password:
            redis_url = replace(redis_url, password=self.redis_password)
        if self.redis_sentinel_password:
            redis_url = replace(redis_url, sentinel_password=self.redis_sentinel_password)
        replicas = self.database_replica_urls
        if self.database_replica_password:
            replicas = tuple(
                replace(url, password=self.database_replica_password) for url in replicas
            )
        return replace(
            self, database_url=database_url, redis_url=redis_url, database_replica_urls=replicas
        )

    def secret_values(self) -> tuple[str, ...]:
        """Every password the settings hold, so logging can scrub them from any line."""
        found = [
            self.database_url.password,
            *(replica.password for replica in self.database_replica_urls),
            *self.redis_url.secrets(),
            *url_secrets(self.auth_jwks_url),
        ]
        return tuple(sorted({value for value in found if value}, key=len, reverse=True))

    def redacted(self) -> dict[str, Any]:
        """The settings as a log-safe dict: URLs without passwords, passwords as ``***``."""
        shown: dict[str, Any] = {}
        for setting in SETTINGS:
            value = getattr(self, setting.field)
            if isinstance(value, DatabaseURL | RedisURL):
                shown[setting.env] = value.redacted()
            elif isinstance(value, tuple) and all(isinstance(v, DatabaseURL) for v in value):
                shown[setting.env] = ",".join(url.redacted() for url in value)
            elif setting.secret or is_secret_name(setting.env):
                shown[setting.env] = "***" if value else ""
            elif isinstance(value, str) and "://" in value:  # any other URL, e.g. the JWKS one
                shown[setting.env] = redact_url(value)
            elif isinstance(value, tuple):
                shown[setting.env] = ",".join(value)
            else:
                shown[setting.env] = value
        return shown


SETTINGS: tuple[Setting, ...] = declarations(Settings)

_loaded: Settings | None = None


def load() -> Settings:
    """The process's settings from ``ORDERS_*``, parsed once: the gunicorn config, its logger and
    every worker's ``create_app`` (workers inherit the master's copy across fork) share them."""
    global _loaded  # noqa: PLW0603 - one parse per process is the point
    if _loaded is None:
        _loaded = Settings.from_env()
    return _loaded
