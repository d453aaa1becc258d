"""Small helpers shared by the repositories."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands datetimes back naive; everything we write is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.timezone.utc)


def row_dict(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    for key, value in data.items():
        if isinstance(value, dt.datetime):
            data[key] = as_utc(value)
    return data


def insert_ignoring_conflicts(conn: AsyncConnection, table: Table, index_elements: list[str]) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING in the connection's dialect."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=index_elements)


def upsert(conn: AsyncConnection, table: Table, index_elements: list[str], update: list[str]) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE of the named columns, in the connection's dialect."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table)
    return stmt.on_conflict_do_update(
        index_elements=index_elements, set_={col: stmt.excluded[col] for col in update}
    )
