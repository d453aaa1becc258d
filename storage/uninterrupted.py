"""Database work that a cancelled task cannot leave half done.

Cancelling a task while its statement runs (a call's flush task at hang-up, a
`wait_for` around a memory load) raises `CancelledError` inside SQLAlchemy,
which then invalidates the connection instead of rolling it back; on SQLite the
abandoned connection keeps its write transaction, and with it the database's
write lock, until it is garbage-collected: every other writer waits its 30 s
busy timeout and fails with "database is locked". So each statement of a
transaction, and its begin, commit, rollback and close, is run to its end in a
task of its own; a cancellation is honoured only after it, and the transaction
is then rolled back, never abandoned.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

T = TypeVar("T")


async def uninterrupted(work: Awaitable[T]) -> T:
    """Await `work` to its end even if this task is cancelled meanwhile; then honour the cancellation."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():  # the work itself was cancelled (the loop is closing): so are we
                raise
            cancelled = True  # this task was; even if the work finished in the same instant, say so after
        except BaseException:
            break
    if cancelled:
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what this task reports
        raise asyncio.CancelledError
    return task.result()


class UninterruptedConnection:
    """A transaction's connection whose statements always run to their end."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:  # dialect, sync_connection, ...: as the connection has them
        return getattr(self._conn, name)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await uninterrupted(self._conn.execute(*args, **kwargs))


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[UninterruptedConnection]:
    """`async with transaction(engine) as conn:` commits at the end, rolls back on any exception."""
    conn = engine.connect()
    try:
        await uninterrupted(conn.start())
        await uninterrupted(conn.begin())
        yield UninterruptedConnection(conn)
        await uninterrupted(conn.commit())
    except BaseException:
        if _started(conn) and conn.in_transaction():
            await uninterrupted(conn.rollback())
        raise
    finally:
        if _started(conn):  # back to the pool, even when start or begin was what got cancelled
            await uninterrupted(conn.close())


def _started(conn: AsyncConnection) -> bool:
    """Whether the connection was checked out (a refused connection never was)."""
    return conn.sync_connection is not None
