"""Everything one process needs, built once at start-up and shared by all calls."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from agent.accounts.personas import seed_starter_data
from agent.books.budgets import BudgetManager
from agent.books.pricing import PriceBook
from agent.memory.forgetting import Forgetting
from agent.memory.relationships import PersonaRelationshipManager
from agent.settings import Settings
from storage.calls import CallStore
from storage.db import Database
from storage.leases import LeaseStore
from storage.memory import MemoryStore
from storage.users import UserStore


@dataclass
class Runtime:
    settings: Settings
    db: Database
    prices: PriceBook
    users: UserStore
    calls: CallStore
    memory: PersonaRelationshipManager
    budgets: BudgetManager
    leases: LeaseStore
    # Unique per process start: the owner written on the calls this process runs.
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()[:24]}-{os.getpid()}-{uuid.uuid4().hex[:8]}")

    @classmethod
    async def start(cls, settings: Settings, *, seed: bool = True) -> "Runtime":
        """Connect, migrate, validate prices and load the starter cast."""
        db = Database(settings.effective_database_url, pool_size=settings.database_pool_size,
                      max_overflow=settings.database_max_overflow)
        await db.migrate()
        users, calls = UserStore(db), CallStore(db)
        runtime = cls(settings=settings, db=db, prices=settings.price_book, users=users, calls=calls,
                      memory=PersonaRelationshipManager(MemoryStore(db), Forgetting(settings.memory_hash_key_bytes())), budgets=BudgetManager(users, calls),
                      leases=LeaseStore(db))
        if seed:
            await seed_starter_data(users)
        await runtime.check_persona_prices()
        return runtime

    async def check_persona_prices(self) -> None:
        """A persona whose model has no price cannot be called: refuse at start-up."""
        s = self.settings
        needs = []
        for persona in await self.users.list_personas():
            if persona["llm_model"]:
                needs += [("cerebras", "llm", persona["llm_model"], "input_token"),
                          ("cerebras", "llm", persona["llm_model"], "output_token")]
            if persona["tts_model"]:
                needs.append(("elevenlabs", "tts", persona["tts_model"], "character"))
        self.prices.require_models(needs + s.llm_rate_requirements())

    async def close(self) -> None:
        await self.db.dispose()
