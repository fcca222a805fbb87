"""GTID states of both dialects (service/invalidation/gtid.py and the GTID reads of
mysql_source.py). MariaDB's answers are the suite's own server's; MySQL's dialect cannot run
here, so its answers below were recorded from MySQL 8.4 (``SHOW BINARY LOG STATUS``,
``@@GLOBAL.gtid_executed``, a Gtid event's ``uuid:gno`` as mysql-replication reads it)."""

from __future__ import annotations

import pytest

from service.invalidation import gtid
from service.invalidation.mysql_source import GTID_STATE_STATEMENTS, ServerInfo, status_gtid

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "8c1b5b6e-2f4d-11ef-a1b0-0242ac120003"

# MySQL 8.4, `SHOW BINARY LOG STATUS` on a primary with gtid_mode=ON (two sources in its
# history after a failover): File, Position, Binlog_Do_DB, Binlog_Ignore_DB, Executed_Gtid_Set.
MYSQL_STATUS_ROW = ("binlog.000003", 1157, "", "", f"{U1}:1-57,\n{U2}:1-12:14-20")
# The same server with gtid_mode=OFF.
MYSQL_STATUS_ROW_OFF = ("binlog.000003", 1157, "", "", "")


def mysql(gtid_mode: str) -> ServerInfo:
    return ServerInfo("mysql", (8, 4, 3), "8.4.3", 1, {"gtid_mode": gtid_mode}, U1)


def test_gtids_are_on_for_mariadb_always_and_for_mysql_only_with_gtid_mode_on() -> None:
    assert gtid.gtids_on("mariadb", {})
    assert gtid.gtids_on("mysql", {"gtid_mode": "ON"})
    for mode in ("OFF", "OFF_PERMISSIVE", "ON_PERMISSIVE", ""):
        assert not gtid.gtids_on("mysql", {"gtid_mode": mode})


def test_mariadb_states_merge_per_domain() -> None:
    assert gtid.merge("mariadb", "", "0-1-1") == "0-1-1"
    assert gtid.merge("mariadb", "0-1-5", "0-2-6") == "0-2-6"
    assert gtid.merge("mariadb", "1-7-3,0-1-5", "0-1-6") == "0-1-6,1-7-3"
    with pytest.raises(gtid.GtidError, match="domain-server-seq"):
        gtid.merge("mariadb", "0-1-5", "u:5")


def test_a_mariadb_state_contains_ours_when_every_domain_is_as_far() -> None:
    assert gtid.missing("mariadb", "0-1-7", "0-1-7") is None
    assert gtid.missing("mariadb", "0-3-9", "0-1-7") is None  # promoted replica went on
    assert gtid.missing("mariadb", "0-1-7,1-2-4", "0-1-7") is None
    assert gtid.missing("mariadb", "0-1-6", "0-1-7") == "0-1-7"  # behind: lost transactions
    assert gtid.missing("mariadb", "0-3-7", "0-1-7") == "0-1-7"  # same seq, another server
    assert gtid.missing("mariadb", "0-1-9", "0-1-7,1-2-4") == "1-2-4"  # a domain it never had
    assert gtid.missing("mariadb", "", "0-1-7") == "0-1-7"  # RESET MASTER


def test_mysql_sets_parse_merge_and_print_as_the_server_does() -> None:
    executed = MYSQL_STATUS_ROW[4]
    parsed = gtid.mysql_set(executed)
    assert parsed == {U1: ((1, 57),), U2: ((1, 12), (14, 20))}
    state = status_gtid(mysql("ON"), MYSQL_STATUS_ROW)
    assert state == f"{U1}:1-57,{U2}:1-12:14-20"
    assert gtid.merge("mysql", state, f"{U2}:13") == f"{U1}:1-57,{U2}:1-20"
    assert gtid.merge("mysql", state, f"{U1.upper()}:58") == f"{U1}:1-58,{U2}:1-12:14-20"
    tagged = gtid.merge("mysql", state, f"{U1}:audit:1")  # 8.4 tagged GTIDs
    assert gtid.mysql_set(tagged)[f"{U1}:audit"] == ((1, 1),)
    with pytest.raises(gtid.GtidError):
        gtid.mysql_set(f"{U1}:5-3")


def test_a_mysql_set_contains_ours_when_it_includes_it() -> None:
    state = MYSQL_STATUS_ROW[4]
    assert gtid.missing("mysql", state, f"{U1}:1-57") is None
    assert gtid.missing("mysql", state, f"{U1}:1-20,{U2}:3-9") is None
    assert gtid.missing("mysql", state, f"{U2}:13") == f"{U2}:13"  # a hole: not executed there
    assert gtid.missing("mysql", state, f"{U1}:1-58") == f"{U1}:1-58"
    assert gtid.missing("mysql", "", f"{U1}:1") == f"{U1}:1"


def test_mysql_positions_carry_the_executed_set_only_with_gtid_mode_on() -> None:
    assert status_gtid(mysql("OFF"), MYSQL_STATUS_ROW_OFF) == ""
    assert status_gtid(mysql("OFF"), MYSQL_STATUS_ROW) == ""
    assert status_gtid(mysql("ON"), ("binlog.000001", 4)) == ""  # a row without the column
    assert set(GTID_STATE_STATEMENTS) == {"mariadb", "mysql"}
    assert "gtid_executed" in GTID_STATE_STATEMENTS["mysql"]
    assert "gtid_binlog_pos" in GTID_STATE_STATEMENTS["mariadb"]
