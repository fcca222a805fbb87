"""The environment `make run` leaves for the CLI: ``.run/orders.env`` in the checkout.

`make run` starts MariaDB on its own port, per-role users and a per-checkout Redis prefix; the
CLI's defaults (:3306, prefix ``orders``) point elsewhere. So `make run` writes the ``ORDERS_*``
values of its stack (as the migrate role, which may seed, recount and migrate) to this file, and
``orders-service`` reads it when it is there, below whatever the environment already sets.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

ENV_FILE = Path(".run") / "orders.env"


def parse(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (shell quoting allowed, ``export`` optional); only ``ORDERS_*`` keys."""
    found: dict[str, str] = {}
    for raw_line in text.splitlines():
        line = raw_line.strip().removeprefix("export ")
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, raw = line.split("=", 1)
        key = key.strip()
        if not key.startswith("ORDERS_"):
            continue
        words = shlex.split(raw, comments=False, posix=True)
        found[key] = words[0] if words else ""
    return found


def found(directory: Path | None = None) -> Path | None:
    """The file under ``directory`` (default: the current one), or None."""
    path = (directory or Path.cwd()) / ENV_FILE
    return path if path.is_file() else None


def load(directory: Path | None = None) -> Path | None:
    """Read the file under ``directory`` (default: the current one) into ``os.environ`` without
    overriding what is set; returns its path, or None when there is none."""
    path = found(directory)
    if path is None:
        return None
    for key, value in parse(path.read_text()).items():
        os.environ.setdefault(key, value)
    return path
