"""A bounded prompt per turn: the call's conversation kept within a token budget.

Every turn resends the whole conversation, so on a long call the prompt (the
largest cost that grows with call length) would grow without bound. When the
conversation passes `budget` tokens, its oldest turns are folded into one
summary message at its head and only the newest turns (`keep` tokens) stay
word for word. When the conversation passes `budget` tokens, its oldest turns are cut and
only the newest (`keep` tokens) stay word for word; what was cut is folded
into a running summary, which goes into the system prompt (`on_summary`)
rather than the conversation. The cut happens at once, so no turn waits; the
summary is written by the LLM in the background, one at a time (every such
call is metered by whoever supplies `summarise`), at most `SUMMARY_TOKENS`.
Pure logic on OpenAI-style message dicts: no Pipecat, no I/O of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from engines.tokenizer import count_tokens

SUMMARY_HEADING = "# Earlier in this call"
TOKENS_PER_MESSAGE = 4
SUMMARY_TOKENS = 200  # the most a summary may take
SUMMARISE_INSTRUCTIONS = (
    "You keep the running summary of a phone call between a caller and a persona. Merge the previous "
    "summary with the turns below into one short paragraph (at most 120 words): names, facts, plans, "
    "feelings and open questions, in the third person. Answer with the summary only.")

#: (messages for the summariser) -> the summary text. Metered by whoever supplies it.
Summarise = Callable[[list[dict[str, str]]], Awaitable[str]]


def message_tokens(message: dict[str, Any]) -> int:
    content = message.get("content")
    if isinstance(content, list):
        content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return count_tokens(str(content or "")) + TOKENS_PER_MESSAGE


@dataclass
class ConversationWindow:
    """Keeps one call's conversation (the context's messages) within `budget` tokens."""

    summarise: Summarise
    on_summary: Callable[[str], Awaitable[None]]
    budget: int = 1500
    keep: int = 800
    summary: str = ""  # what the cut turns said, as the system prompt carries it
    summaries: int = 0  # summarisation calls made
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _pending: set[asyncio.Task] = field(default_factory=set)

    def fit(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """The messages to send instead, or None when they fit. Never waits for the summariser."""
        if sum(message_tokens(m) for m in messages) <= self.budget:
            return None
        cut = self._cut_index(messages)
        if cut <= 0:
            return None  # one huge turn: nothing older to fold
        task = asyncio.ensure_future(self._fold(messages[:cut]))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return messages[cut:]

    def _cut_index(self, messages: list[dict[str, Any]]) -> int:
        """The first message kept: the newest `keep` tokens, starting at a caller's turn (never between
        a tool call and its result)."""
        total, cut = 0, len(messages)
        for i in range(len(messages) - 1, -1, -1):
            total += message_tokens(messages[i])
            if total > self.keep:
                break
            cut = i
        while cut < len(messages) - 1 and messages[cut].get("role") != "user":
            cut += 1
        return cut

    async def _fold(self, dropped: list[dict[str, Any]]) -> None:
        lines = [f"{m.get('role')}: {m.get('content')}" for m in dropped
                 if m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str) and m["content"]]
        if not lines:
            return
        async with self._lock:  # one at a time: each folds into the summary the previous one wrote
            request = [{"role": "system", "content": SUMMARISE_INSTRUCTIONS},
                       {"role": "user", "content": f"Previous summary: {self.summary or '(none)'}\n\nTurns:\n"
                        + "\n".join(lines)}]
            self.summaries += 1
            try:
                text = (await self.summarise(request)).strip()
            except Exception:  # the summary stays as it was; the cut already bounds the prompt
                return
            if text:
                self.summary = text
                await self.on_summary(f"{SUMMARY_HEADING}\n{text}")

    async def wait(self) -> None:
        """Let running summaries finish (tests, and the end of a call)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
