"""Assemble and run one call's pipeline, whatever the transport.

    transport.input → STT → user aggregator (Silero VAD, smart-turn) → LLM (Cerebras, OpenAI failover, one hop)
      → TTS → transport.output → usage meter → budget guard → assistant aggregator

The meter and the guard sit after the output transport: every service's usage
metrics pass there, and so do the bot-speaking frames the guard waits on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from loguru import logger
from pipecat.frames.frames import Frame, TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.transports.base_transport import BaseTransport
from pipecat.workers.runner import WorkerRunner

from agent.books.spend import Rates, SpendPlanner
from agent.calls.session import CallSession
from agent.engines import prompt_budgets, vendor_llms
from agent.settings import Settings
from engines.tokenizer import count_tokens
from pipeline.call_prompt import CallPrompt
from pipeline.memory_tool import TOOL_TOKENS, offer_memory_tool
from pipeline.models import user_turn_params
from pipeline.services import CallServices, build_services
from processors.budget_guard import BudgetGuard
from processors.metering import UsageMeter
from processors.spend_gate import LLMSpendGate, TTSSpendGate
from processors.transcript import record_transcript

TURN_STOP_TIMEOUT_LOG = "the caller's turn ended on Pipecat's stop timeout"
MAX_TOKENS = 300  # a spoken reply's most tokens; the spend gate lowers it as the budget runs out


@dataclass
class CallOutcome:
    reason: str
    guard: BudgetGuard
    services: CallServices


async def run_call(
    transport: BaseTransport,
    session: CallSession,
    settings: Settings,
    *,
    sample_rate: int,
    mark_frame: Callable[[str], Frame] | None = None,
    hang_up: Callable[[], Awaitable[None]] | None = None,
    enable_rtvi: bool = False,
    observers: list | None = None,
    on_worker: Callable[[PipelineWorker], None] | None = None,
) -> CallOutcome:
    """Run the call until it ends; returns why it ended and what was said."""
    # Off the event loop: the vendors' SDKs build TLS contexts (milliseconds each) every live call would wait on.
    services = await asyncio.to_thread(build_services, settings, session.persona, session.prompt.prompt,
                                       max_tokens=MAX_TOKENS, loop=asyncio.get_running_loop())
    context = LLMContext()
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        context, user_params=user_turn_params())
    record_transcript(session.transcript, user_aggregator, assistant_aggregator)
    ended_by = {"reason": "caller_hung_up"}

    async def force_end(reason: str) -> None:
        ended_by["reason"] = "budget_cutoff_forced"
        await worker.cancel(reason=reason)
        if hang_up is not None:
            await hang_up()

    planner = spend_planner(session, services, settings)
    services.llm.on_route_change = lambda route: planner.llm_switched_to(route.price.vendor, route.price.model)
    meter = UsageMeter(session.tracker, services.meter_config, name="usage-meter")
    guard = BudgetGuard(session.tracker, session.monitor, force_end=force_end, mark_frame=mark_frame,
                        planner=planner, on_warning=session.warnings.append, name="budget-guard")
    # Price what is about to be spent before it goes to the LLM and to the TTS.
    llm_gate = LLMSpendGate(planner, system_tokens=count_tokens(session.prompt.prompt), most_tokens=MAX_TOKENS,
                            out_of_budget=guard.out_of_budget, name="llm-spend-gate")
    prompt = CallPrompt(session, services.llm, llm_gate)
    llm_gate.window = prompt.window(prompt_budgets(settings)[1])
    session.on_memory_deleted = lambda new, redact: prompt.forget(new, redact, context)
    if session.memory_tool is not None and settings.memory_tool and vendor_llms(settings):
        offer_memory_tool(services.llm, context, session.memory_tool, prompt.use_memory)
        prompt.offer_tool(TOOL_TOKENS)
    tts_gate = TTSSpendGate(planner, out_of_budget=guard.out_of_budget, name="tts-spend-gate")
    pipeline = Pipeline([
        transport.input(), services.stt, user_aggregator, llm_gate, services.llm, tts_gate, services.tts,
        transport.output(), meter, guard, assistant_aggregator,
    ])
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=sample_rate, audio_out_sample_rate=sample_rate,
                              enable_metrics=True, enable_usage_metrics=True),
        enable_rtvi=enable_rtvi,
        observers=observers or [],
        idle_timeout_secs=300,
    )
    if on_worker is not None:
        on_worker(worker)

    @transport.event_handler("on_client_connected")
    async def _connected(_transport: object, _client: object) -> None:
        if session.persona.greeting:  # by name, to a caller the persona remembers
            await worker.queue_frame(TTSSpeakFrame(session.prompt.greeting(session.persona.greeting)))
        # A model in this process reads the system prompt now, while the greeting plays or the caller speaks.
        services.llm.create_task(services.llm.prefill(), "prefill")

    @transport.event_handler("on_client_disconnected")
    async def _disconnected(_transport: object, _client: object) -> None:
        await worker.cancel(reason="caller hung up")

    @user_aggregator.event_handler("on_user_turn_stop_timeout")
    async def _turn_timed_out(_aggregator: object) -> None:  # neither smart-turn nor the transcript decided
        logger.info(f"call {session.call_id}: {TURN_STOP_TIMEOUT_LOG}")

    @worker.event_handler("on_pipeline_error")
    async def _error(_worker: object, error: object) -> None:
        logger.warning(f"call {session.call_id}: pipeline error {error}")

    if session.end_requested:  # ended (by an operator) while its services were being built: do not start
        return CallOutcome(session.end_requested, guard, services)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()
    planner.settle_unreported(call_ended=True)  # a reply cut short by the hang-up is billed too
    if guard.cutoff is not None and ended_by["reason"] == "caller_hung_up":
        ended_by["reason"] = "budget_cutoff"
    return CallOutcome(ended_by["reason"], guard, services)


def spend_planner(session: CallSession, services: CallServices, settings: Settings) -> SpendPlanner:
    """The call's planner, priced like its services: the first LLM (the one that normally answers)."""
    prices = session.tracker.prices
    config = services.meter_config
    llm = next(iter(config.llms.values()))
    rates = Rates.for_call(prices, llm_vendor=llm.vendor, llm_model=llm.model, tts_vendor=config.tts.vendor,
                           tts_model=config.tts.model, stt_vendor=config.stt.vendor, stt_model=config.stt.model,
                           direction=session.direction if session.direction != "webrtc" else "inbound")
    return SpendPlanner(session.tracker, session.allowance.limit_micros, rates,
                        session.allowance.grace_period_seconds, phone=session.direction != "webrtc",
                        enforce=session.allowance.auto_cutoff, llm_vendor=llm.vendor, llm_model=llm.model)
