"""GTID states, MariaDB's and MySQL's, merged and compared (pure; no I/O).

A binlog file:offset names a place in one server's log; a GTID state names a place in the
*history*, which every server of a replication topology shares (with ``log_slave_updates`` /
``log_replica_updates`` a replica logs the primary's transactions under their own GTIDs). So
a position that carries the GTID state can be resumed on a promoted replica, and "this server
has our history" is "its GTID state contains ours".

- MariaDB: ``domain-server-seq`` per replication domain (``0-1-105,1-7-3``); within a domain
  sequence numbers grow along the history (``gtid_strict_mode`` enforces it). A state contains
  another when it has every domain of it at a sequence number at least as high; whether that
  domain's exact GTID is in the server's binlog (and not a diverged one) is then checked by the
  server itself when the dump starts (``@slave_gtid_strict_mode=1``, error 1236 otherwise).
- MySQL: a GTID set, ``uuid:1-5:7,uuid2:1-3`` (8.4 adds tags, ``uuid:tag:1-5``); containment
  is set inclusion. This dialect cannot run on the machines the suite runs on: its parsing and
  merging are unit-tested against answers recorded from MySQL 8.4 (tests/unit/test_gtid.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

Flavor = Literal["mysql", "mariadb"]
Intervals = tuple[tuple[int, int], ...]

_MARIADB_GTID = re.compile(r"^(\d+)-(\d+)-(\d+)$")
_INTERVAL = re.compile(r"^(\d+)(?:-(\d+))?$")


class GtidError(ValueError):
    """A GTID or GTID state that does not parse (the message quotes it)."""


def gtids_on(flavor: Flavor, settings: Mapping[str, str]) -> bool:
    """Whether this server's positions can carry a GTID state: always on MariaDB (10.0+ logs
    GTIDs unconditionally), on MySQL only with ``gtid_mode=ON``."""
    if flavor == "mariadb":
        return True
    return settings.get("gtid_mode", "").upper() == "ON"


# ---- MariaDB ------------------------------------------------------------------------------


def mariadb_state(text: str) -> dict[int, tuple[int, int]]:
    """``d-s-n[,d-s-n...]`` as ``{domain: (server_id, seq_no)}``; '' is the empty state."""
    state: dict[int, tuple[int, int]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = _MARIADB_GTID.match(item)
        if match is None:
            raise GtidError(f"not a MariaDB GTID: {item!r} (expected domain-server-seq)")
        domain, server, seq = (int(group) for group in match.groups())
        state[domain] = (server, seq)
    return state


def _mariadb_text(state: Mapping[int, tuple[int, int]]) -> str:
    return ",".join(f"{d}-{state[d][0]}-{state[d][1]}" for d in sorted(state))


# ---- MySQL --------------------------------------------------------------------------------


def mysql_set(text: str) -> dict[str, Intervals]:
    """A GTID set as ``{source[:tag]: ((first, last), ...)}`` with intervals merged."""
    found: dict[str, list[tuple[int, int]]] = {}
    for item in filter(None, (part.strip() for part in text.replace("\n", "").split(","))):
        source, *parts = item.split(":")
        if not source or not parts:
            raise GtidError(f"not a MySQL GTID set member: {item!r} (expected uuid:1-5)")
        key = source.lower()
        for part in parts:
            match = _INTERVAL.match(part)
            if match is None:  # a tag (8.4): the intervals after it are uuid:tag's
                key = f"{source.lower()}:{part.lower()}"
                continue
            first = int(match.group(1))
            last = int(match.group(2) or first)
            if last < first:
                raise GtidError(f"empty GTID interval {part!r} in {item!r}")
            found.setdefault(key, []).append((first, last))
    return {key: _merged(intervals) for key, intervals in found.items()}


def _merged(intervals: list[tuple[int, int]]) -> Intervals:
    out: list[tuple[int, int]] = []
    for first, last in sorted(intervals):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return tuple(out)


def _mysql_text(gtids: Mapping[str, Intervals]) -> str:
    members = []
    for key in sorted(gtids):
        spans = ":".join(f"{a}" if a == b else f"{a}-{b}" for a, b in gtids[key])
        members.append(f"{key}:{spans}")
    return ",".join(members)


def _covers(outer: Intervals, inner: Intervals) -> bool:
    return all(any(a <= first and last <= b for a, b in outer) for first, last in inner)


# ---- both ---------------------------------------------------------------------------------


def merge(flavor: Flavor, state: str, gtid: str) -> str:
    """The state ``state`` after the transaction ``gtid`` committed (MariaDB ``d-s-n``, MySQL
    ``uuid:n`` or ``uuid:tag:n``)."""
    if flavor == "mariadb":
        current = mariadb_state(state)
        current.update(mariadb_state(gtid))
        return _mariadb_text(current)
    current_set = mysql_set(state)
    for key, spans in mysql_set(gtid).items():
        current_set[key] = _merged([*current_set.get(key, ()), *spans])
    return _mysql_text(current_set)


def missing(flavor: Flavor, server_state: str, ours: str) -> str | None:
    """What of ``ours`` the server's state lacks (None: it contains ours, as far as the state
    tells; MariaDB's server checks the exact GTIDs again when the dump starts)."""
    if flavor == "mariadb":
        theirs = mariadb_state(server_state)
        lacking = [
            f"{domain}-{server}-{seq}"
            for domain, (server, seq) in sorted(mariadb_state(ours).items())
            if domain not in theirs
            or theirs[domain][1] < seq
            or (theirs[domain][1] == seq and theirs[domain][0] != server)
        ]
        return ",".join(lacking) or None
    their_set = mysql_set(server_state)
    absent = {
        key: spans
        for key, spans in mysql_set(ours).items()
        if not _covers(their_set.get(key, ()), spans)
    }
    return _mysql_text(absent) or None
