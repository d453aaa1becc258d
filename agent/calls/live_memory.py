"""Forget means forget, during the call too: a deletion reaches the prompt of a call that is live.

A call composes its system prompt once, at the start. If the user deletes a
fact (or wipes everything) while the call runs, in the room, through the API,
or through another worker, the persona must not go on using it. Each worker's
ownership loop (agent/calls/ownership.py) asks here once per END_POLL_SECS,
with one query for all its live calls. A call whose relationship has a newer
deletion than its prompt gets a prompt recomposed from memory. The forgotten
words are redacted from what was said in the call so far: its transcript, the
LLM's conversation and its running summary. So from the next turn on, the
model has no copy of them.
"""

from __future__ import annotations

from loguru import logger

from agent.calls.session import CallSession
from agent.engines import prompt_budgets
from agent.memory.prompt import build_composite_prompt
from agent.runtime import Runtime


async def deletion_mark(rt: Runtime) -> int:
    """Read before a call composes its prompt: deletions after this one are news to it. Never fails a call
    (0 when the database does not answer: the first poll then recomposes once, which is harmless)."""
    try:
        return await rt.memory.store.last_deletion_id()
    except Exception as exc:
        logger.warning(f"the newest memory deletion could not be read ({exc!r})")
        return 0


async def apply_deletions(rt: Runtime, sessions: list[CallSession]) -> list[str]:
    """Recompose the prompt of each live call whose memory lost something since; returns their call ids."""
    waiting = [s for s in sessions if s.on_memory_deleted is not None and s.ending is None and not s.lease_lost]
    if not waiting:
        return []
    newest = await rt.memory.store.deleted_after(min(s.memory_mark for s in waiting))
    changed = []
    for session in waiting:
        mark = newest.get((session.user["id"], session.persona.id), 0)
        if mark > session.memory_mark:
            await _recompose(rt, session, mark)
            changed.append(session.call_id)
    return changed


async def _recompose(rt: Runtime, session: CallSession, mark: int) -> None:
    user, persona = session.user, session.persona
    budget = await rt.budgets.settings(user["id"])
    prompt = await build_composite_prompt(rt.memory, user, persona, prompt_budgets(rt.settings)[0],
                                          memory_token_limit=budget.memory_token_limit)
    forgotten = await rt.memory.forgotten(user["id"], persona.id)

    def redact(text: str) -> str:
        return rt.memory.forgetting.redact(text, forgotten) if forgotten and text else text

    session.transcript.redact(redact)
    if session.transcript.on_turn is not None:  # saved again, redacted
        session.transcript.on_turn(session.transcript)
    session.prompt = prompt
    session.memory_mark = mark
    if session.on_memory_deleted is not None:
        await session.on_memory_deleted(prompt, redact)
    logger.info(f"call {session.call_id}: memory changed during the call; its prompt was recomposed")
