"""The schema migrates on both engines, and the starter data is there once."""

from sqlalchemy import inspect

from agent.accounts.personas import DEMO_USER_ID, STARTER_PERSONAS
from agent.runtime import Runtime


async def test_migrations_create_every_table(runtime):
    async with runtime.db.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert {"users", "personas", "user_persona_relationships", "memory_facts", "call_summaries", "storylines",
            "calls", "call_cost_events", "call_cost_breakdowns", "user_budget_settings",
            "alembic_version"} <= tables


async def test_starter_personas_and_demo_user_loaded_once(runtime, settings):
    personas = await runtime.users.list_personas()
    assert {p["id"] for p in personas} == {p.id for p in STARTER_PERSONAS}
    brad = await runtime.users.get_persona("brad")
    assert brad["traits"] and brad["phone_number"].startswith("+")
    # A second start (a restart, or another worker) migrates nothing and seeds nothing twice.
    again = await Runtime.start(settings)
    try:
        assert len(await again.users.list_personas()) == len(STARTER_PERSONAS)
        assert (await again.users.get_user(DEMO_USER_ID))["phone_number"] == "+15555550100"
    finally:
        await again.close()


async def test_migrations_match_the_schema_exactly(runtime):
    """Alembic's revisions and storage/schema.py describe the same database (no drift)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.schema import metadata

    async with runtime.db.connect() as conn:
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
    assert diff == []
