"""Post-call memory extraction: scripted replies from the LLM fake, through the real openai SDK."""

import json

import pytest

from agent.calls.reconcile import Reconciler
from agent.calls.lifecycle import CallLifecycle
from agent.accounts.personas import Persona
from agent.memory.prompt import build_composite_prompt
from fakes import ErrorReply, OpenAIFake, ServedApp


def _reply(**update):
    base = {"facts_to_add": [], "facts_to_update": [], "facts_to_remove": [], "summary": "A nice chat.",
            "key_topics": [], "outcome": "ended warmly", "storylines": []}
    return json.dumps({**base, **update})


@pytest.fixture
def llms(settings):
    cerebras, openai = OpenAIFake(), OpenAIFake()
    with ServedApp(cerebras.app) as c, ServedApp(openai.app) as o:
        settings.cerebras_api_key = settings.openai_api_key = "test-key"
        settings.cerebras_base_url, settings.openai_base_url = f"{c.http_url}/v1", f"{o.http_url}/v1"
        yield cerebras, openai


async def _talk(runtime, lifecycle, *lines):
    allowance = await lifecycle.open("demo", "brad", "webrtc")
    session = await lifecycle.begin(allowance.call_id)
    for role, text in lines:
        session.transcript.add(role, text)
    final = await lifecycle.end(session, reason="caller_hung_up")
    return allowance.call_id, session, final


async def _prompt(runtime):
    persona = Persona.from_row(await runtime.users.get_persona("brad"))
    return await build_composite_prompt(runtime.memory, {"id": "demo", "display_name": "Sam"}, persona)


async def test_flow1_brad_knows_things_after_the_first_call(runtime, llms):
    cerebras, _ = llms
    cerebras.script.append(_reply(
        facts_to_add=[{"category": "user_facts", "key": "job", "value": "nurse at Mercy Hospital"},
                      {"category": "preferences", "key": "coffee", "value": "oat milk flat white"}],
        summary="Sam just started night shifts as a nurse and is tired but proud.",
        key_topics=["work", "sleep"], outcome="Sam felt better",
        storylines=[{"topic": "night shifts", "status": "ongoing", "details": "first week"}]))
    call_id, session, final = await _talk(runtime, CallLifecycle(runtime),
                                          ("assistant", "Hey, it's Brad!"),
                                          ("user", "I just started night shifts at Mercy Hospital as a nurse."),
                                          ("user", "I live on oat milk flat whites now."))
    request = cerebras.requests[-1]
    assert request["response_format"] == {"type": "json_object"}
    assert "night shifts at Mercy Hospital" in request["messages"][1]["content"]
    facts = await runtime.memory.long_term_memory("demo", "brad")
    assert [(f.key, f.value) for f in facts["user_facts"]] == [("job", "nurse at Mercy Hospital")]
    recent = await runtime.memory.recent_context("demo", "brad")
    assert recent[0].summary.startswith("Sam just started night shifts") and recent[0].key_topics == ["work", "sleep"]
    assert (await runtime.memory.storylines("demo", "brad"))[0].topic == "night shifts"
    # The extraction's tokens are on this call's ledger, before the total was fixed.
    memory_tokens = [e for e in await runtime.calls.events(call_id) if e["service"] == "memory" and e["kind"] == "ai_inference"]
    assert sum(int(e["quantity"]) for e in memory_tokens) == cerebras.served_prompt_tokens + cerebras.served_completion_tokens
    assert final.subtotal_micros == sum(e["cost_micros"] for e in await runtime.calls.events(call_id))
    assert (await runtime.calls.get(call_id))["extraction_status"] == "done"
    assert "nurse at Mercy Hospital" in (await _prompt(runtime)).prompt


async def test_flow2_the_tenth_call_carries_facts_and_the_last_summary(runtime, llms):
    cerebras, _ = llms
    lifecycle = CallLifecycle(runtime)
    cerebras.script.append(_reply(facts_to_add=[{"category": "important_memories", "key": "dog",
                                                 "value": "Sam's dog Biscuit turned 10"}], summary="Call 1."))
    await _talk(runtime, lifecycle, ("user", "Biscuit turned ten today!"))
    for n in range(2, 10):
        cerebras.script.append(_reply(summary=f"Call {n}: talked about the week."))
        await _talk(runtime, lifecycle, ("user", f"Hi again, this is call {n}."))
    prompt = await _prompt(runtime)
    assert "Biscuit turned 10" in prompt.prompt
    assert "Call 9: talked about the week." in prompt.parts["recent_context"]
    assert "talked 9 times" in prompt.prompt


async def test_conflicting_fact_is_updated_and_removed_facts_go(runtime, llms):
    cerebras, _ = llms
    await runtime.memory.add_fact("demo", "brad", "user_facts", "city", "Austin")
    await runtime.memory.add_fact("demo", "brad", "user_facts", "ex", "Jordan")
    cerebras.script.append(_reply(facts_to_update=[{"category": "user_facts", "key": "city", "value": "Denver"}],
                                  facts_to_remove=[{"category": "user_facts", "key": "ex"}]))
    await _talk(runtime, CallLifecycle(runtime), ("user", "I moved to Denver, and Jordan is history."))
    facts = (await runtime.memory.long_term_memory("demo", "brad"))["user_facts"]
    assert [(f.key, f.value) for f in facts] == [("city", "Denver")]


async def test_malformed_output_is_refused_without_touching_memory_then_retried(runtime, llms):
    cerebras, _ = llms
    runtime.settings.extraction_backoff_secs = 0  # retry at once (the back-off has its own test)
    await runtime.memory.add_fact("demo", "brad", "user_facts", "city", "Austin")
    cerebras.script.extend(["Sure! Here are the memories: city is Denver",  # not JSON
                            json.dumps({"facts_to_add": [{"category": "secrets", "key": "pin", "value": "1234"}],
                                        "summary": "x"})])  # an unknown category
    lifecycle = CallLifecycle(runtime)
    call_id, _, _ = await _talk(runtime, lifecycle, ("user", "I moved to Denver."))
    facts = await runtime.memory.long_term_memory("demo", "brad")
    assert [(f.key, f.value) for f in facts["user_facts"]] == [("city", "Austin")]
    assert (await runtime.calls.get(call_id))["extraction_status"] == "pending"
    recent = await runtime.memory.recent_context("demo", "brad")
    assert "summary pending" in recent[0].summary

    await Reconciler(lifecycle).run_once()  # second answer: valid JSON, invalid category -> still refused
    assert (await runtime.calls.get(call_id))["extraction_status"] == "failed"
    assert all(f.key != "pin" for fs in (await runtime.memory.long_term_memory("demo", "brad")).values() for f in fs)

    cerebras.script.append(_reply(facts_to_update=[{"category": "user_facts", "key": "city", "value": "Denver"}],
                                  summary="Sam moved to Denver."))
    await Reconciler(lifecycle).run_once()
    call = await runtime.calls.get(call_id)
    assert call["extraction_status"] == "done" and call["extraction_attempts"] == 2
    assert (await runtime.memory.recent_context("demo", "brad"))[0].summary == "Sam moved to Denver."


async def test_cerebras_down_falls_back_to_openai_with_the_reason(runtime, llms):
    cerebras, openai = llms
    cerebras.script.append(ErrorReply(status=503))
    openai.script.append(_reply(summary="Via the fallback."))
    call_id, _, _ = await _talk(runtime, CallLifecycle(runtime), ("user", "Hello!"))
    events = [e for e in await runtime.calls.events(call_id) if e["service"] == "memory" and e["kind"] == "ai_inference"]
    assert {e["vendor"] for e in events} == {"openai"} and "cerebras" in events[0]["detail"]
    assert (await runtime.memory.recent_context("demo", "brad"))[0].summary == "Via the fallback."


async def test_a_fact_the_user_deleted_during_the_call_stays_deleted(runtime, llms):
    cerebras, _ = llms
    await runtime.memory.add_fact("demo", "brad", "user_facts", "ex", "Jordan")
    lifecycle = CallLifecycle(runtime)
    allowance = await lifecycle.open("demo", "brad", "webrtc")
    session = await lifecycle.begin(allowance.call_id)
    session.transcript.add("user", "Jordan called me again.")
    await runtime.memory.delete_fact("demo", "brad", "ex")  # the user deletes it in the app, mid-call
    cerebras.script.append(_reply(facts_to_add=[{"category": "user_facts", "key": "ex", "value": "Jordan"}]))
    await lifecycle.end(session, reason="caller_hung_up")
    assert (await runtime.memory.long_term_memory("demo", "brad"))["user_facts"] == []


async def test_nothing_said_means_no_extraction(runtime, llms):
    cerebras, _ = llms
    call_id, _, _ = await _talk(runtime, CallLifecycle(runtime), ("assistant", "Hello? Anyone there?"))
    assert cerebras.requests == []
    assert (await runtime.calls.get(call_id))["extraction_status"] is None
