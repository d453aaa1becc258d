"""Relationships and the memory tiers stored under them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from storage.db import Database
from storage.schema import (
    call_summaries,
    calls,
    forgotten_values,
    memory_deletions,
    memory_fact_history,
    memory_facts,
    storylines,
)
from storage.schema import user_persona_relationships as rels
from storage.util import as_utc, insert_ignoring_conflicts, row_dict, upsert, utcnow

RECENT_SUMMARIES = 10  # the API shows, and the prompt uses, the last ten
_PROVENANCE = (memory_facts.c.value, memory_facts.c.source, memory_facts.c.source_call_id,
               memory_facts.c.source_text)


def _matching(table: Any, rel_id: int, key: str | None, category: str | None) -> Any:
    where = table.c.relationship_id == rel_id
    if key is not None:
        where &= table.c.key == key
    if category is not None:
        where &= table.c.category == category
    return where


async def _redact_derived(conn: Any, rel_id: int, redact: Callable[[str], str]) -> None:
    """Rewrite, in this transaction, the relationship's summaries, storylines and ended calls' transcripts."""
    for row in (await conn.execute(select(call_summaries.c.id, call_summaries.c.summary, call_summaries.c.key_topics)
                                   .where(call_summaries.c.relationship_id == rel_id))).all():
        summary, topics = redact(row.summary), [redact(t) for t in row.key_topics or []]
        if summary != row.summary or topics != (row.key_topics or []):
            await conn.execute(update(call_summaries).where(call_summaries.c.id == row.id).values(
                summary=summary, key_topics=topics))
    for row in (await conn.execute(select(storylines.c.id, storylines.c.topic, storylines.c.details)
                                   .where(storylines.c.relationship_id == rel_id))).all():
        topic, details = redact(row.topic), redact(row.details or "")
        if (topic, details) != (row.topic, row.details or ""):
            await conn.execute(update(storylines).where(storylines.c.id == row.id).values(topic=topic, details=details))
    rel = (await conn.execute(select(rels.c.user_id, rels.c.persona_id).where(rels.c.id == rel_id))).one()
    for row in (await conn.execute(select(calls.c.id, calls.c.transcript).where(
            (calls.c.user_id == rel.user_id) & (calls.c.persona_id == rel.persona_id)
            & calls.c.transcript.is_not(None)))).all():
        turns = [{**turn, "text": redact(str(turn.get("text", "")))} for turn in row.transcript or []]
        if turns != row.transcript:
            await conn.execute(update(calls).where(calls.c.id == row.id).values(transcript=turns))


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

    async def set_fact(self, rel_id: int, category: str, key: str, value: str, source: str, *,
                       call_id: str | None = None, said: str | None = None) -> None:
        """Add or change a fact with where it came from; a changed value's old one goes to its history.

        Two writers at once (the persona's tool and the user's app, say) must each leave the value they
        replaced in the history exactly once: the change is a compare-and-set on the value read, and a
        writer that lost the race reads again."""
        for _ in range(10):
            if await self._set_fact_once(rel_id, category, key, value, source, call_id, said):
                return
        raise RuntimeError(f"fact {category}/{key} kept changing under this write; try again")

    async def _set_fact_once(self, rel_id: int, category: str, key: str, value: str, source: str,
                             call_id: str | None, said: str | None) -> bool:
        now = utcnow()
        where = ((memory_facts.c.relationship_id == rel_id) & (memory_facts.c.category == category)
                 & (memory_facts.c.key == key))
        provenance = {"value": value, "source": source, "source_call_id": call_id, "source_text": said,
                      "updated_at": now}
        async with self.db.begin() as conn:
            old = (await conn.execute(select(*_PROVENANCE, memory_facts.c.updated_at).where(where))).first()
            if old is not None and old.value == value:
                return True  # said again: the fact and where it was first learned stay as they are
            if old is None:
                added = await conn.execute(insert_ignoring_conflicts(conn, memory_facts, [
                    "relationship_id", "category", "key"]).values(
                    relationship_id=rel_id, category=category, key=key, created_at=now, **provenance))
                return added.rowcount == 1  # 0: another writer added it first
            changed = await conn.execute(update(memory_facts).where(
                where & (memory_facts.c.value == old.value)).values(**provenance))
            if changed.rowcount != 1:
                return False  # another writer changed it since it was read
            await conn.execute(insert(memory_fact_history).values(
                relationship_id=rel_id, category=category, key=key, value=old.value, source=old.source,
                source_call_id=old.source_call_id, source_text=old.source_text, valid_from=as_utc(old.updated_at),
                replaced_at=now))
            return True

    async def everything(self, user_id: str, persona_id: str) -> dict[str, Any]:
        """The API's read of every tier, on one connection: the relationship (as a dict) and, as rows
        with only the columns the API shows, its facts, their history, recent summaries and storylines."""
        f, h, c, s = memory_facts.c, memory_fact_history.c, call_summaries.c, storylines.c
        async with self.db.connect() as conn:
            row = (await conn.execute(select(rels).where(
                (rels.c.user_id == user_id) & (rels.c.persona_id == persona_id)))).first()
            rel = row_dict(row) if row else await self.get_or_create_relationship(user_id, persona_id)
            rel_id = rel["id"]
            facts = (await conn.execute(
                select(f.category, f.key, *_PROVENANCE, f.created_at, f.updated_at)
                .where(f.relationship_id == rel_id).order_by(f.category, f.updated_at, f.id))).all()
            history = (await conn.execute(
                select(h.category, h.key, h.value, h.source, h.source_call_id, h.source_text, h.valid_from,
                       h.replaced_at)
                .where(h.relationship_id == rel_id).order_by(h.replaced_at.desc(), h.id.desc()))).all()
            summaries = (await conn.execute(
                select(c.call_id, c.summary, c.key_topics, c.outcome, c.created_at)
                .where(c.relationship_id == rel_id).order_by(c.created_at.desc(), c.id.desc())
                .limit(RECENT_SUMMARIES))).all()
            stories = (await conn.execute(
                select(s.topic, s.status, s.details, s.updated_at)
                .where(s.relationship_id == rel_id).order_by(s.updated_at.desc(), s.id.desc()))).all()
        return {"relationship": rel, "facts": facts, "history": history, "summaries": summaries,
                "storylines": stories}

    async def fact_values(self, rel_id: int, key: str | None = None, category: str | None = None) -> list[str]:
        """Every value, current and earlier, of the facts a deletion would remove (None: all of them)."""
        values = []
        async with self.db.connect() as conn:
            for table in (memory_facts, memory_fact_history):
                stmt = select(table.c.value).where(_matching(table, rel_id, key, category))
                values += [row.value for row in await conn.execute(stmt)]
        return values

    async def forget(self, rel_id: int, redact: Callable[[str], str], forgotten: list[tuple[str, int]], *,
                     key: str | None = None, category: str | None = None) -> int:
        """Delete facts (all with key None) and their history, record the deletion and the forgotten
        values' hashes, and redact every summary, storyline and transcript of the relationship: one
        transaction, so nothing is half forgotten. Returns how many facts went."""
        now = utcnow()
        async with self.db.begin() as conn:
            deleted = (await conn.execute(delete(memory_facts).where(
                _matching(memory_facts, rel_id, key, category)))).rowcount
            await conn.execute(delete(memory_fact_history).where(
                _matching(memory_fact_history, rel_id, key, category)))
            await conn.execute(insert(memory_deletions).values(
                relationship_id=rel_id, category=category, key=key, deleted_at=now))
            if forgotten:
                await conn.execute(insert(forgotten_values), [
                    {"relationship_id": rel_id, "digest": d, "words": n, "forgotten_at": now} for d, n in forgotten])
                await _redact_derived(conn, rel_id, redact)
            return deleted

    async def forgotten(self, rel_id: int) -> list[tuple[str, int]]:
        async with self.db.connect() as conn:
            rows = await conn.execute(select(forgotten_values.c.digest, forgotten_values.c.words).where(
                forgotten_values.c.relationship_id == rel_id))
        return [(r.digest, r.words) for r in rows]

    async def deletions_since(self, rel_id: int, since: dt.datetime) -> list[dict[str, Any]]:
        """What the user deleted after `since`: (category or None, key or None) rows."""
        async with self.db.connect() as conn:
            rows = await conn.execute(select(memory_deletions).where(
                (memory_deletions.c.relationship_id == rel_id) & (memory_deletions.c.deleted_at >= since)))
        return [row_dict(r) for r in rows]

    async def last_deletion_id(self) -> int:
        """The newest deletion's id, 0 before any: a prompt composed after reading it misses none before."""
        async with self.db.connect() as conn:
            return (await conn.execute(select(func.max(memory_deletions.c.id)))).scalar() or 0

    async def deleted_after(self, after: int) -> dict[tuple[str, str], int]:
        """(user id, persona id) -> the newest deletion id, for relationships with deletions after `after`."""
        newest = func.max(memory_deletions.c.id)
        async with self.db.connect() as conn:
            rows = await conn.execute(
                select(rels.c.user_id, rels.c.persona_id, newest.label("newest"))
                .join(rels, rels.c.id == memory_deletions.c.relationship_id)
                .where(memory_deletions.c.id > after).group_by(rels.c.user_id, rels.c.persona_id))
        return {(r.user_id, r.persona_id): r.newest for r in rows}

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
            for table in (memory_facts, memory_fact_history, call_summaries, storylines):
                await conn.execute(delete(table).where(table.c.relationship_id == rel_id))
            rel = (await conn.execute(select(rels.c.user_id, rels.c.persona_id).where(rels.c.id == rel_id))).one()
            await conn.execute(update(calls).where((calls.c.user_id == rel.user_id)
                                                   & (calls.c.persona_id == rel.persona_id)
                                                   & (calls.c.status == "ended")).values(transcript=None))
            await conn.execute(insert(memory_deletions).values(
                relationship_id=rel_id, category=None, key=None, deleted_at=utcnow()))
