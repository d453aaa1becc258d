"""Starting the servers under test, and the one database several of ours share.

Single-process runs use a SQLite file of their own (the default deployment).
The per-machine run starts `os.cpu_count()` processes of ours, each on its own
port, on ONE database, as a deployment behind a load balancer would: a fresh
PostgreSQL database when a server answers on 127.0.0.1:5432 (created as the
`postgres` user, dropped afterwards), else a SQLite file in WAL mode that all
of them open (the product sets WAL and busy timeouts itself). The first worker
creates the callers' users; the others start once it listens, side by side.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from bench.procs import Child
from bench.session import USER_POOL, Server

PG_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def start(mode: str, fakes: dict[str, str], work: Path, *, name: str, callers: int = USER_POOL,
          database_url: str = "") -> Child:
    """A `bench.server_proc` child (not yet ready: call `.ready()`, so several can start side by side)."""
    data_dir = work / name
    data_dir.mkdir(parents=True, exist_ok=True)
    args = ["--mode", mode, "--fakes", json.dumps(fakes), "--dir", str(data_dir), "--callers", str(callers)]
    if database_url:
        args += ["--database-url", database_url]
    return Child("bench.server_proc", args, work / f"server-{name}.log")


def as_server(mode: str, child: Child) -> Server:
    return Server(mode, child.info["port"], child.pid, child.log_path)


def _pg_url(database: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


async def _pg(statement: str) -> bool:
    import asyncpg

    try:
        conn = await asyncio.wait_for(asyncpg.connect(PG_ADMIN_URL), 3)
    except Exception:
        return False
    try:
        await conn.execute(statement)
        return True
    except Exception:
        return False
    finally:
        await conn.close()


def shared_database(work: Path) -> tuple[str, str]:
    """(database URL, what it is) for the per-machine run: fresh PostgreSQL if reachable, else shared SQLite."""
    name = f"callmeback_bench_{os.getpid()}"
    if asyncio.run(_pg(f"DROP DATABASE IF EXISTS {name}")) and asyncio.run(_pg(f"CREATE DATABASE {name}")):
        return _pg_url(name), f"PostgreSQL (fresh database {name} on 127.0.0.1:5432)"
    path = work / "shared.db"
    return f"sqlite:///{path}", f"SQLite in WAL mode, one file shared by all workers ({path}); no PostgreSQL answered"


def drop_database(url: str) -> None:
    if url.startswith("postgresql"):
        asyncio.run(_pg(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)"))


def start_workers(count: int, fakes: dict[str, str], work: Path, database_url: str) -> list[Child]:
    """`count` processes of ours on one database; the first migrates it and creates the users."""
    first = start("ours", fakes, work, name="ours-w0", database_url=database_url).ready()
    rest = [start("ours", fakes, work, name=f"ours-w{i}", callers=0, database_url=database_url)
            for i in range(1, count)]
    children = [first]
    try:
        for child in rest:
            children.append(child.ready())
    except Exception:
        for child in children + rest:
            child.stop()
        raise
    return children
