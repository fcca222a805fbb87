"""What a statement logged as text (a QueryEvent) means for cached rows: DDL, TRUNCATE, and DML
that a session logged as a statement.

Read as the server reads it, and on the safe side where the text could mean more than one thing:

- Table names are compared as the server's ``lower_case_table_names`` says (``fold_case``: 1 and
  2 compare names in lower case, so ``TRUNCATE TABLE Orders`` is the orders table there).
- A table DDL names tables in many places (``ALTER TABLE arch EXCHANGE PARTITION p0 WITH TABLE
  orders``, ``ALTER TABLE orders_new RENAME TO orders``, ``CREATE TABLE t AS SELECT ... FROM``):
  every name the statement mentions is reset, not only the first one. A word that is no table
  costs an unneeded reset of nothing cached.
- Trigger DDL names no table in ``DROP TRIGGER``: the schema is reset (the counting triggers keep
  the block counts, so losing or gaining one changes what the counts mean).
- Every statement that can change rows without row events, or change what the triggers count, is
  a reset plus a recount (``recount_after``); DML logged as a statement fired the triggers, so it
  is a reset only. A statement not recognised at all is a schema-wide reset and a recount.
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
# Statements that change no table rows and no trigger: accounts, routines, views, statistics,
# secondary indexes (a CREATE INDEX cannot drop rows; MariaDB's ALTER IGNORE ... ADD UNIQUE can,
# and it is an ALTER TABLE, reset below).
_NO_ROW_EFFECT = re.compile(
    r"^(GRANT|REVOKE|FLUSH|ANALYZE|SET\s+PASSWORD|SET\s+DEFAULT\s+ROLE|"
    r"(CREATE|DROP|ALTER|RENAME)\s+(USER|ROLE)|"
    r"(CREATE|ALTER|DROP)\s+(OR\s+REPLACE\s+)?(DEFINER\s*=\s*\S+\s+)?"
    r"(SQL\s+SECURITY\s+\w+\s+)?(ALGORITHM\s*=\s*\w+\s+)?"
    r"(PROCEDURE|FUNCTION|EVENT|VIEW)|"
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
    r"|REPAIR(?:\s+NO_WRITE_TO_BINLOG|\s+LOCAL)?\s+TABLE)\s",
    re.IGNORECASE,
)
_TRIGGER_DDL = re.compile(
    r"^(?:CREATE|DROP)\s+(?:OR\s+REPLACE\s+)?(?:DEFINER\s*=\s*\S+\s+)?TRIGGER\b"
    rf"(?:\s+IF\s+(?:NOT\s+)?EXISTS)?\s+(?P<name>{_QNAME})",
    re.IGNORECASE,
)
_CREATE_TABLE = re.compile(r"^CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+)?TABLE\b", re.I)
_SCHEMA_DDL = re.compile(
    rf"^(?:CREATE|DROP|ALTER)\s+(?:DATABASE|SCHEMA)(?:\s+IF\s+(?:NOT\s+)?EXISTS)?\s+(?P<name>{_IDENT})",
    re.IGNORECASE,
)
# DML logged as a statement: the triggers ran on the server, so the block counts followed it.
_DML = re.compile(
    r"^(?:WITH\b.*?\)\s*)?(INSERT|REPLACE|UPDATE|DELETE)\b", re.IGNORECASE | re.DOTALL
)
_QUALIFIED = re.compile(rf"({_IDENT})\s*\.\s*{_IDENT}")
_NAMES = re.compile(_QNAME)
# Words of the DDL grammar that are never a table when unquoted (a `TABLE` in backquotes is).
_KEYWORDS = frozenset(
    [
        "ADD",
        "AFTER",
        "ALGORITHM",
        "ALTER",
        "AND",
        "AS",
        "BY",
        "CASCADE",
        "CHANGE",
        "CHARACTER",
        "CHARSET",
        "CHECK",
        "COALESCE",
        "COLLATE",
        "COLUMN",
        "COMMENT",
        "CONSTRAINT",
        "COPY",
        "CREATE",
        "DEFAULT",
        "DELETE",
        "DROP",
        "ENGINE",
        "EXCHANGE",
        "EXISTS",
        "FIRST",
        "FOREIGN",
        "FROM",
        "HASH",
        "IF",
        "IGNORE",
        "IN",
        "INDEX",
        "INPLACE",
        "INSTANT",
        "INTO",
        "KEY",
        "LESS",
        "LIKE",
        "LIST",
        "LOCAL",
        "LOCK",
        "MAXVALUE",
        "MODIFY",
        "NO_WRITE_TO_BINLOG",
        "NOT",
        "NULL",
        "ON",
        "ONLINE",
        "OPTIMIZE",
        "OR",
        "PARTITION",
        "PARTITIONS",
        "PRIMARY",
        "RANGE",
        "REBUILD",
        "REFERENCES",
        "REMOVE",
        "RENAME",
        "REORGANIZE",
        "REPAIR",
        "REPLACE",
        "RESTRICT",
        "SELECT",
        "SET",
        "TABLE",
        "TABLES",
        "TEMPORARY",
        "THAN",
        "TO",
        "TRUNCATE",
        "UNIQUE",
        "UPDATE",
        "VALIDATION",
        "VALUES",
        "WHERE",
        "WITH",
        "WITHOUT",
        "BIGINT",
        "INT",
        "TEXT",
        "VARCHAR",
        "CHAR",
        "DECIMAL",
        "DATETIME",
        "UNSIGNED",
        "AUTO_INCREMENT",
    ]
)
_STRINGS = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"")
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


def _text(query: str) -> str:
    return _COMMENTS.sub(" ", query).strip().rstrip(";").strip()


def recount_after(statement: str) -> bool:
    """Whether the block counts may no longer follow the rows after ``statement`` (a reset):
    everything but DML logged as a statement (its triggers ran) and an XA outcome."""
    text = _text(statement)
    return not (_DML.match(text) or _XA_FINISH.match(text))


def statement_changes(
    query: str, schema: str | None, *, fold_case: bool = False
) -> list[RowChange] | None:
    """What a statement logged as text means for cached rows.

    Returns None for transaction control, [] for statements that change no rows, and resets
    for everything else: per table for table DDL (every table it names), per schema for
    trigger and database DDL, and a schema-wide reset for any statement not recognised (the
    safe side: e.g. DML logged as a statement because someone set binlog_format=MIXED).
    ``fold_case`` (``lower_case_table_names`` 1 or 2) gives schema and table names in lower
    case, as the server compares them.
    """
    if fold_case and schema is not None:
        schema = schema.lower()
    text = _text(query)
    if TX_CONTROL.match(text) or TX_END.match(text) or SAVEPOINT.match(text):
        return None
    if _XA_FINISH.match(text):
        # An XA transaction's rows were logged at XA PREPARE; its outcome arrives here.
        return [RowChange("reset", None, None, statement=query)]
    if _NO_ROW_EFFECT.match(text):
        return []
    if _TABLE_DDL.match(text):
        return _table_resets(text, query, schema, fold_case)
    if (resets := _schema_resets(text, query, schema, fold_case)) is not None:
        return resets
    # DML logged as text (binlog_format=STATEMENT or MIXED): the session's default schema is
    # not where it writes when it names tables qualified (UPDATE shop.orders ... from another
    # database), so every schema the text names is reset too.
    named = {_fold(_unquote(found), fold_case) for found in _QUALIFIED.findall(text)} - {schema}
    return [RowChange("reset", schema, None, statement=query)] + [
        RowChange("reset", other, None, statement=query) for other in sorted(named, key=str)
    ]


def _table_resets(text: str, query: str, schema: str | None, fold_case: bool) -> list[RowChange]:
    """One reset per table name the DDL mentions anywhere (string literals aside); CREATE TABLE
    changes only the table it creates (``LIKE orders`` and ``SELECT ... FROM orders`` read it),
    so a shadow table of an online schema change does not reset and recount orders."""
    seen: set[tuple[str | None, str]] = set()
    changes: list[RowChange] = []
    creates = _CREATE_TABLE.match(text) is not None
    for qname in _NAMES.findall(_STRINGS.sub(" ", text)):
        if qname.upper() in _KEYWORDS or qname.isdigit():
            continue
        if creates and changes:
            break
        table_schema, table = _split_qname(qname, schema)
        key = (_fold(table_schema, fold_case), _fold(table, fold_case) or table)
        if key not in seen:
            seen.add(key)
            changes.append(RowChange("reset", key[0], key[1], statement=query))
    return changes


def _schema_resets(
    text: str, query: str, schema: str | None, fold_case: bool
) -> list[RowChange] | None:
    """Trigger DDL resets the trigger's schema (DROP TRIGGER names no table), database DDL
    the database; None for any other statement."""
    if match := _TRIGGER_DDL.match(text):
        trigger_schema, _ = _split_qname(match["name"], schema)
        return [RowChange("reset", _fold(trigger_schema, fold_case), None, statement=query)]
    if match := _SCHEMA_DDL.match(text):
        name = _fold(_unquote(match["name"]), fold_case)
        return [RowChange("reset", name, None, statement=query)]
    return None


def _fold(name: str | None, fold_case: bool) -> str | None:
    return name.lower() if fold_case and name is not None else name
