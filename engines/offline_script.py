"""The offline demo "LLM": a small deterministic persona script on the OpenAI wire.

No practical LLM ships in a package (VENDORS.md A3), yet the embedded default
must let someone talk to a persona with no keys. So the script answers a few
simple kinds of input in the persona's name, always hands the turn back with a
question, and says plainly that it is the offline demo script when asked.

It is served as an httpx transport that speaks chat completions
(engines/openai_wire.py), handed to the openai SDK's client, so the real code
path runs in process.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from engines.openai_wire import read_chat_request, streamed_reply, text_of, usage, whole_reply
from engines.script_memory import Known, known_from_prompt, stated_facts, summary_of, topics
from engines.tokenizer import count_tokens

SCRIPT_MODEL = "callmeback-offline-script"
_TOKENS_PER_MESSAGE = 3  # role and separators, as chat models count them

DEMO_ANSWER = ("I'm {name}'s offline demo script: no AI model is connected right now, so I only know a few "
               "simple replies. Add an LLM key, or point LLM_BASE_URL at a local model server, for a real "
               "conversation. Want to try something else?")
FOLLOW_UPS = ("Can you tell me more about that?", "How did that make you feel?", "What happened next?",
              "What would you like to talk about now?")
_ABOUT_ME = re.compile(r"\b(demo|offline|script|robot|bot|ai|a\.i|artificial intelligence|llm|language model|"
                       r"are you (real|human|a person|a computer|a machine))\b")
_BYE = re.compile(r"\b(bye|goodbye|good night|see you|talk (to you )?later|gotta go|hang up)\b")
_THANKS = re.compile(r"\b(thanks|thank you|cheers)\b")
_HOW_ARE_YOU = re.compile(r"\bhow (are|r) (you|u)\b|\bhow('s| is) it going\b|\bhow have you been\b")
_ASK_NAME = re.compile(r"\b(your name|who are you|who is this|who's this|who am i (talking|speaking) to)\b")
_GIVE_NAME = re.compile(r"\b(?:my name is|my name's|call me)\s+([A-Za-z][A-Za-z'-]+)", re.IGNORECASE)
# "I'm fine" is not a name: after these, only a capitalised word is taken as one (transcripts capitalise names).
_MAYBE_NAME = re.compile(r"\b(?:[Ii] am|[Ii]'m|[Tt]his is|[Ii]t's)\s+([A-Z][a-z'-]+)\b")
_REMEMBER = re.compile(r"\b(do|did) you (still )?remember\b|\bremember (me|my|what|when|the)\b")
_MY_NAME = re.compile(r"\b(what's|what is|whats) my name\b|\bwho am i\b|\bknow my name\b")
_GREETING = re.compile(r"^\W*(hi|hello|hey|hiya|howdy|yo|good (morning|afternoon|evening))\b")
_FEEL_GOOD = re.compile(r"\b(good|great|fine|well|okay|ok|not bad|awesome|fantastic|wonderful)\b")
_FEEL_BAD = re.compile(r"\b(bad|sad|tired|awful|terrible|not great|not good|stressed|sick|rough)\b")
_QUESTION = re.compile(r"\?\s*$|^\W*(what|why|how|when|where|who|which|can|could|do|does|did|is|are|will|would)\b")
_NOT_NAMES = {"fine", "good", "great", "okay", "ok", "well", "doing", "not", "just", "so", "very", "here", "sorry",
              "glad", "happy", "tired", "sad", "going", "calling", "a", "the", "back", "busy", "sure", "really"}


def persona_name_from_prompt(system_prompt: str) -> str:
    """The persona's name as our prompts introduce it ("You are Brad, ..."), else a neutral one."""
    found = re.search(r"\bYou are ([A-Z][\w'-]*(?: [A-Z][\w'-]*)*)", system_prompt)
    return found.group(1) if found else "your persona"


@dataclass(frozen=True)
class PersonaScript:
    """What the persona says next, decided only by the conversation so far (deterministic)."""

    name: str | None = None

    def reply(self, messages: list[dict[str, Any]]) -> str:
        system = "\n".join(text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
        name = self.name or persona_name_from_prompt(system)
        known = known_from_prompt(system)
        users = [text_of(m.get("content")).strip() for m in messages if m.get("role") == "user"]
        users = [u for u in users if u]
        if not users:
            return f"Hi, it's {name}! How's your day going?"
        said = users[-1]
        lower = said.lower()
        if _ABOUT_ME.search(lower):
            return DEMO_ANSWER.format(name=name)
        if _BYE.search(lower):
            return f"It was lovely talking to you{', ' + known.name if known.name else ''}. Bye for now!"
        if _REMEMBER.search(lower) or _MY_NAME.search(lower):
            return _recall(known, lower)
        if _ASK_NAME.search(lower):
            if known.name:
                return f"It's me, {name}! Good to hear you, {known.name}."
            return f"I'm {name}. And what's your name?"
        given = _GIVE_NAME.search(said) or _MAYBE_NAME.search(said)
        if given and given.group(1).lower() not in _NOT_NAMES:
            caller = given.group(1).capitalize()
            if known.name and known.name.lower() == caller.lower():
                return f"Of course I know you, {caller}! What's new since we last talked?"
            return f"Nice to meet you, {caller}! I'm {name}. What would you like to talk about?"
        if _HOW_ARE_YOU.search(lower):
            return "I'm doing great, thanks for asking! How about you?"
        if _GREETING.search(lower):
            if known.name or known.last_calls:
                return _welcome_back(known)
            return f"Hey, {name} here! Good to hear from you. How's your day going?"
        short = len(lower.split()) <= 6
        if short and _FEEL_BAD.search(lower):
            return "Oh no, I'm sorry to hear that. Do you want to tell me what's going on?"
        if short and _FEEL_GOOD.search(lower):
            return "Glad to hear it! What have you been up to lately?"
        if _THANKS.search(lower):
            return "You're welcome! What else is on your mind?"
        if _QUESTION.search(lower):
            return ("That's a good question. I'm only the offline demo script, so I can't really answer it. "
                    "What do you think?")
        heard = " ".join(said.rstrip(".!").split()[:12])
        return f"I heard you say: {heard}. {FOLLOW_UPS[(len(users) - 1) % len(FOLLOW_UPS)]}"


def memory_update(messages: list[dict[str, Any]]) -> str:
    """The post-call memory extraction, scripted as a model would answer: the facts the caller plainly
    stated (name, job, home, pets, likes) as new or changed facts, and a summary with its topics.

    The extraction request carries the current memory ("- category/key: value" lines) and the
    transcript ("user: ..." lines) in its last message.
    """
    content = text_of(messages[-1].get("content")) if messages else ""
    current = dict(re.findall(r"^- (\w+/\w+): (.+)$", content, re.MULTILINE))
    said = [line[len("user: "):] for line in content.splitlines() if line.startswith("user: ")]
    new, changed = [], []
    for fact in stated_facts(said):
        held = current.get(f"{fact['category']}/{fact['key']}")
        if held is None:
            new.append(fact)
        elif held.lower() != fact["value"].lower():
            changed.append(fact)
    found = topics(said)
    return json.dumps({"facts_to_add": new, "facts_to_update": changed, "facts_to_remove": [],
                       "summary": summary_of(said, new + changed), "key_topics": found, "outcome": "ended warmly",
                       "storylines": []})


def _welcome_back(known: Known) -> str:
    hello = f"Hey {known.name}, great to hear from you again!" if known.name else "Hey, great to hear from you again!"
    if known.storylines:
        return f"{hello} How's it going with {known.storylines[0].lower()}?"
    if known.last_topics:
        return f"{hello} Last time we talked about {_and(known.last_topics[:2])}. How has that been?"
    return f"{hello} What's new?"


def _recall(known: Known, lower: str) -> str:
    """ "Do you remember ...?": answered from what the prompt says the persona knows."""
    if _MY_NAME.search(lower) or "name" in lower:
        if known.name:
            return f"Of course! You're {known.name}."
        return "I don't think you've told me your name yet. What is it?"
    words = set(re.findall(r"[a-z']+", lower))
    for key, value in known.facts.items():
        if value.lower() in lower or words & (set(key.split()) - {"name", "the", "my"}):
            what = f"{key[:-5]}'s name" if key.endswith(" name") else key
            return f"Yes, I remember: your {what} is {value}."
    if known.last_topics:
        return f"I remember we talked about {_and(known.last_topics[:3])} last time."
    if known.last_calls:
        return f"I remember our last call: {known.last_calls[0]}"
    return "I'm not sure we've talked about that yet. Tell me?"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """An estimate in cl100k tokens: the script has no tokenizer of its own, and metering needs a number."""
    return sum(count_tokens(text_of(m.get("content"))) + _TOKENS_PER_MESSAGE for m in messages)


class ScriptTransport(httpx.AsyncBaseTransport):
    """Answers `POST .../chat/completions` from a `PersonaScript`, as an OpenAI-compatible server would."""

    def __init__(self, script: PersonaScript) -> None:
        self.script = script
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        chat = await read_chat_request(request, "the offline script")
        if isinstance(chat, httpx.Response):
            return chat
        self.requests += 1
        text = memory_update(chat.messages) if chat.wants_json else self.script.reply(chat.messages)
        counted = usage(prompt_tokens(chat.messages), count_tokens(text))
        model = chat.body.get("model") or SCRIPT_MODEL
        if not chat.stream:
            return whole_reply(model, text, counted)
        return streamed_reply(model, _words(text), (lambda: counted) if chat.with_usage else None)


async def _words(text: str) -> AsyncIterator[str]:
    for word in re.findall(r"\S+\s*", text):
        yield word


def script_client_transport(persona_name: str | None = None) -> ScriptTransport:
    """The transport to give `httpx.AsyncClient(transport=...)` for an openai client."""
    return ScriptTransport(PersonaScript(persona_name))
