"""The call's system prompt while it runs: the composite prompt, then the running summary.

Three things change it mid-call: a fact the persona writes (`remember_fact`:
the composite prompt is recomposed from memory), a deletion by the user (the
same, with the forgotten words redacted from the conversation so far), and the
summary of the turns the conversation window cut. All three go through here,
so none undoes another, the LLM gets the whole of it, and the spend gate
prices what is sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pipecat.processors.aggregators.llm_context import LLMContext

from agent.books.costs import CallCostTracker
from agent.books.events import Source
from agent.calls.session import CallSession
from agent.memory.conversation import SUMMARY_TOKENS, ConversationWindow
from agent.memory.prompt import CompositePrompt
from engines.tokenizer import count_tokens
from pipeline.failover import FailoverLLMService
from processors.spend_gate import LLMSpendGate


class CallPrompt:
    def __init__(self, session: CallSession, llm: FailoverLLMService, gate: LLMSpendGate, *,
                 tool_tokens: int = 0) -> None:
        self.session, self.llm, self.gate = session, llm, gate
        self.tool_tokens = tool_tokens
        self.summary = ""

    @property
    def text(self) -> str:
        return f"{self.session.prompt.prompt}\n\n{self.summary}" if self.summary else self.session.prompt.prompt

    async def use_memory(self, prompt: CompositePrompt) -> None:
        self.session.prompt = prompt
        await self._apply()

    async def use_summary(self, section: str) -> None:
        self.summary = section
        await self._apply()

    async def forget(self, prompt: CompositePrompt, redact: Callable[[str], str], context: LLMContext) -> None:
        """The user deleted memory during the call: the recomposed prompt from now on, and no copy of the
        forgotten words left in the conversation the LLM is sent, nor in its running summary."""

        def redacted(messages: list[Any]) -> list[Any]:
            return [{**m, "content": redact(m["content"])} if isinstance(m, dict) and isinstance(m.get("content"), str)
                    else m for m in messages]

        context.transform_messages(redacted)
        self.summary = redact(self.summary)
        await self.use_memory(prompt)

    def offer_tool(self, tokens: int) -> None:
        self.tool_tokens = tokens
        self.gate.system_tokens = count_tokens(self.text) + tokens

    async def _apply(self) -> None:
        await self.llm.set_system_prompt(self.text)
        self.gate.system_tokens = count_tokens(self.text) + self.tool_tokens

    def window(self, budget: int) -> ConversationWindow:
        """The conversation window for this call; its summaries are metered on the call's ledger."""
        return metered_window(self.llm, self.session.tracker, self.use_summary, budget)


def metered_window(llm: FailoverLLMService, tracker: CallCostTracker,
                   on_summary: Callable[[str], Awaitable[None]], budget: int) -> ConversationWindow:
    """A `ConversationWindow` whose summaries are written by the call's LLM and put on its ledger."""

    async def summarise(messages: list[dict[str, str]]) -> str:
        text, usage, route = await llm.complete(messages, SUMMARY_TOKENS)
        price = route.price
        if usage is not None:
            tracker.track_llm(usage.prompt_tokens, usage.completion_tokens, vendor=price.vendor,
                              model=price.model, source=price.source, kind="context_summary")
        else:  # the vendor bills it all the same: our own count, labelled so
            prompt = sum(count_tokens(m["content"]) + 4 for m in messages)
            tracker.track_llm(prompt, count_tokens(text), vendor=price.vendor, model=price.model,
                              source=Source.ESTIMATED, kind="context_summary")
        return text

    return ConversationWindow(summarise, on_summary, budget=budget, keep=budget // 2)
