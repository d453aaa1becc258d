"""Shared fixtures: a fresh database per test on SQLite, and on PostgreSQL when reachable."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from agent.runtime import Runtime
from agent.settings import Settings

PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_reachable() -> bool:
    async def probe() -> bool:
        import asyncpg

        try:
            conn = await asyncio.wait_for(asyncpg.connect(PG_URL), 3)
        except Exception:
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


POSTGRES_AVAILABLE = _postgres_reachable()


async def _reset_postgres() -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    if not POSTGRES_AVAILABLE:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    asyncio.run(_reset_postgres())
    return PG_URL


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(_env_file=None, database_url=database_url, data_dir=tmp_path)


@pytest.fixture
async def runtime(settings: Settings):
    rt = await Runtime.start(settings)
    try:
        yield rt
    finally:
        await rt.close()
