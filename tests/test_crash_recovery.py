"""Nothing lost: kill -9 the server during live calls; after a restart the books, the
captures and the memories are all there, exactly once."""

import asyncio
import json
import os
import time
from contextlib import ExitStack
from pathlib import Path


from storage.calls import CallStore
from storage.db import Database
from storage.users import UserStore
from fakes import DeepgramFake, ElevenLabsFake, OpenAIFake, ServedApp, StripeFake, TwilioRestFake
from tests.phone_rig import ACCOUNT_SID, AUTH_TOKEN, DATA
from tests.workers import Server, free_port, ring

ROOT = Path(__file__).parent.parent
STRIPE_KEY = "sk_test_crash"
EXTRACTED = {"facts_to_add": [{"category": "user_facts", "key": "hobby", "value": "surfing at dawn"}],
             "facts_to_update": [], "facts_to_remove": [], "summary": "Talked about surfing at dawn.",
             "key_topics": ["surfing"], "outcome": "cut short", "storylines": []}


def _reply(body: dict) -> str:
    """Conversation turns stream; the post-call extraction asks for JSON."""
    return json.dumps(EXTRACTED) if body.get("response_format") else "Dawn patrol is the best, dude!"


async def test_killed_server_loses_no_cost_no_capture_and_no_memory(tmp_path):
    from fakes import TwilioCaller

    cerebras, stripe_fake = OpenAIFake(default_reply=_reply), StripeFake(api_key=STRIPE_KEY)
    twilio = TwilioRestFake(ACCOUNT_SID, AUTH_TOKEN)
    deepgram = DeepgramFake(lambda _i: "I went surfing at dawn today.", inaudible=None)
    elevenlabs = ElevenLabsFake(ms_per_char=10)
    port = free_port()
    with ExitStack() as stack:
        served = {name: stack.enter_context(ServedApp(fake.app)) for name, fake in [
            ("deepgram", deepgram), ("cerebras", cerebras), ("openai", OpenAIFake()), ("elevenlabs", elevenlabs),
            ("twilio", twilio), ("stripe", stripe_fake)]}
        env = {**os.environ, "PORT": str(port), "DATA_DIR": str(tmp_path), "LOG_LEVEL": "INFO",
               "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "JWT_SECRET": "j" * 40, "ADMIN_TOKEN": "a" * 30,
               "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
               "TWILIO_API_BASE_URL": served["twilio"].http_url,
               "DEEPGRAM_API_KEY": "test-key", "DEEPGRAM_BASE_URL": served["deepgram"].ws_url,
               "CEREBRAS_API_KEY": "test-key", "CEREBRAS_BASE_URL": served["cerebras"].http_url + "/v1",
               "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": served["openai"].http_url + "/v1",
               "ELEVENLABS_API_KEY": "test-key", "ELEVENLABS_BASE_URL": served["elevenlabs"].ws_url,
               "STRIPE_SECRET_KEY": STRIPE_KEY, "STRIPE_API_BASE": served["stripe"].http_url,
               "COST_FLUSH_INTERVAL_SECS": "0.2", "HEARTBEAT_SECS": "0.5", "STALE_CALL_SECS": "2",
               "RECONCILE_INTERVAL_SECS": "1"}
        server = Server(env, port, tmp_path / "server.log")
        stack.callback(server.stop)
        server.start()
        db = Database(f"sqlite:///{tmp_path / 'callmeback.db'}")
        calls, users = CallStore(db), UserStore(db)
        await users.update_user("demo", stripe_payment_method_id="pm_card_visa")

        sids = ["CA" + str(n) * 32 for n in (1, 2)]
        rung = [await ring(f"http://127.0.0.1:{port}", sid) for sid in sids]
        callers = [await TwilioCaller(url, sid, ACCOUNT_SID, custom_parameters={"call_id": call_id}).connect()
                   for sid, (call_id, url) in zip(sids, rung)]
        await asyncio.gather(*(c.wait_until(lambda c=c: len(c.speech_segments) >= 1, timeout=15) for c in callers))
        await asyncio.gather(*(c.say_wav(DATA / "hello.wav") for c in callers))
        await asyncio.gather(*(c.silence(0.3) for c in callers))
        await callers[0].wait_until(lambda: len(cerebras.served_texts) >= 2, timeout=20)
        await asyncio.sleep(1.0)  # the replies' usage reaches the ledger
        before = {call_id: await calls.events(call_id) for call_id, _ in rung}
        assert all(before.values())

        server.kill()  # mid-call: no finally blocks, no flush, no capture
        for caller in callers:
            await caller.hang_up()
        assert stripe_fake.captures == []
        await asyncio.sleep(2.5)  # the dead process's heartbeats go stale
        server.start()

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [await calls.get(call_id) for call_id, _ in rung]
            if all(s["status"] == "ended" and s["payment_status"] == "captured"
                   and s["extraction_status"] == "done" for s in states):
                break
            await asyncio.sleep(0.3)
        else:
            raise AssertionError(f"not reconciled: {states}\n{(tmp_path / 'server.log').read_text()[-3000:]}")

        for call_id, _ in rung:
            events = await calls.events(call_id)
            assert {e["seq"] for e in before[call_id]} <= {e["seq"] for e in events}  # nothing written was lost
            breakdown = await calls.breakdown(call_id)
            assert breakdown["subtotal_micros"] == sum(e["cost_micros"] for e in events)
            intent = (await calls.get(call_id))["payment_intent_id"]
            assert [amount for i, amount in stripe_fake.captures if i == intent] == [
                breakdown["amount_charged_micros"] // 10_000]  # captured exactly once, exactly the charge
            assert (await calls.get(call_id))["end_reason"] == "reconciled"

        # Another restart changes nothing: no second capture, no second finalisation.
        server.stop()
        server.start()
        await asyncio.sleep(2)
        assert len(stripe_fake.captures) == 2
        from agent.memory.relationships import PersonaRelationshipManager
        from storage.memory import MemoryStore

        facts = await PersonaRelationshipManager(MemoryStore(db)).long_term_memory("demo", "brad")
        assert [(f.key, f.value) for f in facts["user_facts"]] == [("hobby", "surfing at dawn")]
        await db.dispose()
