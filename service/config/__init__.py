"""Configuration: ``Settings`` from ``ORDERS_*`` variables, each declared once as a field.

- ``declare``: how a setting is declared (``setting()``) and read back (``declarations()``);
- ``parsers``: the value parsers; ``urls``: MySQL and Redis URLs with their TLS options;
- ``storage``, ``serving``, ``auth``, ``processes``: the settings of each concern;
- ``settings``: ``Settings`` (all of them), ``SETTINGS`` (their declarations) and ``load()``.
"""

from service.config.declare import Setting
from service.config.errors import SettingsError
from service.config.parsers import AUTH_ALGORITHMS
from service.config.settings import SETTINGS, Settings, load
from service.config.urls import DatabaseURL, RedisURL, is_secret_name

__all__ = ["AUTH_ALGORITHMS", "SETTINGS", "DatabaseURL", "RedisURL", "Setting", "Settings"]
__all__ += ["SettingsError", "is_secret_name", "load"]
