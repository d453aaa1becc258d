"""Several real server processes on one PostgreSQL database: start-up together, a stalled
owner taken over, an operator's end through another worker, reconciliation shared out."""

import asyncio
import json
import signal
import time
from contextlib import ExitStack

import httpx
import pytest
from aiortc import RTCPeerConnection
from aiortc.contrib.media import MediaPlayer

from agent.memory.relationships import PersonaRelationshipManager
from storage.calls import CallStore
from storage.db import Database
from storage.memory import MemoryStore
from storage.users import UserStore
from tests.conftest import PG_URL, POSTGRES_AVAILABLE, _reset_postgres
from tests.phone_rig import ACCOUNT_SID, DATA
from tests.workers import ADMIN_TOKEN, Fakes, Server, free_port, ring

pytestmark = pytest.mark.skipif(not POSTGRES_AVAILABLE, reason="PostgreSQL is not reachable")
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EXTRACTED = {"facts_to_add": [], "facts_to_update": [], "facts_to_remove": [], "summary": "Talked about surfing.",
             "key_topics": ["surfing"], "outcome": "fine", "storylines": []}


def _reply(body: dict) -> str:
    return json.dumps(EXTRACTED) if body.get("response_format") else "Dawn patrol is the best, dude!"


def _workers(stack: ExitStack, fakes: Fakes, tmp_path, count: int, **settings: str) -> list[Server]:
    servers = []
    for n in range(count):
        port = free_port()
        env = fakes.env(port, tmp_path / f"w{n}", DATABASE_URL=PG_URL, **settings)
        server = Server(env, port, tmp_path / f"worker{n}.log")
        stack.callback(server.stop)
        servers.append(server)
    return servers


async def _until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def _ended(calls: CallStore, call_id: str):
    call = await calls.get(call_id)
    return call if call and call["status"] == "ended" else None


async def test_three_workers_started_at_once_on_an_empty_database_all_come_up(tmp_path):
    await _reset_postgres()
    with ExitStack() as stack:
        fakes = Fakes(stack, said=[], reply="Hi!")
        servers = _workers(stack, fakes, tmp_path, 3)
        for server in servers:
            server.spawn()  # all at once: migrations and starter data race
        for server in servers:
            server.wait_ready()
        async with httpx.AsyncClient() as http:
            for server in servers:
                users = await http.get(f"{server.url}/api/admin/users", headers=ADMIN)
                assert users.status_code == 200 and [u["id"] for u in users.json()] == ["demo"]


async def test_a_stalled_owner_is_taken_over_and_writes_nothing_after(tmp_path):
    from fakes import TwilioCaller

    await _reset_postgres()
    with ExitStack() as stack:
        fakes = Fakes(stack, said=lambda _i: "I went surfing at dawn today.", reply=_reply, payments=True)
        owner, other = _workers(stack, fakes, tmp_path, 2, HEARTBEAT_SECS="0.5", STALE_CALL_SECS="3",
                                RECONCILE_INTERVAL_SECS="0.5", END_POLL_SECS="0.3")
        owner.start()
        other.start()
        db = Database(PG_URL)
        calls = CallStore(db)
        await UserStore(db).update_user("demo", stripe_payment_method_id="pm_card_visa")

        sid = "CA" + "5" * 32
        call_id, url = await ring(owner.url, sid)
        fakes.twilio.add_call(sid)
        caller = await TwilioCaller(url, sid, ACCOUNT_SID, custom_parameters={"call_id": call_id}).connect()
        await caller.wait_until(lambda: len(caller.speech_segments) >= 1, timeout=20)
        await caller.say_wav(DATA / "hello.wav")
        await caller.silence(0.3)
        await caller.wait_until(lambda: len(fakes.cerebras.served_texts) >= 1, timeout=20)
        await asyncio.sleep(1.0)

        owner.signal(signal.SIGSTOP)  # longer than the lease: the other worker takes the call over
        taken = await _until(lambda: _ended(calls, call_id), 20, "the other worker to finalise the call")
        assert taken["end_reason"] == "reconciled" and taken["lease_epoch"] == 2  # owner's epoch was 1
        events_at_takeover = await calls.events(call_id)
        await _until(lambda: _captured(calls, call_id), 10, "the capture")
        resumed_at = time.monotonic()
        owner.signal(signal.SIGCONT)
        await asyncio.sleep(4)  # the old owner runs again: it must find out it lost the call and stop

        call = await calls.get(call_id)
        events = await calls.events(call_id)
        breakdown = await calls.breakdown(call_id)
        assert [e["seq"] for e in events] == [e["seq"] for e in events_at_takeover]  # nothing landed after
        assert breakdown["subtotal_micros"] == sum(e["cost_micros"] for e in events)
        assert call["spent_micros"] == breakdown["total_micros"] and call["end_reason"] == "reconciled"
        intent = call["payment_intent_id"]
        assert [a for i, a in fakes.stripe.captures if i == intent] == [breakdown["amount_charged_micros"] // 10_000]
        memory = PersonaRelationshipManager(MemoryStore(db))
        assert [s.call_id for s in await memory.recent_context("demo", "brad")].count(call_id) == 1
        assert (await memory.get_relationship("demo", "brad")).total_calls == 1
        late = [seg for seg in caller.speech_segments if seg.start > resumed_at + 3.0]
        assert late == [], "the old owner went on talking after it lost the call"
        await caller.hang_up()
        await db.dispose()


async def _captured(calls: CallStore, call_id: str):
    call = await calls.get(call_id)
    return call if call["payment_status"] == "captured" else None


async def test_an_operator_ends_calls_running_in_another_worker(tmp_path):
    from fakes import TwilioCaller

    await _reset_postgres()
    with ExitStack() as stack:
        fakes = Fakes(stack, said=lambda _i: "Hi Brad, how are you doing today?", reply="Great!")
        owner, other = _workers(stack, fakes, tmp_path, 2, END_POLL_SECS="0.3")
        owner.start()
        other.start()
        db = Database(PG_URL)
        calls = CallStore(db)
        async with httpx.AsyncClient(timeout=30) as http:
            # A phone call on the owner, ended through the other worker.
            sid = "CA" + "6" * 32
            fakes.twilio.add_call(sid)
            call_id, url = await ring(owner.url, sid)
            caller = await TwilioCaller(url, sid, ACCOUNT_SID, custom_parameters={"call_id": call_id}).connect()
            await caller.wait_until(lambda: len(caller.speech_segments) >= 1, timeout=20)
            ended = await http.post(f"{other.url}/api/admin/calls/{call_id}/end", headers=ADMIN)
            assert ended.status_code == 200 and ended.json()["action"] == "end_requested", ended.text
            call = await _until(lambda: _ended(calls, call_id), 15, "the phone call to end")
            assert call["end_reason"] == "operator_ended"
            await caller.hang_up()

            # A room call on the owner, ended through the other worker.
            token = (await http.post(f"{owner.url}/room/token", json={"user_id": "demo"}, headers=ADMIN)).json()
            auth = {"Authorization": f"Bearer {token['token']}"}
            started = await http.post(f"{owner.url}/start", json={"body": {"persona_id": "brad"}}, headers=auth)
            room_call = started.json()["sessionId"]
            pc = RTCPeerConnection()
            pc.addTrack(MediaPlayer(str(DATA / "hello.wav")).audio)
            await pc.setLocalDescription(await pc.createOffer())
            answer = await http.post(f"{owner.url}/sessions/{room_call}/api/offer", headers=auth,
                                     json={"sdp": pc.localDescription.sdp, "type": "offer"})
            assert answer.status_code == 200, answer.text
            ended = await http.post(f"{other.url}/api/admin/calls/{room_call}/end", headers=ADMIN)
            assert ended.status_code == 200 and ended.json()["action"] == "end_requested", ended.text
            call = await _until(lambda: _ended(calls, room_call), 15, "the room call to end")
            assert call["end_reason"] == "operator_ended"
            await pc.close()
        await db.dispose()


async def test_extraction_retries_stay_within_the_cap_across_workers(tmp_path):
    await _reset_postgres()
    with ExitStack() as stack:
        fakes = Fakes(stack, said=[], reply=lambda body: "not JSON at all")  # every extraction fails
        servers = _workers(stack, fakes, tmp_path, 3, RECONCILE_INTERVAL_SECS="0.3", EXTRACTION_BACKOFF_SECS="0.5")
        servers[0].start()  # the schema and the starter cast
        db = Database(PG_URL)
        calls = CallStore(db)
        transcript = [{"role": "user", "text": "I love surfing.", "at": "2026-12-01T09:00:00+00:00"},
                      {"role": "assistant", "text": "Me too!", "at": "2026-12-01T09:00:02+00:00"}]
        ids = []
        for n in range(4):
            async with calls.budget_transaction("demo") as tx:
                await tx.insert_call(id=f"pending{n}", user_id="demo", persona_id="brad", direction="inbound",
                                     status="ended", reserved_micros=0, limit_kind="per_call")
            await calls.update(f"pending{n}", transcript=transcript, extraction_status="pending")
            ids.append(f"pending{n}")
        for server in servers[1:]:
            server.start()
        await asyncio.sleep(8)  # dozens of reconciliation passes in every worker
        asked = [r for r in fakes.cerebras.requests if r.get("response_format")]
        assert 0 < len(asked) <= 3 * len(ids)
        for call_id in ids:
            call = await calls.get(call_id)
            assert call["extraction_attempts"] == 3 and call["extraction_status"] == "failed"
        await db.dispose()


async def test_the_database_going_away_gets_the_documented_answers(tmp_path):
    """TwiML that says sorry on the webhook, 503 with a detail on the API; never a 500."""
    from tests.db_proxy import ThreadedProxy

    await _reset_postgres()
    proxy = ThreadedProxy("127.0.0.1", 5432)
    proxied = PG_URL.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    with ExitStack() as stack:
        fakes = Fakes(stack, said=[], reply="Hi!")
        (server,) = _workers(stack, fakes, tmp_path, 1)
        server.env["DATABASE_URL"] = proxied
        server.start()
        from agent.accounts.auth import mint_user_token
        from tests.workers import JWT_SECRET

        user = {"Authorization": f"Bearer {mint_user_token('demo', JWT_SECRET)}"}
        async with httpx.AsyncClient(timeout=30) as http:
            assert (await http.get(f"{server.url}/api/calls", headers=user)).status_code == 200
            proxy.cut()  # every connection dropped, new ones refused
            say = await _voice(server.url)
            assert say.status_code == 200 and "can't take your call right now" in say.text, say.text
            for path, headers in [("/api/calls/abc/cost", user), ("/api/admin/calls/live", ADMIN),
                                  ("/api/calls", user), ("/api/personas/brad/memories", user)]:
                answer = await http.get(f"{server.url}{path}", headers=headers)
                assert answer.status_code == 503 and "database" in answer.json()["detail"], (path, answer.text)
            assert (await http.get(f"{server.url}/healthz")).status_code == 503
            proxy.restore()
            assert (await http.get(f"{server.url}/api/calls", headers=user)).status_code == 200
        assert "Traceback" not in server.log.read_text()
    proxy.close()


async def _voice(server_url: str) -> httpx.Response:
    from twilio.request_validator import RequestValidator

    from tests.phone_rig import AUTH_TOKEN, BRAD_PHONE, DEMO_PHONE

    params = {"CallSid": "CA" + "4" * 32, "From": DEMO_PHONE, "To": BRAD_PHONE, "AccountSid": ACCOUNT_SID}
    url = f"{server_url}/twilio/voice"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url, data=params, headers={"X-Twilio-Signature": signature})

