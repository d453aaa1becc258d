"""What the offline script knows of the caller: read from the composite prompt it is sent.

With no LLM, memory must still be heard: the script reads the sections our
prompt builder writes (`agent/memory/prompt.py`: "# What you know about …",
"# Recent context") back out of the system prompt, the only thing a real
model would get too. And after the call it extracts what a model would: the
caller's name and other plainly stated facts, and a summary of the topics.
Deterministic text rules, so tests can assert the words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SECTION = re.compile(r"^# (.+)$", re.MULTILINE)
_ITEM = re.compile(r"^- ([^:\n]+): (.+)$", re.MULTILINE)
_CALL = re.compile(r"^- [^:\n]+: (.+?)(?: \(topics: ([^)]*)\))?(?: Outcome: [^\n]*)?$", re.MULTILINE)
_STORY = re.compile(r"^- (.+?) \((ongoing|resolved)\)(?:: (.+))?$", re.MULTILINE)


@dataclass
class Known:
    """The caller as the prompt describes them."""

    facts: dict[str, str] = field(default_factory=dict)  # "name" -> "Sam", "dog name" -> "Biscuit"
    last_calls: list[str] = field(default_factory=list)  # summaries, newest first
    last_topics: list[str] = field(default_factory=list)  # of the newest call
    storylines: list[str] = field(default_factory=list)  # ongoing ones

    @property
    def name(self) -> str | None:
        return self.facts.get("name") or self.facts.get("preferred name") or self.facts.get("nickname")


def known_from_prompt(system: str) -> Known:
    sections = _sections(system)
    known = Known()
    about = next((text for title, text in sections.items() if title.startswith("What you know about")), "")
    for key, value in _ITEM.findall(about):
        known.facts.setdefault(key.strip().lower(), value.strip())
    context = sections.get("Recent context", "")
    calls, _, stories = context.partition("Storylines you are following:")
    for summary, topics in _CALL.findall(calls.replace("Your last calls, newest first:", "")):
        known.last_calls.append(summary.strip())
        if len(known.last_calls) == 1 and topics:
            known.last_topics = [t.strip() for t in topics.split(",") if t.strip()]
    known.storylines = [topic for topic, status, _details in _STORY.findall(stories) if status == "ongoing"]
    return known


def _sections(system: str) -> dict[str, str]:
    found = list(_SECTION.finditer(system))
    return {m.group(1).strip(): system[m.end():found[i + 1].start() if i + 1 < len(found) else len(system)]
            for i, m in enumerate(found)}


# -- after the call: what a model would extract from the caller's words ------------------------

_STATED = [  # (category, key, pattern): the first group is the value
    ("user_facts", "name", re.compile(r"\b(?:my name is|my name's|call me)\s+([A-Z][a-z'-]+)", re.IGNORECASE)),
    ("user_facts", "job", re.compile(r"\bI(?: am|'m) an? ((?:[a-z-]+ ){0,2}(?:engineer|teacher|nurse|doctor|"
                                     r"developer|designer|student|writer|chef|manager|lawyer|artist|driver))\b",
                                     re.IGNORECASE)),
    ("user_facts", "job", re.compile(r"\bI work (?:as an? |at )([\w' -]{2,40}?)(?:[.,!?]|$)", re.IGNORECASE)),
    ("user_facts", "home", re.compile(r"\bI live in ([A-Z][\w' -]{1,30}?)(?:[.,!?]|$)")),
    ("user_facts", "pet", re.compile(r"\bmy (dog|cat)(?:'s name is| is called| is named)\s+([A-Z][a-z'-]+)",
                                     re.IGNORECASE)),
    ("preferences", "likes", re.compile(r"\bI (?:really )?(?:love|like|enjoy) ([a-z][\w' -]{2,40}?)(?:[.,!?]|$)",
                                        re.IGNORECASE)),
]
_TOPIC_WORDS = re.compile(r"\b(hiking|surfing|work|job|trip|holiday|vacation|family|school|dinner|birthday|"
                          r"wedding|move|moving|interview|exam|dog|cat|music|movie|book|game|weather|ocean|"
                          r"beach|party|friend|friends|date|breakup|garden|cooking|running|football|soccer)\b")


def stated_facts(said: list[str]) -> list[dict[str, str]]:
    """Facts the caller plainly stated, as extraction returns them (the first value of each key)."""
    facts: dict[tuple[str, str], str] = {}
    for line in said:
        for category, key, pattern in _STATED:
            match = pattern.search(line)
            if not match:
                continue
            if key == "pet":
                key, value = f"{match.group(1).lower()}_name", match.group(2).capitalize()
            else:
                value = match.group(1).strip()
                value = value.capitalize() if key == "name" else value
            facts.setdefault((category, key), value)
    return [{"category": c, "key": k, "value": v} for (c, k), v in facts.items()]


def topics(said: list[str]) -> list[str]:
    seen: list[str] = []
    for line in said:
        for word in _TOPIC_WORDS.findall(line.lower()):
            if word not in seen:
                seen.append(word)
    return seen[:5]


def summary_of(said: list[str], facts: list[dict[str, str]]) -> str:
    about = topics(said)
    first = " ".join(said[0].split()[:12]).rstrip(".!?") if said else "nothing much"
    parts = [f"They talked about {', '.join(about)}." if about else f"A short chat; it began with: {first}."]
    name = next((f["value"] for f in facts if f["key"] == "name"), None)
    if name:
        parts.append(f"The caller's name is {name}.")
    return " ".join(parts)
