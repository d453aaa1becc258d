"""The test room: a real WebRTC client (aiortc) talks to the room's endpoints on loopback."""

import asyncio
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer

from agent.settings import Settings
from fakes import DeepgramFake, ElevenLabsFake, OpenAIFake, ServedApp
from server import create_app
from storage.calls import CallStore
from storage.db import Database
from tests.phone_rig import DATA


class RoomRig:
    """Our server with the vendors' fakes, as a developer's machine runs it (no Twilio, not public)."""

    def __init__(self, tmp_path, transcripts, replies, *, vendors: bool = True, **overrides):
        self.tmp = tmp_path
        self.overrides = overrides  # more settings (say, LOCAL_LLM)
        self.vendors = vendors  # False: no keys at all, the embedded default's local engines
        self.deepgram = DeepgramFake(transcripts, inaudible=None)
        self.cerebras = OpenAIFake(replies, default_reply="Nice!")
        self.elevenlabs = ElevenLabsFake(ms_per_char=10)
        self._stack = ExitStack()

    def __enter__(self):
        dg, llm, tts, fallback = (self._stack.enter_context(ServedApp(f.app)) for f in (
            self.deepgram, self.cerebras, self.elevenlabs, OpenAIFake()))
        keys = dict(deepgram_api_key="test-key", deepgram_base_url=dg.ws_url,
                    cerebras_api_key="test-key", cerebras_base_url=f"{llm.http_url}/v1",
                    openai_api_key="test-key", openai_base_url=f"{fallback.http_url}/v1",
                    elevenlabs_api_key="test-key", elevenlabs_base_url=tts.ws_url) if self.vendors else {}
        self.settings = Settings(_env_file=None, data_dir=self.tmp, database_url=f"sqlite:///{self.tmp / 'room.db'}",
                                 cost_flush_interval_secs=0.2, **keys, **self.overrides)
        self.server = self._stack.enter_context(ServedApp(create_app(self.settings), lifespan="on"))
        self.calls = CallStore(Database(self.settings.effective_database_url))
        return self

    async def speak_until_answered(self, wav: Path, timeout: float) -> float | None:
        """A room caller whose microphone plays `wav`: seconds from the track's start to the LLM's
        first request (the caller's turn ended), or None if none came within `timeout`."""
        async with httpx.AsyncClient(base_url=self.server.http_url) as http:
            token = (await http.post("/room/token", json={"user_id": "demo"})).json()["token"]
            auth = {"Authorization": f"Bearer {token}"}
            call_id = (await http.post("/start", json={"body": {"persona_id": "brad"}}, headers=auth)
                       ).json()["sessionId"]
            pc = RTCPeerConnection()
            pc.addTrack(MediaPlayer(str(wav)).audio)
            await pc.setLocalDescription(await pc.createOffer())
            answer = await http.post(f"/sessions/{call_id}/api/offer", headers=auth, json={
                "sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
            await pc.setRemoteDescription(RTCSessionDescription(**{k: answer.json()[k] for k in ("sdp", "type")}))
            started, answered = time.monotonic(), None
            while time.monotonic() - started < timeout:
                if any(r.get("stream") for r in self.cerebras.requests):
                    answered = time.monotonic() - started
                    break
                await asyncio.sleep(0.02)
            await pc.close()
        return answered

    async def memory_snapshot(self, user_id: str = "demo", persona_id: str = "brad"):
        """What the persona knows, read from the server's database by a reader of our own."""
        from agent.memory.relationships import PersonaRelationshipManager
        from storage.memory import MemoryStore

        return await PersonaRelationshipManager(MemoryStore(self.calls.db)).snapshot(user_id, persona_id)

    def __exit__(self, *exc):
        self._stack.close()


async def _heard_energy(track, seconds: float) -> float:
    """Peak RMS of what the browser would play, over `seconds`."""
    peak, deadline = 0.0, asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        try:
            frame = await asyncio.wait_for(track.recv(), 1.0)
        except asyncio.TimeoutError:
            continue
        samples = frame.to_ndarray().astype(np.float64)
        peak = max(peak, float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0)
    return peak


async def test_a_browser_talks_to_a_persona_and_the_ledger_is_written(tmp_path):
    with RoomRig(tmp_path, ["Hi Brad, how are you doing today?"], ["Hey! Doing great in the browser."]) as rig:
        async with httpx.AsyncClient(base_url=rig.server.http_url) as http:
            config = (await http.get("/room/config")).json()
            assert {"brad", "maya"} <= {p["id"] for p in config["personas"]}
            assert config["engines"]["stt"] == "deepgram"
            token = (await http.post("/room/token", json={"user_id": "demo"})).json()["token"]
            started = await http.post("/start", json={"body": {"persona_id": "brad"}},
                                      headers={"Authorization": f"Bearer {token}"})
            assert started.status_code == 200, started.text
            call_id = started.json()["sessionId"]

            pc = RTCPeerConnection()
            player = MediaPlayer(str(DATA / "hello.wav"))
            pc.addTrack(player.audio)
            heard: list = []
            pc.on("track", lambda track: heard.append(track))
            await pc.setLocalDescription(await pc.createOffer())
            offer = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
            assert (await http.post(f"/sessions/{call_id}/api/offer", json=offer)).status_code == 401
            stranger = (await http.post("/room/token", json={"user_id": "other"}))
            assert stranger.status_code == 404  # no such user: no token
            garbage = await http.post(f"/sessions/{call_id}/api/offer", headers={"Authorization": f"Bearer {token}"},
                                      json={"sdp": "v=garbage", "type": "offer", "pc_id": "x"})
            assert garbage.status_code == 400
            answer = await http.post(f"/sessions/{call_id}/api/offer", json=offer,
                                     headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
            await pc.setRemoteDescription(RTCSessionDescription(**{k: answer.json()[k] for k in ("sdp", "type")}))

            for _ in range(100):
                if heard:
                    break
                await asyncio.sleep(0.1)
            energy = await _heard_energy(heard[0], 8.0)
            for _ in range(100):
                if any("Doing great in the browser" in t for t in rig.elevenlabs.texts):
                    break
                await asyncio.sleep(0.1)
            assert any("Doing great in the browser" in t for t in rig.elevenlabs.texts)
            assert energy > 100  # the persona's voice reached the browser
            await pc.close()

            for _ in range(100):
                call = await rig.calls.get(call_id)
                if call["status"] == "ended":
                    break
                await asyncio.sleep(0.2)
            assert call["status"] == "ended" and call["direction"] == "webrtc"
            events = await rig.calls.events(call_id)
            assert {e["service"] for e in events} >= {"stt", "llm", "tts"}
            assert "twilio" not in {e["service"] for e in events}  # no carrier minutes in the browser
            assert ("user", "Hi Brad, how are you doing today?") in [(t["role"], t["text"]) for t in call["transcript"]]


async def test_the_room_refuses_strangers_when_public(tmp_path):
    with RoomRig(tmp_path, [], []) as rig:
        rig.settings.public_base_url = "https://calls.example.test"
        async with httpx.AsyncClient(base_url=rig.server.http_url) as http:
            assert (await http.get("/room/config")).status_code == 401
            assert (await http.post("/room/token", json={"user_id": "demo"})).status_code == 401
            assert (await http.post("/start", json={"body": {"persona_id": "brad"}})).status_code == 401
            admin = {"Authorization": f"Bearer {rig.settings.admin_token}"}
            assert (await http.get("/room/config", headers=admin)).status_code == 200
