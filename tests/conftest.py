"""Shared fixtures: a fresh database per test on SQLite, and on PostgreSQL when reachable."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from agent.runtime import Runtime
from agent.settings import Settings

ADMIN_PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# Each test run gets a database of its own, so runs side by side never see each other's tables.
PG_DATABASE = f"callmeback_test_{os.getpid()}"
PG_URL = ADMIN_PG_URL.rsplit("/", 1)[0] + "/" + PG_DATABASE


def _postgres_reachable() -> bool:
    async def probe() -> bool:
        import asyncpg

        try:
            conn = await asyncio.wait_for(asyncpg.connect(ADMIN_PG_URL), 3)
        except Exception:
            return False
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE}")
            await conn.execute(f"CREATE DATABASE {PG_DATABASE}")
        except Exception:
            return False
        finally:
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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if POSTGRES_AVAILABLE:
        async def drop() -> None:
            import asyncpg

            conn = await asyncpg.connect(ADMIN_PG_URL)
            try:
                await conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
            finally:
                await conn.close()

        asyncio.run(drop())


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
