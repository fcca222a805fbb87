"""How a setting is declared: a ``Settings`` field whose metadata carries its variable's default,
parser, help line and secrecy, so each setting is spelled once (its field) and the table that
``orders-service config`` prints and the docs show is read back from the fields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar, cast

T = TypeVar("T")

_KEY = "orders.setting"


@dataclass(frozen=True)
class Setting:
    """One environment variable: its field, default, parser and the help line the docs show."""

    field: str
    default: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False

    @property
    def env(self) -> str:
        return f"ORDERS_{self.field.upper()}"


def setting(default: str, parse: Callable[[str], T], help: str, *, secret: bool = False) -> T:
    """Declare a ``Settings`` field read from ``ORDERS_<FIELD>``; a secret stays out of repr."""
    declared = Setting("", default, parse, help, secret)
    return cast(T, field(repr=not secret, metadata={_KEY: declared}))


def declarations(cls: type) -> tuple[Setting, ...]:
    """Every setting declared on the dataclass ``cls``, in field order, named after its field."""
    return tuple(replace(f.metadata[_KEY], field=f.name) for f in fields(cls) if _KEY in f.metadata)
