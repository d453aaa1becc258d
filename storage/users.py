"""Users, personas and budget settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update

from storage.db import Database
from storage.schema import personas, user_budget_settings, users
from storage.util import insert_ignoring_conflicts, row_dict, upsert, utcnow


class UserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # users
    async def create_user(self, user_id: str, *, display_name: str = "", phone_number: str | None = None,
                          time_zone: str = "UTC", if_absent: bool = False) -> dict[str, Any]:
        """Insert a user; with `if_absent`, a user already there (another worker's start-up) is left as it is."""
        values = dict(id=user_id, display_name=display_name, phone_number=phone_number,
                      time_zone=time_zone, budget_version=0, created_at=utcnow())
        async with self.db.begin() as conn:
            stmt = insert_ignoring_conflicts(conn, users, ["id"]) if if_absent else insert(users)
            await conn.execute(stmt.values(**values))
        return values

    async def get_user(self, user_id: str) -> dict[str, Any] | None:
        return await self._one(select(users).where(users.c.id == user_id))

    async def user_by_phone(self, phone_number: str) -> dict[str, Any] | None:
        return await self._one(select(users).where(users.c.phone_number == phone_number))

    async def list_users(self) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            rows = await conn.execute(select(users).order_by(users.c.created_at))
        return [row_dict(r) for r in rows]

    async def update_user(self, user_id: str, **values: Any) -> dict[str, Any] | None:
        if values:
            async with self.db.begin() as conn:
                await conn.execute(update(users).where(users.c.id == user_id).values(**values))
        return await self.get_user(user_id)

    # personas
    async def upsert_persona(self, persona: dict[str, Any]) -> None:
        values = {"created_at": utcnow(), **persona}
        columns = [c for c in values if c not in ("id", "created_at")]
        async with self.db.begin() as conn:
            await conn.execute(upsert(conn, personas, ["id"], columns).values(**values))

    async def get_persona(self, persona_id: str) -> dict[str, Any] | None:
        return await self._one(select(personas).where(personas.c.id == persona_id))

    async def persona_by_phone(self, phone_number: str) -> dict[str, Any] | None:
        return await self._one(select(personas).where(personas.c.phone_number == phone_number))

    async def list_personas(self) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            rows = await conn.execute(select(personas).order_by(personas.c.name))
        return [row_dict(r) for r in rows]

    # budget settings
    async def get_budget(self, user_id: str) -> dict[str, Any] | None:
        return await self._one(select(user_budget_settings).where(user_budget_settings.c.user_id == user_id))

    async def save_budget(self, user_id: str, values: dict[str, Any]) -> None:
        row = {"user_id": user_id, "updated_at": utcnow(), **values}
        async with self.db.begin() as conn:
            await conn.execute(
                upsert(conn, user_budget_settings, ["user_id"], [c for c in row if c != "user_id"]).values(**row)
            )

    async def _one(self, stmt: Any) -> dict[str, Any] | None:
        async with self.db.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return row_dict(row) if row else None
