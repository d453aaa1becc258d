"""Calls ending while others start: no transaction outlives a cancelled task, no caller is refused.

A call's end cancels its flush task and waits on the carrier's status callback
while the next caller's webhook reserves a budget: on SQLite all of that meets at
the one write lock. Through `python server.py`, on SQLite and on PostgreSQL.
"""

import asyncio
import sqlite3
import time
from contextlib import ExitStack

import httpx
import pytest
from sqlalchemy import text
from twilio.request_validator import RequestValidator

from fakes import TwilioCaller
from storage.calls import CallStore
from storage.db import Database
from tests.conftest import PG_URL, POSTGRES_AVAILABLE, _reset_postgres
from tests.phone_rig import ACCOUNT_SID, AUTH_TOKEN, DATA
from tests.workers import Fakes, Server, free_port, ring

SLOW_SQLITE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000) SELECT count(*) FROM c"


async def test_a_write_cancelled_mid_statement_leaves_no_lock_behind(tmp_path):
    path = tmp_path / "cancel.db"
    db = Database(f"sqlite:///{path}")
    await db.migrate()

    async def slow_write() -> None:
        async with db.begin() as conn:
            await conn.execute(text("UPDATE users SET display_name = 'x' WHERE id = 'nobody'"))
            await conn.execute(text(SLOW_SQLITE))

    for delay in (0.05, 0.3):  # during the update's statement, and during the slow one
        task = asyncio.create_task(slow_write())
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        other = sqlite3.connect(path, timeout=2, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # "database is locked" after 2 s if the transaction was abandoned
        other.execute("ROLLBACK")
        other.close()
    await db.dispose()


async def test_a_cancellation_that_lands_as_the_work_finishes_is_not_lost():
    """The race that left a call's books open: its flush task, cancelled just as a write finished,
    swallowed the cancellation and slept on, and the call's end waited for it for ever."""
    from storage.uninterrupted import uninterrupted

    work = asyncio.get_running_loop().create_future()

    async def flush_loop() -> None:
        await uninterrupted(work)
        await asyncio.sleep(30)  # where a swallowed cancellation would leave it

    task = asyncio.create_task(flush_loop())
    await asyncio.sleep(0)  # waiting on the work
    work.set_result(None)
    task.cancel()  # before the task has seen the result
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)


def _status(server_url: str, call_sid: str, seconds: int) -> dict:
    params = {"CallSid": call_sid, "CallStatus": "completed", "CallDuration": str(seconds), "AccountSid": ACCOUNT_SID}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(f"{server_url}/twilio/status", params)
    return {"data": params, "headers": {"X-Twilio-Signature": signature}}


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_calls_churning_are_never_refused_and_never_meet_a_lock(tmp_path, database):
    if database == "postgres":
        if not POSTGRES_AVAILABLE:
            pytest.skip("PostgreSQL is not reachable")
        await _reset_postgres()
    extra = {"DATABASE_URL": PG_URL} if database == "postgres" else {}
    with ExitStack() as stack:
        fakes = Fakes(stack, said=lambda _i: "I went surfing at dawn today.", reply="Dawn patrol rules!")
        port = free_port()
        server = Server(fakes.env(port, tmp_path, **extra), port, tmp_path / "server.log")
        stack.callback(server.stop)
        server.start()
        db = Database(extra.get("DATABASE_URL") or f"sqlite:///{tmp_path / 'callmeback.db'}")
        calls = CallStore(db)

        async def start(n: int) -> tuple[str, str, TwilioCaller]:
            sid = f"CA{n:032d}"
            fakes.twilio.add_call(sid)
            call_id, url = await ring(server.url, sid)  # TwiML that connects, not "can't take your call"
            caller = await TwilioCaller(url, sid, ACCOUNT_SID, custom_parameters={"call_id": call_id}).connect()
            await caller.wait_until(lambda: len(caller.speech_segments) >= 1, timeout=30)
            await caller.say_wav(DATA / "hello.wav")
            return sid, call_id, caller

        async def end(sid: str, caller: TwilioCaller, http: httpx.AsyncClient) -> None:
            await caller.hang_up()
            answer = await http.post(f"{server.url}/twilio/status", **_status(server.url, sid, 4))
            assert answer.status_code == 204, answer.text

        started = time.monotonic()
        async with httpx.AsyncClient(timeout=60) as http:
            ids = []
            sid, call_id, caller = await start(0)
            ids.append(call_id)
            for n in range(1, 5):  # each call ends exactly as the next one starts
                _, (sid, call_id, caller) = await asyncio.gather(end(sid, caller, http), start(n))
                ids.append(call_id)
            await end(sid, caller, http)
        for call_id in ids:
            for _ in range(100):
                call = await calls.get(call_id)
                if call["status"] == "ended":
                    break
                await asyncio.sleep(0.2)
            assert call["status"] == "ended" and call["end_reason"] == "caller_hung_up", call
            assert (await calls.breakdown(call_id))["total_micros"] == call["spent_micros"]
        await db.dispose()
        server.stop()
    log = (tmp_path / "server.log").read_text()
    assert "database is locked" not in log and "could not start" not in log and "Traceback" not in log
    assert time.monotonic() - started < 120  # no 30 s lock waits along the way
