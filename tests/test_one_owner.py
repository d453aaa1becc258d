"""One call, one owner, through the real server: racing offers and media connections,
replayed media URLs, holds let go, and what a stale setting would do."""

import asyncio

import httpx
import pytest
from aiortc import RTCPeerConnection
from aiortc.contrib.media import MediaPlayer

from agent.memory.relationships import PersonaRelationshipManager
from agent.settings import Settings
from storage.db import Database
from storage.memory import MemoryStore
from tests.phone_rig import DATA, PhoneRig
from tests.test_webrtc_room import RoomRig


async def _offer(pc: RTCPeerConnection) -> dict:
    pc.addTrack(MediaPlayer(str(DATA / "hello.wav")).audio)
    await pc.setLocalDescription(await pc.createOffer())
    return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}


async def _room_call(http: httpx.AsyncClient) -> tuple[str, dict]:
    token = (await http.post("/room/token", json={"user_id": "demo"})).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    started = await http.post("/start", json={"body": {"persona_id": "brad"}}, headers=auth)
    assert started.status_code == 200, started.text
    return started.json()["sessionId"], auth


async def _wait_ended(rig: RoomRig, call_id: str) -> dict:
    for _ in range(150):
        call = await rig.calls.get(call_id)
        if call["status"] == "ended":
            return call
        await asyncio.sleep(0.2)
    raise AssertionError(f"call {call_id} did not end: {call}")


async def _total_calls(settings: Settings) -> int:
    db = Database(settings.effective_database_url)
    try:
        return (await PersonaRelationshipManager(MemoryStore(db)).get_relationship("demo", "brad")).total_calls
    finally:
        await db.dispose()


@pytest.mark.parametrize("in_a_row", [False, True], ids=["four-at-once", "three-in-a-row"])
async def test_racing_offers_start_exactly_one_pipeline(tmp_path, in_a_row):
    with RoomRig(tmp_path, ["Hi Brad, how are you doing today?"], ["Great to hear from you!"]) as rig:
        async with httpx.AsyncClient(base_url=rig.server.http_url, timeout=30) as http:
            before = await _total_calls(rig.settings)
            call_id, auth = await _room_call(http)
            peers = [RTCPeerConnection() for _ in range(3 if in_a_row else 4)]
            offers = [await _offer(pc) for pc in peers]
            url = f"/sessions/{call_id}/api/offer"
            if in_a_row:
                answers = [await http.post(url, json=offer, headers=auth) for offer in offers]
            else:
                answers = await asyncio.gather(*(http.post(url, json=offer, headers=auth) for offer in offers))
            statuses = sorted(a.status_code for a in answers)
            assert statuses == [200] + [409] * (len(peers) - 1), [a.text for a in answers]
            app_state = rig.server.app.state
            assert list(app_state.lifecycle.live) == [call_id]  # one pipeline, one set of books
            admin = {"Authorization": f"Bearer {rig.settings.admin_token}"}
            ended = await http.post(f"/api/admin/calls/{call_id}/end", headers=admin)
            assert ended.status_code == 200 and ended.json()["action"] == "pipeline_stopped", ended.text
            for pc in peers:
                await pc.close()
            call = await _wait_ended(rig, call_id)
            assert call["end_reason"] == "operator_ended"
            events = await rig.calls.events(call_id)
            breakdown = await rig.calls.breakdown(call_id)
            assert breakdown["subtotal_micros"] == sum(e["cost_micros"] for e in events)
            assert len({e["seq"] for e in events}) == len(events)
            assert call["spent_micros"] == breakdown["total_micros"]
            assert await _total_calls(rig.settings) == before + 1


async def test_a_renegotiation_or_ice_for_another_calls_connection_is_refused(tmp_path):
    with RoomRig(tmp_path, ["Hi Brad, how are you doing today?"], ["Great to hear from you!"]) as rig:
        async with httpx.AsyncClient(base_url=rig.server.http_url, timeout=30) as http:
            mine, auth = await _room_call(http)
            theirs, _ = await _room_call(http)  # same user here: the pc_id is bound to its call, not its user
            pc_theirs, pc_mine = RTCPeerConnection(), RTCPeerConnection()
            answer = await http.post(f"/sessions/{theirs}/api/offer", json=await _offer(pc_theirs), headers=auth)
            assert answer.status_code == 200, answer.text
            their_pc_id = answer.json()["pc_id"]
            again = await _offer(pc_mine)
            renegotiate = await http.post(f"/sessions/{mine}/api/offer", json={**again, "pc_id": their_pc_id},
                                          headers=auth)
            assert renegotiate.status_code == 404
            ice = await http.patch(f"/sessions/{mine}/api/offer", headers=auth, json={
                "pc_id": their_pc_id, "candidates": [{"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host",
                                                      "sdp_mid": "0", "sdp_mline_index": 0}]})
            assert ice.status_code == 404
            for pc in (pc_theirs, pc_mine):
                await pc.close()


async def test_two_media_connections_for_one_call_run_one_pipeline(tmp_path):
    with PhoneRig(tmp_path, transcripts=["Hi Brad, how are you doing today?"]) as rig:
        sid = "CA" + "7" * 32
        call_id, url = await rig.ring(sid)
        first, second = await asyncio.gather(rig.connect_caller(sid, call_id, url),
                                             rig.connect_caller(sid, call_id, url))
        winner = None
        for _ in range(100):
            closed = [c for c in (first, second) if c.closed_by_server]
            talking = [c for c in (first, second) if c.speech_segments]
            if closed and talking:
                winner = talking[0]
                break
            await asyncio.sleep(0.1)
        assert winner is not None, "one connection should be refused and the other greeted"
        loser = second if winner is first else first
        assert loser.close_code == 1008 and not loser.speech_segments
        assert list(rig.app.state.lifecycle.live) == [call_id]
        await winner.hang_up()
        await loser.hang_up()
        call = await rig.wait_for_call_end(call_id)
        breakdown = await rig.calls.breakdown(call_id)
        events = await rig.calls.events(call_id)
        assert breakdown["subtotal_micros"] == sum(e["cost_micros"] for e in events)
        assert call["spent_micros"] == breakdown["total_micros"]


async def test_a_replayed_media_url_of_an_ended_call_is_refused_cleanly(tmp_path, capfd):
    with PhoneRig(tmp_path, transcripts=["Hi Brad, how are you doing today?"]) as rig:
        sid = "CA" + "8" * 32
        call_id, url = await rig.ring(sid)
        caller = await rig.connect_caller(sid, call_id, url)
        await caller.wait_until(lambda: len(caller.speech_segments) >= 1, timeout=20)
        await caller.hang_up()
        await rig.wait_for_call_end(call_id)
        replay = await rig.connect_caller(sid, call_id, url)
        await replay.wait_until(lambda: replay.closed_by_server, timeout=10)
        assert replay.close_code == 1008 and not replay.speech_segments
        await replay.hang_up()
        assert "LookupError" not in capfd.readouterr().err


def test_start_up_refuses_a_stale_limit_that_would_finalise_healthy_calls():
    with pytest.raises(ValueError, match="STALE_CALL_SECS .* HEARTBEAT_SECS"):
        Settings(_env_file=None, stale_call_secs=11, heartbeat_secs=10)
    assert Settings(_env_file=None, stale_call_secs=30, heartbeat_secs=10).stale_call_secs == 30
