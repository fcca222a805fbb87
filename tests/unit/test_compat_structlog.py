"""structlog's lazy proxy (service.compat.structlog) against the installed release: a logger made
before ``configure()`` follows it and carries its ``logger`` name. An upgrade that renames the
proxy, changes its parameters or resolves the configuration early fails here."""

from __future__ import annotations

import inspect

import structlog
from structlog._config import BoundLoggerLazyProxy
from structlog.testing import capture_logs

from service.compat import structlog as compat


def test_the_tested_release_is_installed() -> None:
    assert structlog.__version__.startswith(compat.TESTED + ".")


def test_the_proxy_takes_the_parameters_used() -> None:
    parameters = inspect.signature(BoundLoggerLazyProxy).parameters
    assert next(iter(parameters)) == "logger"
    assert {"initial_values", "logger_factory_args"} <= set(parameters)


def test_a_logger_made_before_configure_follows_it_and_carries_its_name() -> None:
    logger = compat.lazy_logger("orders.test")
    with capture_logs() as lines:  # configures structlog after the logger exists
        logger.info("hello", answer=42)
    assert lines == [{"logger": "orders.test", "event": "hello", "answer": 42, "log_level": "info"}]
