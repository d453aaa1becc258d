"""A bounded prompt per turn: over a 60-turn conversation, what each request resends stays within the
budget, older turns live on in a running summary, and every summary call is on the ledger.

Real Pipecat aggregators, our spend gate and LLM processor, the openai SDK, and the OpenAI-compatible
fake on loopback; turns are fed as the user aggregator receives them (60 spoken turns in real time would
take minutes and test the STT, not this)."""

from __future__ import annotations

import asyncio

from pipecat.frames.frames import LLMMessagesAppendFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.workers.runner import WorkerRunner

from agent.accounts.personas import STARTER_PERSONAS
from agent.books.costs import CallCostTracker
from agent.books.spend import Rates, SpendPlanner
from agent.settings import Settings
from engines.tokenizer import count_tokens
from fakes import OpenAIFake, ServedApp
from fakes.openai_chat import request_prompt_tokens
from pipeline.call_prompt import metered_window
from pipeline.services import build_llm
from processors.spend_gate import LLMSpendGate

BRAD = STARTER_PERSONAS[0]
TURNS, BUDGET = 60, 600
LINE = "I went down to the harbour again today and watched the fishing boats come in, it was lovely"


def _reply(body: dict) -> str:
    if body.get("stream"):
        return "That sounds peaceful. What did you see out there on the water this time?"
    return "They talked about the harbour, the fishing boats and a peaceful afternoon watching the water."


async def test_prompt_tokens_per_turn_stay_flat_over_a_long_call_and_summaries_are_metered(tmp_path):
    fake = OpenAIFake(default_reply=_reply)
    with ServedApp(fake.app) as served:
        settings = Settings(_env_file=None, data_dir=tmp_path, cerebras_api_key="test-key",
                            cerebras_base_url=served.http_url + "/v1", deepgram_api_key="k", elevenlabs_api_key="k")
        llm = build_llm(settings, BRAD, BRAD.core_prompt, 300)
        tracker = CallCostTracker("call-long", "demo", settings.price_book)
        rates = Rates.for_call(settings.price_book, llm_vendor="cerebras", llm_model=settings.cerebras_model,
                               tts_vendor="elevenlabs", tts_model=settings.elevenlabs_model, stt_vendor="deepgram",
                               stt_model=settings.deepgram_model, direction="inbound")
        planner = SpendPlanner(tracker, 10**12, rates, 0, phone=False, enforce=False, llm_vendor="cerebras",
                               llm_model=settings.cerebras_model)

        async def out_of_budget() -> None:
            raise AssertionError("a $1M budget does not run out")

        gate = LLMSpendGate(planner, system_tokens=count_tokens(BRAD.core_prompt), most_tokens=300,
                            out_of_budget=out_of_budget)

        async def use_summary(section: str) -> None:
            await llm.set_system_prompt(f"{BRAD.core_prompt}\n\n{section}")

        gate.window = metered_window(llm, tracker, use_summary, BUDGET)
        context = LLMContext()
        user, assistant = LLMContextAggregatorPair(context)
        worker = PipelineWorker(Pipeline([user, gate, llm, assistant]), params=PipelineParams(
            enable_metrics=True, enable_usage_metrics=True))

        async def converse() -> None:
            for n in range(TURNS):
                answered = len([r for r in fake.requests if r.get("stream")])
                await worker.queue_frame(LLMMessagesAppendFrame(
                    messages=[{"role": "user", "content": f"Turn {n}: {LINE}."}], run_llm=True))
                for _ in range(500):  # until the reply is in the context: the next turn follows it
                    messages = context.get_messages()
                    if len([r for r in fake.requests if r.get("stream")]) > answered and messages \
                            and messages[-1].get("role") == "assistant":
                        break
                    await asyncio.sleep(0.02)
            await gate.window.wait()
            await worker.cancel()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await asyncio.gather(runner.run(), converse())

    turns = [r for r in fake.requests if r.get("stream")]
    summaries = [r for r in fake.requests if not r.get("stream")]
    assert len(turns) == TURNS
    conversation = [request_prompt_tokens({"messages": r["messages"][1:]}) for r in turns]  # all but the system
    assert max(conversation) <= BUDGET * 1.3  # within the budget (one turn may arrive over it, then is cut)
    late = conversation[TURNS // 2:]
    assert max(late) - min(late) <= BUDGET // 2  # flat: no growth with the length of the call
    whole_call = TURNS * (count_tokens(f"Turn 10: {LINE}.") + count_tokens(_reply({"stream": True})) + 8)
    assert conversation[-1] < whole_call // 4  # not the whole call resent
    assert summaries and gate.window.summaries == len(summaries)
    assert "# Earlier in this call" in turns[-1]["messages"][0]["content"]  # the summary is in the prompt
    events = [e for e in tracker.events if e.kind == "context_summary"]
    assert len(events) == 2 * len(summaries)  # input and output tokens of every summary call
    assert sum(e.quantity for e in events if e.unit == "output_token") == sum(
        count_tokens(_reply({})) for _ in summaries)
