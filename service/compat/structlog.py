"""The private part of structlog that service.observability.logging relies on.

``structlog.get_logger(logger=...)`` hands a ``logger`` keyword to ``wrap_logger``'s own
``logger`` parameter, so a logger named by a ``logger`` key cannot be had through the public API.
``BoundLoggerLazyProxy`` (``structlog._config``) takes the initial values directly and still
resolves the configuration on first use, so module-level loggers follow ``configure()``.
tests/unit/test_compat_structlog.py checks its signature and that behaviour; pyproject.toml holds
structlog to the release series tested (``TESTED``).
"""

from __future__ import annotations

from typing import cast

from structlog._config import BoundLoggerLazyProxy
from structlog.typing import FilteringBoundLogger

TESTED = "26.1"


def lazy_logger(name: str) -> FilteringBoundLogger:
    """A logger whose lines carry ``logger=name``, configured when first used."""
    proxy = BoundLoggerLazyProxy(None, initial_values={"logger": name}, logger_factory_args=())
    return cast(FilteringBoundLogger, proxy)
