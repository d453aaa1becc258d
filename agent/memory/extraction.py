"""After the call: one LLM call turns the transcript into memory updates.

The model gets the persona's current long-term memory (so it updates instead
of duplicating) and the transcript, and must answer with one JSON object that
`MemoryUpdate` validates; anything else is refused and memory is untouched.
Only the transcript is a source of new facts: the memory we injected into the
prompt is shown as context, never written back as new memory.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from loguru import logger
from openai import AsyncOpenAI
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.books.events import Source
from agent.engines import in_process_llm, vendor_llms
from agent.memory.relationships import (
    CallSummary,
    Fact,
    FactCategory,
    MemorySnapshot,
    PersonaRelationshipManager,
    Storyline,
)
from agent.memory.transcript import Turn
from agent.settings import Settings
from engines.offline_script import SCRIPT_MODEL, script_client_transport
from engines.tokenizer import count_tokens

MAX_EXTRACTION_ATTEMPTS = 3


class FactRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: FactCategory
    key: str = Field(min_length=1, max_length=200)


class MemoryUpdate(BaseModel):
    """What the extraction model must return."""

    model_config = ConfigDict(extra="forbid")

    facts_to_add: list[Fact] = Field(default_factory=list, max_length=50)
    facts_to_update: list[Fact] = Field(default_factory=list, max_length=50)
    facts_to_remove: list[FactRef] = Field(default_factory=list, max_length=50)
    summary: str = Field(min_length=1, max_length=2000)
    key_topics: list[str] = Field(default_factory=list, max_length=10)
    outcome: str = Field("", max_length=200)
    storylines: list[Storyline] = Field(default_factory=list, max_length=20)


class ExtractionError(Exception):
    """The model could not be reached or answered with something unusable."""


@dataclass(frozen=True)
class ExtractionResult:
    """A model's answer: `update` is None when the answer was unusable (its tokens still cost)."""

    update: MemoryUpdate | None
    error: str | None
    vendor: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    fallback_reason: str | None
    source: Source = Source.VENDOR


INSTRUCTIONS = """You maintain the long-term memory of {persona}, an AI voice persona, about the person they talk to.
Read the call transcript and return ONE JSON object with these keys:
- "facts_to_add": new facts the user said in THIS call: [{{"category": c, "key": short_snake_case_name, "value": text}}]
- "facts_to_update": facts whose value changed (same category and key as in the current memory)
- "facts_to_remove": facts the user said are no longer true: [{{"category": c, "key": k}}]
- "summary": two sentences about this call
- "key_topics": up to 5 short topics
- "outcome": how the call ended, a few words
- "storylines": ongoing threads: [{{"topic": t, "status": "ongoing" or "resolved", "details": text}}]
Categories: relationship_facts, user_facts, inside_jokes, important_memories, preferences.
Only use what the user said in the transcript. The current memory is context: do not repeat it as new facts."""


def build_messages(persona_name: str, memory: MemorySnapshot, turns: list[Turn]) -> list[dict[str, str]]:
    known = [f"- {c}/{f.key}: {f.value}" for c, facts in memory.facts.items() for f in facts] or ["(nothing yet)"]
    transcript = "\n".join(f"{t.role}: {t.text}" for t in turns) or "(no words were exchanged)"
    return [
        {"role": "system", "content": INSTRUCTIONS.format(persona=persona_name)},
        {"role": "user", "content": "Current memory:\n" + "\n".join(known) + "\n\nTranscript:\n" + transcript},
    ]


#: (vendor, model, prompt tokens) -> the most completion tokens the budget pays for, or None: not now.
Affordable = Callable[[str, str, int], int | None]


class MemoryExtractor:
    """Cerebras first, OpenAI if Cerebras fails; each within the time limit."""

    def __init__(self, settings: Settings, *, timeout: float = 20.0) -> None:
        self.settings = settings
        self.timeout = timeout

    def _providers(self, persona_model: str | None) -> list[tuple[str, str, AsyncOpenAI]]:
        """The vendors with a key, in failover order; with none, the local LLM (priced as Cerebras)."""
        s = self.settings
        vendors = {
            "cerebras": lambda: ("cerebras", persona_model or s.cerebras_model, AsyncOpenAI(
                api_key=s.cerebras_api_key, base_url=s.cerebras_base_url, max_retries=0, timeout=self.timeout)),
            "openai": lambda: ("openai", s.openai_model, AsyncOpenAI(
                api_key=s.openai_api_key, base_url=s.openai_base_url, max_retries=1, timeout=self.timeout)),
        }
        chosen = [vendors[name]() for name in vendor_llms(s)]
        if chosen:
            return chosen
        if s.llm_base_url:
            return [("local", s.llm_model, AsyncOpenAI(api_key=s.llm_api_key or "local", base_url=s.llm_base_url,
                                                        max_retries=0, timeout=max(self.timeout, 60)))]
        if s.local_llm == "llama-cpp" and s.local_llm_extracts:
            model = in_process_llm(s)
            return [("local", model.model.name, AsyncOpenAI(
                api_key="in-process", base_url="http://local-llm.invalid/v1", max_retries=0,
                timeout=max(self.timeout, 60), http_client=httpx.AsyncClient(transport=model)))]
        return [("local", SCRIPT_MODEL, AsyncOpenAI(api_key="offline", base_url="http://offline-script.invalid/v1",
                                                    http_client=httpx.AsyncClient(transport=script_client_transport())))]

    async def extract(self, persona_name: str, persona_model: str | None, memory: MemorySnapshot,
                      turns: list[Turn], *, afford: Affordable | None = None) -> ExtractionResult:
        """One JSON-mode call, failing over between vendors.

        With `afford`, each vendor's request is first priced (its prompt counted here):
        `afford(vendor, model, prompt_tokens)` gives the most completion tokens the
        call's budget can still pay for, or None to leave it to a later, uncharged retry.
        """
        messages = build_messages(persona_name, memory, turns)
        failure: str | None = None
        for vendor, model, client in self._providers(persona_model):
            limit: dict = {}
            if afford is not None:
                priced_as = ("cerebras", persona_model or self.settings.cerebras_model) if vendor == "local" \
                    else (vendor, model)
                most = afford(*priced_as, sum(count_tokens(m["content"]) + 4 for m in messages))
                if most is None:
                    failure = f"{vendor}: the call's budget cannot pay for it now"
                    continue
                limit = {"max_completion_tokens": most}
            try:
                async with client:
                    response = await asyncio.wait_for(client.chat.completions.create(
                        model=model, messages=messages, response_format={"type": "json_object"},
                        temperature=0, **limit), self.timeout)
            except Exception as exc:
                failure = f"{vendor}: {exc.__class__.__name__}: {exc}"[:180]
                logger.warning(f"memory extraction via {vendor} failed ({failure})")
                continue
            usage = response.usage
            update, error = parse_update(response.choices[0].message.content or "")
            if error:
                logger.warning(f"{vendor} answered with unusable memory updates: {error}")
            prompt, completion = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
            if vendor == "local":  # a local model costs nothing: priced as Cerebras would charge, estimated
                return ExtractionResult(update, error, "cerebras", persona_model or self.settings.cerebras_model,
                                        prompt, completion, None, Source.ESTIMATED)
            return ExtractionResult(update, error, vendor, model, prompt, completion,
                                    failure if vendor != "cerebras" else None)
        raise ExtractionError(f"no model could extract memories ({failure})")


def parse_update(text: str) -> tuple[MemoryUpdate | None, str | None]:
    """The model's JSON, validated; or why it was refused."""
    try:
        return MemoryUpdate.model_validate(json.loads(text)), None
    except (json.JSONDecodeError, ValidationError) as exc:
        return None, str(exc)[:500]


async def apply_update(memory: PersonaRelationshipManager, user_id: str, persona_id: str, call_id: str,
                       update: MemoryUpdate, call_started_at: dt.datetime | None, turns: list[Turn] = ()) -> None:
    """Write the validated update with its provenance (this call, and the caller's words each fact was
    found in). What the user deleted stays deleted: a fact deleted after the call began is not
    re-added, no forgotten value is stored under any key, and forgotten words are redacted from the
    summary and storylines."""
    rel = await memory.get_relationship(user_id, persona_id)
    deletions = await memory.store.deletions_since(rel.id, call_started_at) if call_started_at else []
    wiped = any(d["key"] is None for d in deletions)
    forgotten = await memory.forgotten(user_id, persona_id)
    redact = memory.forgetting.redact

    def deleted(fact: Fact | FactRef) -> bool:
        return wiped or any(d["key"] == fact.key and d["category"] in (None, fact.category.value)
                            for d in deletions)

    for fact in update.facts_to_remove:
        await memory.delete_fact(user_id, persona_id, fact.key, fact.category.value)
    for fact in [*update.facts_to_add, *update.facts_to_update]:
        if deleted(fact) or redact(fact.value, forgotten) != fact.value:
            continue
        await memory.set_fact(user_id, persona_id, fact, source="extraction", call_id=call_id,
                              said=said_in(turns, fact.value))
    if wiped:
        return
    summary = CallSummary(call_id=call_id, summary=redact(update.summary, forgotten),
                          key_topics=[redact(t, forgotten) for t in update.key_topics], outcome=update.outcome)
    if not await memory.store.update_summary(rel.id, call_id, summary=summary.summary,
                                             key_topics=summary.key_topics, outcome=summary.outcome):
        await memory.add_call_summary(user_id, persona_id, summary)
    for storyline in update.storylines:
        await memory.set_storyline(user_id, persona_id, storyline.model_copy(update={
            "topic": redact(storyline.topic, forgotten), "details": redact(storyline.details, forgotten)}))


def said_in(turns: list[Turn], value: str) -> str | None:
    """The caller's words a fact's value was found in (the last time they said it), if it was said.

    Only the caller's own words count: a value that appears nowhere in them was inferred by the
    model, and the API shows it as such (no `said`)."""
    wanted = value.casefold()
    for turn in reversed(list(turns)):
        if turn.role == "user" and wanted in turn.text.casefold():
            return turn.text
    return None
