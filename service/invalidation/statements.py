"""What a statement logged as text (a QueryEvent) means for cached rows: DDL, TRUNCATE, and DML
that a session logged as a statement.
"""

from __future__ import annotations

import re

from service.invalidation.changes import RowChange

_IDENT = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_QNAME = rf"{_IDENT}(?:\s*\.\s*{_IDENT})?"
TX_CONTROL = re.compile(r"^(BEGIN|XA\s+(START|BEGIN|END))\b", re.IGNORECASE)
TX_END = re.compile(r"^(COMMIT|ROLLBACK|XA\s+PREPARE)\b", re.IGNORECASE)
_XA_FINISH = re.compile(r"^XA\s+(COMMIT|ROLLBACK)\b", re.IGNORECASE)
SAVEPOINT = re.compile(r"^(SAVEPOINT|RELEASE\s+SAVEPOINT|ROLLBACK\s+TO)\b", re.IGNORECASE)
# Statements that change no table rows: accounts, routines, triggers, views, statistics.
_NO_ROW_EFFECT = re.compile(
    r"^(GRANT|REVOKE|FLUSH|ANALYZE|SET\s+PASSWORD|SET\s+DEFAULT\s+ROLE|"
    r"(CREATE|DROP|ALTER|RENAME)\s+(USER|ROLE)|"
    r"(CREATE|ALTER|DROP)\s+(OR\s+REPLACE\s+)?(DEFINER\s*=\s*\S+\s+)?"
    r"(SQL\s+SECURITY\s+\w+\s+)?(ALGORITHM\s*=\s*\w+\s+)?"
    r"(TRIGGER|PROCEDURE|FUNCTION|EVENT|VIEW)|"
    r"CREATE\s+(OR\s+REPLACE\s+)?(UNIQUE\s+|FULLTEXT\s+|SPATIAL\s+)?INDEX|DROP\s+INDEX)\b",
    re.IGNORECASE,
)
_TABLE_DDL = re.compile(
    r"^(?:TRUNCATE(?:\s+TABLE)?"
    r"|ALTER\s+(?:ONLINE\s+)?(?:IGNORE\s+)?TABLE(?:\s+IF\s+EXISTS)?"
    r"|DROP\s+(?:TEMPORARY\s+)?TABLES?(?:\s+IF\s+EXISTS)?"
    r"|CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+)?TABLE(?:\s+IF\s+NOT\s+EXISTS)?"
    r"|RENAME\s+TABLES?"
    r"|OPTIMIZE(?:\s+NO_WRITE_TO_BINLOG|\s+LOCAL)?\s+TABLE"
    r"|REPAIR(?:\s+NO_WRITE_TO_BINLOG|\s+LOCAL)?\s+TABLE)"
    rf"\s+(?P<names>{_QNAME}(?:\s*(?:,|\bTO\b)\s*{_QNAME})*)",
    re.IGNORECASE,
)
_SCHEMA_DDL = re.compile(
    rf"^(?:CREATE|DROP|ALTER)\s+(?:DATABASE|SCHEMA)(?:\s+IF\s+(?:NOT\s+)?EXISTS)?\s+(?P<name>{_IDENT})",
    re.IGNORECASE,
)
_QUALIFIED = re.compile(rf"({_IDENT})\s*\.\s*{_IDENT}")
_COMMENTS = re.compile(r"/\*(?!!).*?\*/|^\s*(?:--|#)[^\n]*$", re.DOTALL | re.MULTILINE)


def _unquote(ident: str) -> str:
    ident = ident.strip()
    if ident.startswith("`") and ident.endswith("`"):
        return ident[1:-1].replace("``", "`")
    return ident


def _split_qname(qname: str, default_schema: str | None) -> tuple[str | None, str]:
    parts = re.findall(_IDENT, qname)
    if len(parts) == 2:
        return _unquote(parts[0]), _unquote(parts[1])
    return default_schema, _unquote(parts[0])


def statement_changes(query: str, schema: str | None) -> list[RowChange] | None:
    """What a statement logged as text means for cached rows.

    Returns None for transaction control, [] for statements that change no rows, and resets
    for everything else: per table for table DDL, per schema for database DDL, and a
    schema-wide reset for any statement not recognised (the safe side: e.g. DML logged as a
    statement because someone set binlog_format=MIXED).
    """
    text = _COMMENTS.sub(" ", query).strip().rstrip(";").strip()
    if TX_CONTROL.match(text) or TX_END.match(text) or SAVEPOINT.match(text):
        return None
    if _XA_FINISH.match(text):
        # An XA transaction's rows were logged at XA PREPARE; its outcome arrives here.
        return [RowChange("reset", None, None, statement=query)]
    if _NO_ROW_EFFECT.match(text):
        return []
    if match := _TABLE_DDL.match(text):
        names = re.split(r"\s*,\s*|\s+TO\s+", match["names"].strip(), flags=re.IGNORECASE)
        changes = []
        for qname in names:
            table_schema, table = _split_qname(qname, schema)
            changes.append(RowChange("reset", table_schema, table, statement=query))
        return changes
    if match := _SCHEMA_DDL.match(text):
        return [RowChange("reset", _unquote(match["name"]), None, statement=query)]
    # DML logged as text (binlog_format=STATEMENT or MIXED): the session's default schema is
    # not where it writes when it names tables qualified (UPDATE shop.orders ... from another
    # database), so every schema the text names is reset too.
    named = {_unquote(found) for found in _QUALIFIED.findall(text)} - {schema}
    return [RowChange("reset", schema, None, statement=query)] + [
        RowChange("reset", other, None, statement=query) for other in sorted(named, key=str)
    ]
