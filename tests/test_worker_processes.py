"""`WORKERS=2`: two server processes on one port and one database take calls side by side."""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from agent.accounts.auth import mint_user_token
from storage.calls import CallStore
from storage.db import Database
from tests.conftest import PG_URL, POSTGRES_AVAILABLE, _reset_postgres
from tests.phone_rig import ACCOUNT_SID
from tests.workers import JWT_SECRET, Fakes, Server, free_port, ring

CALLS = 6


def _children(pid: int) -> list[int]:
    """The processes `pid` started (uvicorn's workers), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not POSTGRES_AVAILABLE, reason="PostgreSQL is not reachable"))])
async def test_two_worker_processes_on_one_port_answer_every_call(tmp_path, database):
    from fakes import TwilioCaller

    url = PG_URL if database == "postgresql" else f"sqlite:///{tmp_path / 'shared.db'}"
    if database == "postgresql":
        await _reset_postgres()
    with ExitStack() as stack:
        fakes = Fakes(stack, said=lambda _i: "Hi Brad, how are you doing today?", reply="All good, dude!")
        port = free_port()
        server = Server(fakes.env(port, tmp_path / "data", DATABASE_URL=url, WORKERS="2"), port,
                        tmp_path / "server.log")
        stack.callback(server.stop)
        server.start()
        deadline = time.monotonic() + 30
        while len(_children(server.proc.pid)) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        workers = _children(server.proc.pid)
        assert len(workers) >= 2, f"expected two worker processes, found {workers}"
        # Room in the demo user's daily budget for all the calls at once (each reserves its per-call limit).
        user = {"Authorization": f"Bearer {mint_user_token('demo', JWT_SECRET)}"}
        async with httpx.AsyncClient() as http:
            budget = await http.put(f"{server.url}/api/user/budget", headers=user, json={
                "per_call_limit_usd": "1.00", "daily_limit_usd": "50.00", "monthly_limit_usd": "500.00"})
            assert budget.status_code == 200, budget.text

        async def call(n: int) -> str:
            sid = f"CA{n:032d}"
            fakes.twilio.add_call(sid)
            call_id, media = await ring(server.url, sid)
            caller = await TwilioCaller(media, sid, ACCOUNT_SID, custom_parameters={"call_id": call_id}).connect()
            await caller.wait_until(lambda: len(caller.speech_segments) >= 1, timeout=30)  # the greeting
            await caller.hang_up()
            return call_id

        call_ids = await asyncio.gather(*(call(n) for n in range(CALLS)))
        db = Database(url)
        calls = CallStore(db)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                rows = [await calls.get(c) for c in call_ids]
                if all(r and r["status"] == "ended" for r in rows):
                    break
                await asyncio.sleep(0.3)
            assert [r["status"] for r in rows] == ["ended"] * CALLS
            assert all(r["end_reason"] == "caller_hung_up" for r in rows)
        finally:
            await db.dispose()
        log = server.log.read_text()
        assert "database is locked" not in log and "could not start" not in log
