"""What a probe from outside tried, each refused with a useful 4xx and nothing written."""

import asyncio
import json
import re
import time
from contextlib import ExitStack

import httpx
import pytest
import websockets

from agent.calls.telephony import Twilio
from agent.settings import Settings
from server import create_app
from tests.api_client import Api, api  # noqa: F401
from tests.phone_rig import PhoneRig


def _lenient(value: str) -> bytes:
    return ('{"persona_id": "brad", "minutes": %s}' % value).encode()


async def test_a_body_of_unknown_keys_is_refused_by_size_and_the_server_stays_responsive(api: Api):
    huge = json.dumps({f"k{i}": i for i in range(200_000)}).encode()  # ~3.4 MB
    started = time.monotonic()
    answer = await api.client.post("/api/estimate", content=huge, headers={**api.user(),
                                                                          "Content-Type": "application/json"})
    assert answer.status_code == 413 and "larger" in answer.json()["detail"]
    assert time.monotonic() - started < 2
    # Under the size limit, many unknown keys are a 422 that repeats a bounded number of problems.
    many = json.dumps({"persona_id": "brad", "minutes": 5, **{f"k{i}": i for i in range(1000)}}).encode()
    answer = await api.client.post("/api/estimate", content=many, headers={**api.user(),
                                                                          "Content-Type": "application/json"})
    assert answer.status_code == 422 and len(answer.content) < 5_000
    assert answer.json()["detail"][-1]["type"] == "truncated"
    assert all("input" not in problem for problem in answer.json()["detail"])


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_json_numbers_python_would_accept_are_a_400(api: Api, value):
    answer = await api.client.post("/api/estimate", content=_lenient(value),
                                   headers={**api.user(), "Content-Type": "application/json"})
    assert answer.status_code == 400 and "not valid JSON" in answer.json()["detail"], answer.text


async def test_nan_without_a_token_and_lone_surrogates_are_refused(api: Api):
    room = await api.client.post("/room/token", content=b'{"user_id": NaN}',
                                 headers={"Content-Type": "application/json"})
    assert room.status_code == 400
    surrogate = await api.client.put("/api/personas/brad/relationship", headers={
        **api.user(), "Content-Type": "application/json"}, content=b'{"custom_system_prompt": "hi \\ud800"}')
    assert surrogate.status_code == 400 and "surrogate" in surrogate.json()["detail"]
    key = await api.client.post("/api/personas/brad/memories", headers={**api.user(), "Content-Type": "application/json"},
                                content=b'{"category": "user_facts", "key": "\\udc00", "value": "x"}')
    assert key.status_code == 400
    malformed = await api.client.post("/api/estimate", content=b"{not json",
                                      headers={**api.user(), "Content-Type": "application/json"})
    assert malformed.status_code == 400  # as docs/api.md promises, not 422


async def test_money_in_non_ascii_digits_is_refused(api: Api):
    answer = await api.client.put("/api/user/budget", headers=api.user(), json={"per_call_limit_usd": "５"})
    assert answer.status_code == 422


async def test_every_405_lists_the_methods_of_its_path(api: Api):
    answer = await api.client.delete("/api/user/budget", headers=api.user())
    assert answer.status_code == 405 and set(answer.headers["Allow"].split(", ")) == {"GET", "PUT"}


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example", "localhost.evil.example:7860"])
async def test_a_rebound_host_name_is_refused_on_every_route(api: Api, host):
    for method, path in [("POST", "/room/token"), ("GET", "/room/config"), ("GET", "/healthz"), ("GET", "/api/user")]:
        answer = await api.client.request(method, path, headers={"Host": host, **api.user()}, json={"user_id": "demo"})
        assert answer.status_code == 400 and answer.json()["detail"] == "Invalid Host header", (host, path)


@pytest.mark.parametrize("host", ["localhost:7860", "127.0.0.1", "[::1]:7860", "LOCALHOST"])
async def test_the_names_the_server_is_reached_by_are_accepted(api: Api, host):
    assert (await api.client.get("/healthz", headers={"Host": host})).status_code == 200


async def test_the_public_host_is_accepted_and_metrics_need_a_token_once_public(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'p.db'}",
                        public_base_url="https://calls.example.test", jwt_secret="j" * 40, admin_token="a" * 30)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://calls.example.test") as c:
            assert (await c.get("/healthz")).status_code == 200
            assert (await c.get("/metrics")).status_code == 401
            assert (await c.get("/metrics", headers={"Authorization": "Bearer " + "a" * 30})).status_code == 200
            assert (await c.get("/healthz", headers={"Host": "localhost.evil.example"})).status_code == 400


def test_media_tokens_expire_and_compare_as_bytes():
    twilio = Twilio(Settings(_env_file=None, twilio_account_sid="AC" + "1" * 32, twilio_auth_token="t",
                             public_base_url="http://127.0.0.1:1", jwt_secret="j" * 40, admin_token="a" * 30,
                             media_token_ttl_secs=300))
    token = twilio.media_token("call1", now=1_000_000)
    assert twilio.media_token_valid("call1", token, now=1_000_100)
    assert not twilio.media_token_valid("call1", token, now=1_000_301)  # expired
    assert not twilio.media_token_valid("call2", token, now=1_000_100)  # another call's
    expiry = token.split(".")[0]
    assert not twilio.media_token_valid("call1", f"{int(expiry) + 999}.{token.split('.')[1]}", now=1_000_100)
    assert not twilio.media_token_valid("call1", "é" * 64, now=1_000_100)  # no TypeError
    assert not twilio.media_token_valid("call1", f"{expiry}.{'é' * 64}", now=1_000_100)


async def test_media_urls_with_bad_tokens_are_refused_and_tokens_stay_out_of_the_logs(tmp_path):
    """Through `python server.py`, whose uvicorn writes every request and WebSocket to its log."""
    from fakes import TwilioCaller
    from tests.phone_rig import ACCOUNT_SID
    from tests.workers import Fakes, Server, free_port, ring

    with ExitStack() as stack:
        fakes = Fakes(stack, said=["Hi Brad, how are you doing today?"], reply="Great!")
        port = free_port()
        server = Server(fakes.env(port, tmp_path), port, tmp_path / "server.log")
        stack.callback(server.stop)
        server.start()
        sid = "CA" + "1" * 32
        fakes.twilio.add_call(sid)
        call_id, url = await ring(server.url, sid)
        base = url.split("?")[0]
        for bad in ["é" * 10, "1.abc", "", "9999999999999.00"]:
            with pytest.raises(websockets.InvalidStatus) as refused:  # refused before the upgrade
                await websockets.connect(f"{base}?token={bad}")
            assert refused.value.response.status_code == 403
        caller = await TwilioCaller(url, sid, ACCOUNT_SID, custom_parameters={"call_id": call_id}).connect()
        await caller.wait_until(lambda: len(caller.speech_segments) >= 1, timeout=20)
        await caller.hang_up()
        server.stop()
    log = (tmp_path / "server.log").read_text()
    token = url.split("token=")[1]
    media_lines = [line for line in log.splitlines() if "/twilio/media/" in line]
    assert token not in log and len(media_lines) == 5 and "token=<redacted>" in media_lines[-1]
    assert not any(re.search(r"token=(?!<redacted>)[^\"&\s]+", line) for line in media_lines)
    assert "Traceback" not in log


async def test_an_oversized_or_non_json_media_message_is_skipped_and_not_logged_whole(tmp_path):
    from loguru import logger

    logged: list[str] = []
    sink = logger.add(lambda message: logged.append(str(message)), level="WARNING")
    with PhoneRig(tmp_path, transcripts=["Hi Brad, how are you doing today?"]) as rig:
        sid = "CA" + "2" * 32
        call_id, url = await rig.ring(sid)
        caller = await rig.connect_caller(sid, call_id, url)
        await caller.wait_until(lambda: len(caller.speech_segments) >= 1, timeout=20)
        await caller.send_raw("x" * 4_000_000)
        await caller.send_raw("y" * 10_000)
        await asyncio.sleep(0.5)
        assert not caller.closed_by_server  # the call goes on
        await caller.hang_up()
        await rig.wait_for_call_end(call_id)
    logger.remove(sink)
    err = "".join(logged)
    assert "x" * 200 not in err and "y" * 200 not in err
    assert "oversized Twilio message (4000000 bytes" in err


async def test_a_status_callback_with_an_absurd_duration_is_a_422(tmp_path):
    with PhoneRig(tmp_path, transcripts=[]) as rig:
        answer = await rig.post_twilio("/twilio/status", {"CallSid": "CA" + "3" * 32, "CallStatus": "completed",
                                                          "CallDuration": "9" * 30})
        assert answer.status_code == 422


@pytest.mark.parametrize("sdp", ["garbage", "v=0", "a" * 100_000, "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=\x00\r\n",
                                 "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"])
async def test_an_unusable_offer_is_a_400_and_no_call_goes_live(api: Api, sdp):
    token = (await api.client.post("/room/token", json={"user_id": "demo"})).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    call_id = (await api.client.post("/start", json={"body": {"persona_id": "brad"}}, headers=auth)).json()["sessionId"]
    answer = await api.client.post(f"/sessions/{call_id}/api/offer", headers=auth, json={"sdp": sdp, "type": "offer"})
    assert answer.status_code == (413 if len(sdp) > 48_000 else 400), answer.text
    assert (await api.rt.calls.get(call_id))["status"] == "created" and not api.lifecycle.live
