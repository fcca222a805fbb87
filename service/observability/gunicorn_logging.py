"""gunicorn's own log lines (boot, worker exits, timeouts) in the service's format.

Set ``logger_class = "service.observability.gunicorn_logging.GunicornLogger"`` in the gunicorn
config: gunicorn's error log then goes through the root logger that ``logging.configure`` sets up,
so a container's stdout holds one format (JSON lines) only. The access log stays off: the request
hooks write one richer line per request.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from service import config
from service.observability import logging as service_logging


class GunicornLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger with its error log handed to the configured root logger."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if not service_logging.is_configured():
            service_logging.configure(config.load())
        for handler in list(self.error_log.handlers):
            self.error_log.removeHandler(handler)
        self.error_log.propagate = True
