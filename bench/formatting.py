"""The numbers of a report as text: labels of the systems, ratios, Markdown cells and tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

SYSTEMS = ("floor", "peer", "service", "service_redis", "service_auth")
LABELS = {
    "floor": "Flask floor (fixed bytes)",
    "peer": "Flask-Caching peer (RedisCache)",
    "service": "orders-service (as shipped)",
    "service_redis": "orders-service, ORDERS_NEAR_CACHE=false (every hit from Redis)",
    "service_auth": "orders-service, bearer-token auth on (one RS256 token, cached verification)",
}


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return round(a / b, 3)


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return [*lines, ""]
