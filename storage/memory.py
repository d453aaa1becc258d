"""Relationships and the memory tiers stored under them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, insert, select, update

from storage.db import Database
from storage.schema import call_summaries, memory_deletions, memory_facts, storylines
from storage.schema import user_persona_relationships as rels
from storage.util import insert_ignoring_conflicts, row_dict, upsert, utcnow


class MemoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_or_create_relationship(self, user_id: str, persona_id: str,
                                         default_type: str = "friend") -> dict[str, Any]:
        where = (rels.c.user_id == user_id) & (rels.c.persona_id == persona_id)
        async with self.db.connect() as conn:
            row = (await conn.execute(select(rels).where(where))).first()
        if row:
            return row_dict(row)
        now = utcnow()
        async with self.db.begin() as conn:
            # Two first calls at once must end up with one relationship.
            await conn.execute(insert_ignoring_conflicts(conn, rels, ["user_id", "persona_id"]).values(
                user_id=user_id, persona_id=persona_id, relationship_type=default_type,
                custom_system_prompt=None, memory_config={}, total_calls=0, total_seconds=0,
                created_at=now, updated_at=now))
            row = (await conn.execute(select(rels).where(where))).first()
        return row_dict(row)

    async def update_relationship(self, rel_id: int, **values: Any) -> None:
        async with self.db.begin() as conn:
            await conn.execute(update(rels).where(rels.c.id == rel_id).values(updated_at=utcnow(), **values))

    async def record_call(self, rel_id: int, seconds: int, at: dt.datetime) -> None:
        async with self.db.begin() as conn:
            await conn.execute(update(rels).where(rels.c.id == rel_id).values(
                total_calls=rels.c.total_calls + 1, total_seconds=rels.c.total_seconds + seconds,
                last_call_at=at, updated_at=utcnow()))

    # long-term facts
    async def facts(self, rel_id: int) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            rows = await conn.execute(select(memory_facts).where(memory_facts.c.relationship_id == rel_id)
                                      .order_by(memory_facts.c.category, memory_facts.c.updated_at, memory_facts.c.id))
        return [row_dict(r) for r in rows]

    async def set_fact(self, rel_id: int, category: str, key: str, value: str, source: str) -> None:
        now = utcnow()
        async with self.db.begin() as conn:
            await conn.execute(upsert(conn, memory_facts, ["relationship_id", "category", "key"],
                                      ["value", "source", "updated_at"]).values(
                relationship_id=rel_id, category=category, key=key, value=value, source=source,
                created_at=now, updated_at=now))

    async def delete_facts(self, rel_id: int, key: str | None = None, category: str | None = None) -> int:
        stmt = delete(memory_facts).where(memory_facts.c.relationship_id == rel_id)
        if key is not None:
            stmt = stmt.where(memory_facts.c.key == key)
        if category is not None:
            stmt = stmt.where(memory_facts.c.category == category)
        async with self.db.begin() as conn:
            deleted = (await conn.execute(stmt)).rowcount
            await conn.execute(insert(memory_deletions).values(
                relationship_id=rel_id, category=category, key=key, deleted_at=utcnow()))
            return deleted

    async def deletions_since(self, rel_id: int, since: dt.datetime) -> list[dict[str, Any]]:
        """What the user deleted after `since`: (category or None, key or None) rows."""
        async with self.db.connect() as conn:
            rows = await conn.execute(select(memory_deletions).where(
                (memory_deletions.c.relationship_id == rel_id) & (memory_deletions.c.deleted_at >= since)))
        return [row_dict(r) for r in rows]

    # recent context
    async def add_summary(self, rel_id: int, call_id: str | None, summary: str, key_topics: list[str],
                          outcome: str) -> None:
        async with self.db.begin() as conn:
            await conn.execute(insert(call_summaries).values(
                relationship_id=rel_id, call_id=call_id, summary=summary, key_topics=key_topics,
                outcome=outcome, created_at=utcnow()))

    async def update_summary(self, rel_id: int, call_id: str, **values: Any) -> int:
        async with self.db.begin() as conn:
            return (await conn.execute(update(call_summaries).where(
                (call_summaries.c.relationship_id == rel_id) & (call_summaries.c.call_id == call_id)
            ).values(**values))).rowcount

    async def recent_summaries(self, rel_id: int, limit: int = 10) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            rows = await conn.execute(select(call_summaries).where(call_summaries.c.relationship_id == rel_id)
                                      .order_by(call_summaries.c.created_at.desc(), call_summaries.c.id.desc())
                                      .limit(limit))
        return [row_dict(r) for r in rows]

    async def set_storyline(self, rel_id: int, topic: str, status: str, details: str) -> None:
        async with self.db.begin() as conn:
            await conn.execute(upsert(conn, storylines, ["relationship_id", "topic"],
                                      ["status", "details", "updated_at"]).values(
                relationship_id=rel_id, topic=topic, status=status, details=details, updated_at=utcnow()))

    async def storylines(self, rel_id: int) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            rows = await conn.execute(select(storylines).where(storylines.c.relationship_id == rel_id)
                                      .order_by(storylines.c.updated_at.desc(), storylines.c.id.desc()))
        return [row_dict(r) for r in rows]

    async def wipe(self, rel_id: int) -> None:
        """Everything a persona knows about the user, gone (the relationship row stays)."""
        async with self.db.begin() as conn:
            for table in (memory_facts, call_summaries, storylines):
                await conn.execute(delete(table).where(table.c.relationship_id == rel_id))
            await conn.execute(insert(memory_deletions).values(
                relationship_id=rel_id, category=None, key=None, deleted_at=utcnow()))
