"""Table references: parsing ``schema.table`` config text, quoting, deterministic derived names."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # psycopg is imported when SQL is built, not when a DAG is parsed
    from psycopg import sql

# PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes; a silently truncated "__staging" name could
# collide with another table, so derived names are shortened deterministically instead.
MAX_IDENTIFIER_BYTES = 63


def suffixed_name(name: str, suffix: str) -> str:
    """``name + suffix``, shortened with a stable hash when it would exceed 63 bytes."""
    full = name + suffix
    if len(full.encode()) <= MAX_IDENTIFIER_BYTES:
        return full
    digest = "_" + hashlib.sha1(name.encode()).hexdigest()[:8]
    keep = name
    while len((keep + digest + suffix).encode()) > MAX_IDENTIFIER_BYTES:
        keep = keep[:-1]
    return keep + digest + suffix


def validate_identifier(value: str, what: str) -> str:
    """Check one identifier (any characters allowed, it is always quoted); return it."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what}: expected a non-empty name, got {value!r}")
    if "\x00" in value:
        raise ValueError(f"{what}: {value!r} contains a NUL character")
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"{what}: {value!r} is longer than {MAX_IDENTIFIER_BYTES} bytes (PostgreSQL would truncate it)")
    return value


def _split_dotted(text: str) -> list[str]:
    """Split on dots outside double quotes; quoted parts may contain dots and doubled quotes."""
    parts: list[str] = []
    buf: list[str] = []
    quoted_part = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"' and not buf and not quoted_part:
            end = i + 1
            chunk: list[str] = []
            while True:
                nxt = text.find('"', end)
                if nxt < 0:
                    raise ValueError(f"table {text!r}: unterminated double quote")
                chunk.append(text[end:nxt])
                if text.startswith('""', nxt):
                    chunk.append('"')
                    end = nxt + 2
                    continue
                break
            buf.append("".join(chunk))
            quoted_part = True
            i = nxt + 1
            if i < len(text) and text[i] != ".":
                raise ValueError(f"table {text!r}: unexpected text after a quoted name")
            continue
        if ch == ".":
            parts.append("".join(buf))
            buf, quoted_part = [], False
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


@dataclass(frozen=True)
class TableRef:
    """A table named by schema and table, always quoted when it goes into SQL.

    Names are taken literally (case-sensitive, any characters): ``raw.Orders`` is the table ``"Orders"``.
    Double quotes are only needed to put a dot inside a name: ``"my.schema"."t"``.
    """

    schema: str
    table: str

    def __post_init__(self) -> None:
        validate_identifier(self.schema, "schema")
        validate_identifier(self.table, "table")

    @classmethod
    def parse(cls, text: str, default_schema: str = "public") -> TableRef:
        """Parse ``"schema.table"`` or ``"table"`` (in ``default_schema``)."""
        if isinstance(text, TableRef):
            return text
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"table: expected 'schema.table' or 'table', got {text!r}")
        parts = _split_dotted(text.strip())
        if len(parts) == 1:
            return cls(default_schema, parts[0])
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        raise ValueError(f"table {text!r}: expected 'schema.table' or 'table' (quote names that contain dots)")

    def ident(self) -> sql.Composed:
        """The quoted ``"schema"."table"``."""
        from psycopg import sql

        return sql.Composed([sql.Identifier(self.schema), sql.SQL("."), sql.Identifier(self.table)])

    def with_suffix(self, suffix: str) -> TableRef:
        """The same schema, table name plus ``suffix`` (hash-shortened past 63 bytes)."""
        return TableRef(self.schema, suffixed_name(self.table, suffix))

    def with_name(self, table: str) -> TableRef:
        return TableRef(self.schema, table)

    @property
    def qualified(self) -> str:
        """Display form ``schema.table`` (for logs and the ledger, not for SQL)."""
        return f"{self.schema}.{self.table}"

    def __str__(self) -> str:
        return self.qualified
