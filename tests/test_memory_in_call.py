"""Memory a caller can trust, through the real server and the vendors' wire fakes: corrected during the
call, traceable to the words it came from, and forgotten for good when deleted."""

from __future__ import annotations

import json

import httpx

from agent.accounts.auth import mint_user_token
from fakes import ToolCall
from tests.phone_rig import DATA, PhoneRig

NAME = {"category": "user_facts", "key": "name"}


def _turns(fake) -> list[dict]:
    return [r for r in fake.requests if r.get("stream")]


def _system(request: dict) -> str:
    return " ".join(str(m.get("content")) for m in request["messages"] if m.get("role") == "system")


async def _api(rig: PhoneRig, method: str, path: str, **kwargs) -> httpx.Response:
    token = mint_user_token("demo", rig.settings.jwt_secret)
    async with httpx.AsyncClient(base_url=rig.server.http_url, headers={"Authorization": f"Bearer {token}"}) as c:
        return await c.request(method, path, **kwargs)


async def _call(rig: PhoneRig, sid: str, turns: int, heard) -> str:
    """Ring, hear the greeting, then say `turns` utterances, each answered (`heard(n)`); hang up."""
    call_id, url = await rig.ring(sid)
    caller = await rig.connect_caller(sid, call_id, url)
    await caller.wait_until(lambda: len(caller.speech_segments) >= 1, timeout=10)
    for n in range(1, turns + 1):
        await caller.say_wav(DATA / "hello.wav")
        await caller.silence(0.3)
        await caller.wait_until(lambda: heard(n), timeout=20)
        await caller.silence(1.0)
    await caller.hang_up()
    await rig.wait_for_call_end(call_id)
    return call_id


def _spoke(rig: PhoneRig, words: str) -> bool:
    return any(words in t for t in rig.elevenlabs.texts)


async def test_a_correction_during_the_call_is_used_in_the_next_reply_and_kept_with_its_source(tmp_path):
    with PhoneRig(tmp_path, transcripts=["Actually, call me Sam.", "So what's my name?"],
                  cerebras_script=[ToolCall("remember_fact", {**NAME, "value": "Sam"}), "Got it, Sam!",
                                   "You're Sam, of course."]) as rig:
        added = await _api(rig, "POST", "/api/personas/brad/memories", json={**NAME, "value": "Samuel"})
        assert added.status_code == 201, added.text
        call_id = await _call(rig, "CA" + "5" * 32, 2, lambda n: _spoke(rig, ("Got it", "of course")[n - 1]))

        turns = _turns(rig.cerebras)
        assert "Samuel" in _system(turns[0])  # the call began with what was known
        tool_result = [m for m in turns[1]["messages"] if m.get("role") == "tool"]
        assert tool_result and json.loads(tool_result[0]["content"])["saved"] is True
        # The reply after the correction, and the next turn, already know the new name.
        assert all("Sam" in _system(r) and "Samuel" not in _system(r) for r in turns[1:]), [
            (len(turns), _system(r)[-40:]) for r in turns]

        memories = (await _api(rig, "GET", "/api/personas/brad/memories")).json()
        (name,) = [f for f in memories["facts"]["user_facts"] if f["key"] == "name"]
        assert (name["value"], name["source"], name["call_id"]) == ("Sam", "call", call_id)
        assert name["said"] == "Actually, call me Sam."
        assert [(h["value"], h["source"], h["call_id"]) for h in name["history"]] == [("Samuel", "user", None)]
        events = await rig.calls.events(call_id)
        writes = [e for e in events if e["service"] == "memory" and e["detail"] == "write"]
        assert len(writes) == 2  # the in-call write, and the post-call summary


async def test_the_model_cannot_write_for_another_user_or_outside_the_fact_shape(tmp_path):
    with PhoneRig(tmp_path, transcripts=["I'm Alex, by the way."],
                  cerebras_script=[ToolCall("remember_fact", {**NAME, "value": "Alex", "user_id": "mallory"}),
                                   "Nice to meet you!"]) as rig:
        await _call(rig, "CA" + "6" * 32, 1, lambda n: _spoke(rig, "Nice to meet you"))
        tool_result = [m for m in _turns(rig.cerebras)[1]["messages"] if m.get("role") == "tool"]
        answer = json.loads(tool_result[0]["content"])
        assert answer["saved"] is False and "user_id" in answer["error"]
        memories = (await _api(rig, "GET", "/api/personas/brad/memories")).json()
        assert memories["fact_count"] == 0


def _extraction(summary: str, storyline: dict, facts: list[dict]):
    """The LLM fake's answer: the post-call extraction (JSON mode) as given, conversation turns a line."""
    def reply(body: dict) -> str:
        if body.get("response_format"):
            return json.dumps({"facts_to_add": facts, "facts_to_update": [], "facts_to_remove": [],
                               "summary": summary, "key_topics": ["Jake", "moving on"], "outcome": "fine",
                               "storylines": [storyline]})
        return "I'm here for you."
    return reply


async def test_a_deleted_fact_never_comes_back_in_any_prompt_summary_storyline_or_answer(tmp_path):
    jake = {"category": "relationship_facts", "key": "ex_boyfriend_name", "value": "Jake"}
    story = {"topic": "The breakup with Jake", "status": "ongoing", "details": "Jake moved out in May"}
    with PhoneRig(tmp_path, transcripts=["I broke up with Jake last week.", "I'm doing better now."]) as rig:
        rig.cerebras.default_reply = _extraction("Talked about breaking up with Jake.", story, [jake])
        first = await _call(rig, "CA" + "7" * 32, 1, lambda n: _spoke(rig, "here for you"))
        before = (await _api(rig, "GET", "/api/personas/brad/memories")).text
        assert "Jake" in before  # remembered: as a fact, in the summary and in a storyline

        gone = await _api(rig, "DELETE", "/api/personas/brad/memories/ex_boyfriend_name")
        assert gone.status_code == 204
        for path in ("/api/personas/brad/memories", "/api/personas/brad/prompt-preview", f"/api/calls/{first}"):
            answer = await _api(rig, "GET", path)
            assert answer.status_code == 200 and "Jake" not in answer.text, (path, answer.text)
        assert "[forgotten]" in (await _api(rig, "GET", "/api/personas/brad/memories")).text
        assert "Jake" not in json.dumps((await rig.calls.get(first))["transcript"])  # the kept transcript too

        # The next call: the model is told nothing of Jake, and when its extraction brings him back
        # (under another key, in the summary, in a storyline), none of it is kept.
        rig.cerebras.default_reply = _extraction(
            "They said Jake is in the past.", story, [{**jake, "key": "old_flame"}])
        seen = len(rig.cerebras.requests)
        await _call(rig, "CA" + "8" * 32, 1, lambda n: _spoke(rig, "here for you"))
        assert all("Jake" not in _system(r) for r in _turns(rig.cerebras)[1:])
        assert len(rig.cerebras.requests) > seen + 1  # the second call's turn and its extraction ran
        after = (await _api(rig, "GET", "/api/personas/brad/memories")).json()
        assert "Jake" not in json.dumps(after) and len(after["recent_calls"]) == 2


async def test_a_fact_deleted_while_the_call_is_live_leaves_its_prompt_and_its_conversation(tmp_path):
    """Deleted in the app mid-call: from the next turn on the model has no copy of it, prompt or history.

    The owner's ownership loop finds the deletion in the database, so a deletion through any worker
    reaches the call the same way; this one goes through the same server."""
    jake = {"category": "relationship_facts", "key": "ex_boyfriend_name", "value": "Jake"}
    with PhoneRig(tmp_path, transcripts=["I broke up with Jake last week.", "I'm doing better now."],
                  overrides={"end_poll_secs": 0.3}) as rig:
        rig.cerebras.default_reply = _extraction("Talked about moving on.", {"topic": "Moving on", "status":
                                                 "ongoing", "details": "doing better"}, [])
        assert (await _api(rig, "POST", "/api/personas/brad/memories", json=jake)).status_code == 201
        call_id, caller = await rig.greeted_and_said_hello("CA" + "9" * 32, pause=0)
        await caller.wait_until(lambda: len(_turns(rig.cerebras)) >= 1 and _spoke(rig, "here for you"), timeout=20)
        first = _turns(rig.cerebras)[0]
        assert "Jake" in _system(first) and "Jake" in json.dumps(first["messages"][1:])

        assert (await _api(rig, "DELETE", "/api/personas/brad/memories/ex_boyfriend_name")).status_code == 204

        # The owner looks every END_POLL_SECS (0.3 s here); the next turn ends some 3 s from now.
        await caller.silence(1.0)
        await caller.say_wav(DATA / "hello.wav")
        await caller.silence(0.3)
        await caller.wait_until(lambda: len(_turns(rig.cerebras)) >= 2, timeout=20)
        second = _turns(rig.cerebras)[1]
        assert "Jake" not in json.dumps(second["messages"]), second["messages"]
        assert any("doing better" in str(m.get("content")) for m in second["messages"])  # the call goes on
        await caller.hang_up()
        call = await rig.wait_for_call_end(call_id)
        assert "Jake" not in json.dumps(call["transcript"])  # and what was said in it, as kept
