"""The cost of a call while it runs: /cost, /cost/events and /cost/stream, and operators' live view.

Two kinds of live call, neither mocked: one opened and begun through the
server's own `CallLifecycle` (its tracker gets real priced events), and a
real phone call through the PhoneRig (Pipecat, vendor fakes, a Twilio caller).
"""

from __future__ import annotations

import asyncio
import json

import httpx

from agent.accounts.auth import mint_user_token
from api.views.call_costs import call_cost
from agent.calls.lifecycle import CallLifecycle
from tests.api_client import Api, api  # noqa: F401  (fixture)
from tests.phone_rig import DATA, PhoneRig


def parse_sse(text: str) -> list[tuple[str, dict]]:
    """(event, data) of each server-sent event; keep-alive comments are skipped."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "data" in fields:
            events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


def micros(amount: str) -> int:
    return round(float(amount) * 1_000_000)


async def _live_call(api: Api, user_id: str = "demo"):
    api.settings.cost_flush_interval_secs = 0.05  # the tracker flushes to the database this often
    allowance = await api.lifecycle.open(user_id, "brad", "inbound")
    return await api.lifecycle.begin(allowance.call_id)


async def test_cost_and_events_are_live_while_the_call_runs(api: Api):
    session = await _live_call(api)
    url = f"/api/calls/{session.call_id}"
    session.tracker.track_tts(400, model="eleven_flash_v2_5")
    first = (await api.client.get(f"{url}/cost", headers=api.user())).json()
    assert first["live"] is True and first["source"] == "live" and first["status"] == "live"
    assert first["services"]["tts"]["units"] == {"character": "400"}

    session.tracker.track_llm(3000, 120, vendor="cerebras", model="gpt-oss-120b")
    second = (await api.client.get(f"{url}/cost", headers=api.user())).json()
    assert micros(second["total_usd"]) > micros(first["total_usd"])
    assert second["event_count"] == first["event_count"] + 2
    assert micros(second["total_usd"]) == session.tracker.running_total_micros()
    assert second["limit_usd"] == "10.00" and 0 < second["used_pct"] < 100
    # total = events + carrier minutes so far + Stripe fee
    assert micros(second["total_usd"]) == (micros(second["subtotal_usd"]) + micros(second["provisional_carrier_usd"])
                                           + micros(second["stripe_fee_usd"]))

    events = (await api.client.get(f"{url}/cost/events", headers=api.user())).json()
    assert events["live"] is True and len(events["events"]) == len(session.tracker.events)  # unflushed ones too
    assert [e["seq"] for e in events["events"]] == sorted(e["seq"] for e in events["events"])

    # Another worker holds no tracker for this call: it reads what the flushes stored.
    await session.tracker.flush()
    elsewhere = await call_cost(CallLifecycle(api.rt), await api.rt.calls.get(session.call_id))
    assert elsewhere.source == "stored" and elsewhere.live is True
    assert micros(elsewhere.subtotal_usd) == session.tracker.subtotal_micros
    assert (await api.rt.calls.get(session.call_id))["spent_micros"] > 0  # updated by the flush

    live = (await api.client.get("/api/admin/calls/live", headers=api.admin)).json()
    assert [(c["call_id"], c["in_this_process"]) for c in live] == [(session.call_id, True)]
    assert micros(live[0]["running_total_usd"]) > 0

    final = await api.lifecycle.end(session, reason="caller_hung_up")
    ended = (await api.client.get(f"{url}/cost", headers=api.user())).json()
    assert ended["live"] is False and ended["source"] == "final" and micros(ended["total_usd"]) == final.total_micros
    assert (await api.client.get("/api/admin/calls/live", headers=api.admin)).json() == []


async def test_cost_stream_follows_the_call_and_ends_with_it(api: Api):
    session = await _live_call(api)
    session.tracker.track_tts(100, model="eleven_flash_v2_5")
    stream = asyncio.create_task(api.client.get(f"/api/calls/{session.call_id}/cost/stream",
                                                params={"interval": 0.1}, headers=api.user()))
    for _ in range(4):  # the call goes on: more is said, more is spent
        await asyncio.sleep(0.25)
        session.tracker.track_tts(300, model="eleven_flash_v2_5")
        session.tracker.track_llm(2000, 60, vendor="cerebras", model="gpt-oss-120b")
    final = await api.lifecycle.end(session, reason="caller_hung_up")
    response = await asyncio.wait_for(stream, 10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    running = [data for name, data in events if name == "cost"]
    assert len(running) >= 4 and all(d["live"] and d["source"] == "live" for d in running)
    totals = [micros(d["total_usd"]) for d in running]
    assert totals == sorted(totals) and totals[-1] > totals[0]  # the running total grew while we watched
    name, last = events[-1]
    assert name == "end" and last["live"] is False and last["source"] == "final"
    assert micros(last["total_usd"]) == final.total_micros


async def test_stream_of_an_ended_call_is_one_final_event(api: Api):
    session = await _live_call(api)
    await api.lifecycle.end(session, reason="caller_hung_up")
    response = await api.client.get(f"/api/calls/{session.call_id}/cost/stream", headers=api.user())
    assert [name for name, _ in parse_sse(response.text)] == ["end"]


async def test_operator_ends_a_call_without_media_by_closing_its_books(api: Api):
    session = await _live_call(api)
    ended = await api.client.post(f"/api/admin/calls/{session.call_id}/end", headers=api.admin)
    assert ended.status_code == 200 and ended.json()["action"] == "books_closed"
    call = await api.rt.calls.get(session.call_id)
    assert call["status"] == "ended" and call["end_reason"] == "operator_ended"
    again = await api.client.post(f"/api/admin/calls/{session.call_id}/end", headers=api.admin)
    assert again.status_code == 409 and "already ended" in again.json()["detail"]
    missing = await api.client.post("/api/admin/calls/nosuchcall/end", headers=api.admin)
    assert missing.status_code == 404


async def test_operator_cancels_a_call_that_has_not_started(api: Api):
    allowance = await api.lifecycle.open("demo", "maya", "outbound")
    ended = await api.client.post(f"/api/admin/calls/{allowance.call_id}/end", headers=api.admin)
    assert ended.status_code == 200 and ended.json()["action"] == "cancelled_before_start"
    call = await api.rt.calls.get(allowance.call_id)
    assert call["status"] == "ended" and call["end_reason"] == "operator_ended"
    summary = (await api.client.get("/api/user/costs/summary", headers=api.user())).json()
    assert summary["today"]["committed_usd"] == "0.00"  # the reservation is released


async def test_a_real_phone_call_shows_its_cost_live_and_an_operator_can_end_it(tmp_path):
    """Our server in uvicorn, Pipecat and the vendor fakes: watch the cost stream while the caller talks."""
    sid = "CA" + "e" * 32
    with PhoneRig(tmp_path, transcripts=["Hi Brad, how are you doing today?"],
                  cerebras_script=["Stoked to hear from you! The waves were great this morning."]) as rig:
        user = {"Authorization": f"Bearer {mint_user_token('demo', rig.settings.jwt_secret)}"}
        admin = {"Authorization": f"Bearer {rig.settings.admin_token}"}
        call_id, url = await rig.ring(sid)
        caller = await rig.connect_caller(sid, call_id, url)
        async with httpx.AsyncClient(base_url=rig.server.http_url, timeout=20) as client:
            await caller.wait_until(lambda: len(caller.speech_segments) >= 1, timeout=20)  # the greeting
            cost = (await client.get(f"/api/calls/{call_id}/cost", headers=user)).json()
            assert cost["live"] is True and cost["source"] == "live" and "tts" in cost["services"]

            seen: list[tuple[str, dict]] = []

            async def watch() -> None:
                async with client.stream("GET", f"/api/calls/{call_id}/cost/stream", params={"interval": 0.2},
                                         headers=user) as stream:
                    assert stream.status_code == 200
                    buffer = ""
                    async for chunk in stream.aiter_text():
                        buffer += chunk
                        *complete, buffer = buffer.split("\n\n")
                        seen.extend(parse_sse("\n\n".join(complete) + "\n\n"))

            watcher = asyncio.create_task(watch())
            await caller.silence(0.5)
            await caller.say_wav(DATA / "hello.wav")
            await caller.silence(0.3)
            await caller.wait_until(lambda: len(caller.speech_segments) >= 2, timeout=30)  # Brad answered
            await caller.wait_until(lambda: len({micros(d["total_usd"]) for _, d in seen}) >= 2, timeout=20)
            live = [d for name, d in seen if name == "cost"]
            assert live and all(d["live"] for d in live)  # seen while the call was still running
            assert (await rig.calls.get(call_id))["status"] == "live"

            listed = (await client.get("/api/admin/calls/live", headers=admin)).json()
            assert [c["call_id"] for c in listed] == [call_id] and listed[0]["in_this_process"]
            ended = await client.post(f"/api/admin/calls/{call_id}/end", headers=admin)
            assert ended.status_code == 200 and ended.json()["action"] == "pipeline_stopped"
            await asyncio.wait_for(watcher, 30)
            call = await rig.wait_for_call_end(call_id, timeout=30)

        assert call["end_reason"] == "operator_ended"
        assert any(hangup[0] == sid for hangup in rig.twilio.hangups)  # the phone line was hung up too
        name, last = seen[-1]
        assert name == "end" and last["source"] == "final" and micros(last["total_usd"]) == call["spent_micros"]
        totals = [micros(d["total_usd"]) for _, d in seen]
        assert totals == sorted(totals)
        await caller.hang_up()
