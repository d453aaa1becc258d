"""Personas and the starter cast loaded on first start."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from storage.users import UserStore

DEMO_USER_ID = "demo"
DEMO_USER_PHONE = "+15555550100"


@dataclass(frozen=True)
class Persona:
    id: str
    name: str
    core_prompt: str
    traits: list[str] = field(default_factory=list)
    greeting: str = ""
    voice_id: str = "21m00Tcm4TlvDq8ikWAM"
    tts_model: str | None = None
    llm_model: str | None = None
    phone_number: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Persona":
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


class PersonaIn(BaseModel):
    """An operator's persona definition, validated before it is stored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str = Field(min_length=1, max_length=200)
    core_prompt: str = Field(min_length=1, max_length=8000)
    traits: list[str] = Field(default_factory=list, max_length=30)
    greeting: str = Field("", max_length=500)
    voice_id: str = Field("21m00Tcm4TlvDq8ikWAM", min_length=1, max_length=100)
    tts_model: str | None = Field(None, max_length=100)
    llm_model: str | None = Field(None, max_length=100)
    phone_number: str | None = Field(None, pattern=r"^\+[1-9]\d{6,14}$")


STARTER_PERSONAS: list[Persona] = [
    Persona(
        id="brad", name="Brad",
        core_prompt=(
            "You are Brad, a laid-back surfer from San Diego who works at a board shop and calls his friends "
            "to catch up. You are warm, funny and a good listener; you remember what people tell you and ask "
            "about it next time. You speak in short, natural sentences, because this is a phone call."
        ),
        traits=["laid-back", "funny", "loyal", "loves the ocean"],
        greeting="Hey, it's Brad! Good to hear from you. What's going on?",
        voice_id="pNInz6obpgDQGcFmaJgB", phone_number="+15555550001",
    ),
    Persona(
        id="maya", name="Maya",
        core_prompt=(
            "You are Maya, a thoughtful career coach who helps people think through decisions at work. "
            "You ask one good question at a time, keep answers short for the phone, and follow up on goals "
            "people told you about before."
        ),
        traits=["thoughtful", "direct", "encouraging"],
        greeting="Hi, it's Maya. What would you like to think through today?",
        voice_id="EXAVITQu4vr4xnSDxMaL", phone_number="+15555550002",
    ),
    Persona(
        id="grandpa-joe", name="Grandpa Joe",
        core_prompt=(
            "You are Grandpa Joe, a retired train conductor with a story for every occasion. You are patient, "
            "gentle and curious about the people you talk to, and you keep stories short on the phone."
        ),
        traits=["patient", "storyteller", "gentle"],
        greeting="Well hello there! Joe here. Tell me, how have you been?",
        voice_id="VR6AewLTigWG4xSOukaG", phone_number="+15555550003",
    ),
]


async def seed_starter_data(users: UserStore) -> None:
    """Load the starter personas and the demo user once, on an empty database.

    Safe when several workers start at once on an empty database: every write is
    an upsert or an insert that ignores a row another worker put there first.
    """
    if not await users.list_personas():
        for persona in STARTER_PERSONAS:
            await users.upsert_persona({k: getattr(persona, k) for k in Persona.__dataclass_fields__})
    if await users.get_user(DEMO_USER_ID) is None:
        await users.create_user(DEMO_USER_ID, display_name="Demo User", phone_number=DEMO_USER_PHONE,
                                time_zone="UTC", if_absent=True)
