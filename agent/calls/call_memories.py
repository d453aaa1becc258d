"""What a call leaves in the persona's memory, after it ends.

Three steps, in the order the lifecycle runs them: words the user deleted
while the call ran are redacted from its transcript before it is kept; one
LLM call extracts memory updates from the transcript, priced onto this call's
ledger before the total is fixed (an unusable answer's tokens too: they were
spent); and a call whose extraction failed gets a placeholder summary, which
reconciliation replaces when a later attempt succeeds.
"""

from __future__ import annotations

from loguru import logger

from agent.books.events import Service
from agent.calls.extraction_budget import within_call_budget
from agent.calls.session import CallSession
from agent.memory.extraction import ExtractionResult, MemoryExtractor
from agent.memory.relationships import CallSummary
from agent.memory.transcript import Transcript
from agent.runtime import Runtime


class CallMemories:
    def __init__(self, runtime: Runtime, extractor: MemoryExtractor) -> None:
        self.rt, self.extractor = runtime, extractor

    async def redact_forgotten(self, session: CallSession) -> None:
        forgotten = await self.rt.memory.forgotten(session.user["id"], session.persona.id)
        if forgotten:
            session.transcript.redact(lambda text: self.rt.memory.forgetting.redact(text, forgotten))

    async def extract(self, session: CallSession) -> ExtractionResult | None:
        """The post-call memory update, priced onto this call; None if there is nothing or it failed."""
        if not session.transcript.said_by("user"):
            return None
        try:
            memory = await self.rt.memory.snapshot(session.user["id"], session.persona.id)
            afford = within_call_budget(session) if session.allowance.auto_cutoff else None
            result = await self.extractor.extract(session.persona.name, session.persona.llm_model, memory,
                                                  session.transcript.turns, afford=afford)
        except Exception as exc:
            logger.warning(f"call {session.call_id}: memory extraction failed, will retry later ({exc})")
            return None
        session.tracker.track_llm(result.prompt_tokens, result.completion_tokens, vendor=result.vendor,
                                  model=result.model, fallback_reason=result.fallback_reason,
                                  service=Service.MEMORY, kind="ai_inference", source=result.source)
        return result if result.update is not None else None

    async def placeholder_summary(self, user_id: str, persona_id: str, call_id: str, seconds: int,
                                  transcript: Transcript, reason: str) -> None:
        minutes = max(1, round(seconds / 60))
        await self.rt.memory.add_call_summary(user_id, persona_id, CallSummary(
            call_id=call_id, summary=f"A {minutes}-minute call ({len(transcript.turns)} turns); summary pending.",
            outcome=reason))
