"""Per-frame cost of our processors, as PIPECAT.md section 15 measures Pipecat's.

Frames of one kind are queued back to back into a `PipelineWorker` configured
as `run_call` configures it (metrics and usage metrics on, RTVI off, default
observers), and timed from the first queued to the last one reaching a sink.
Three pipelines, interleaved and repeated; the fastest run of each is kept
(other work on the machine only ever adds time):

- `none`: nothing between the worker's source and our sink;
- `passthrough`: two do-nothing processors (the price of two Pipecat hops);
- `ours`: UsageMeter then BudgetGuard, on a real in-memory call ledger.

`ours - none` is what our two processors add per frame; `ours - passthrough`
is what our own code adds beyond the hops any processor costs.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from pipecat.frames.frames import (
    BotSpeakingFrame,
    Frame,
    InputAudioRawFrame,
    MetricsFrame,
    StartFrame,
    TTSAudioRawFrame,
)
from pipecat.metrics.metrics import (
    LLMTokenUsage,
    LLMUsageMetricsData,
    TTFBMetricsData,
    TTSUsageMetricsData,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from agent.books.budgets import BudgetMonitor, CallAllowance, LimitKind
from agent.books.costs import CallCostTracker
from agent.books.events import Source
from agent.settings import Settings
from processors.budget_guard import BudgetGuard
from processors.metering import MeterConfig, PricedAs, UsageMeter

RATE = 8000
LLM_NAME = "cerebras-llm"


def _input_audio() -> Frame:
    return InputAudioRawFrame(audio=b"\x01\x00" * 160, sample_rate=RATE, num_channels=1)  # 20 ms


def _output_audio() -> Frame:
    return TTSAudioRawFrame(audio=b"\x01\x00" * 320, sample_rate=RATE, num_channels=1)  # 40 ms chunk


def _bot_speaking() -> Frame:
    return BotSpeakingFrame()


def _latency_metrics() -> Frame:
    return MetricsFrame(data=[TTFBMetricsData(processor="elevenlabs-tts", value=0.12)])


def _usage_metrics() -> Frame:
    usage = LLMTokenUsage(prompt_tokens=900, completion_tokens=40, total_tokens=940)
    return MetricsFrame(data=[LLMUsageMetricsData(processor=LLM_NAME, model="gpt-oss-120b", value=usage),
                              TTSUsageMetricsData(processor="elevenlabs-tts", model="eleven_flash_v2_5", value=52)])


# What a call pushes through our processors, by kind (see `share_of_call` for how frames map to these).
KINDS: dict[str, Callable[[], Frame]] = {
    "input audio (system)": _input_audio,
    "output audio (data)": _output_audio,
    "bot speaking (system)": _bot_speaking,
    "latency metrics": _latency_metrics,
    "usage metrics": _usage_metrics,
}


class Passthrough(FrameProcessor):
    """A processor that does nothing but pass frames on: the cost of one hop."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class Sink(FrameProcessor):
    """Counts the frames of the measured kind and says when all have arrived."""

    def __init__(self, kind: type, expected: int) -> None:
        super().__init__()
        self.kind, self.expected, self.seen = kind, expected, 0
        self.started = asyncio.Event()
        self.done = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self.started.set()
        elif type(frame) is self.kind:
            self.seen += 1
            if self.seen == self.expected:
                self.done.set()
        await self.push_frame(frame, direction)


def _our_processors() -> list[FrameProcessor]:
    """UsageMeter and BudgetGuard as a call has them, on an in-memory ledger (no database)."""
    settings = Settings(_env_file=None)
    tracker = CallCostTracker("bench-call", "bench-user", settings.price_book)
    allowance = CallAllowance(call_id="bench-call", user_id="bench-user", limit_micros=10**15,
                              limit_kind=LimitKind.PER_CALL, warning_threshold_pct=75, auto_cutoff=True,
                              grace_period_seconds=10, daily_remaining_micros=10**15,
                              monthly_remaining_micros=10**15)
    config = MeterConfig(stt=PricedAs("deepgram", "nova-3-general", Source.MEASURED),
                         tts=PricedAs("elevenlabs", "eleven_flash_v2_5"),
                         llms={LLM_NAME: PricedAs("cerebras", "gpt-oss-120b")})

    async def force_end(_reason: str) -> None:
        return None

    return [UsageMeter(tracker, config), BudgetGuard(tracker, BudgetMonitor(allowance), force_end=force_end)]


VARIANTS: dict[str, Callable[[], list[FrameProcessor]]] = {
    "none": lambda: [],
    "passthrough": lambda: [Passthrough(), Passthrough()],
    "ours": _our_processors,
}


async def _time_once(variant: str, make: Callable[[], Frame], count: int) -> float:
    """CPU µs per frame for `count` frames of one kind through one pipeline."""
    sample = make()
    sink = Sink(type(sample), count)
    worker = PipelineWorker(
        Pipeline([*VARIANTS[variant](), sink]),
        params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE,
                              enable_metrics=True, enable_usage_metrics=True),
        enable_rtvi=False, observers=[], idle_timeout_secs=300)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.get_running_loop().create_task(runner.run())
    await asyncio.wait_for(sink.started.wait(), 10)
    frames = [make() for _ in range(count)]
    gc.collect()
    gc.freeze()  # a full collection of the bench's own heap is not a cost of the frames
    try:
        cpu0 = time.process_time()
        await worker.queue_frames(frames)
        await asyncio.wait_for(sink.done.wait(), 60)
        cpu = time.process_time() - cpu0
    finally:
        gc.unfreeze()
    await worker.cancel()
    await running
    return 1e6 * cpu / count


@dataclass
class FrameCosts:
    """CPU µs per frame (best of the repeats), by frame kind and pipeline variant."""

    us: dict[str, dict[str, float]]

    def added_by_ours(self, kind: str) -> float:
        return self.us[kind]["ours"] - self.us[kind]["none"]

    def beyond_passthrough(self, kind: str) -> float:
        return self.us[kind]["ours"] - self.us[kind]["passthrough"]

    def hop(self, kind: str) -> float:
        """One do-nothing processor's cost per frame: the price of any processor in the pipeline."""
        return (self.us[kind]["passthrough"] - self.us[kind]["none"]) / 2


async def measure_frame_costs(count: int, repeats: int) -> FrameCosts:
    runs: dict[str, dict[str, list[float]]] = {k: {v: [] for v in VARIANTS} for k in KINDS}
    for kind, make in KINDS.items():
        await _time_once("ours", make, min(count, 200))  # warm caches and lazy imports
        for _ in range(repeats):
            for variant in VARIANTS:
                runs[kind][variant].append(await _time_once(variant, make, count))
    # The least disturbed run of each: interference only ever adds CPU time.
    return FrameCosts({k: {v: min(xs) for v, xs in by.items()} for k, by in runs.items()})


# How the frames counted in a real call map onto the measured kinds.
_SYSTEM_LIKE = "bot speaking (system)"
_DATA_LIKE = "output audio (data)"


def kind_of(frame_type: str) -> str:
    """The measured kind whose cost stands for a frame type seen in a call."""
    if frame_type == "InputAudioRawFrame":
        return "input audio (system)"
    if frame_type.endswith("AudioRawFrame"):
        return "output audio (data)"
    if frame_type == "MetricsFrame":
        return "usage metrics"  # the dearer kind: an upper bound for the metrics a call carries
    system = {"BotSpeakingFrame", "BotStartedSpeakingFrame", "BotStoppedSpeakingFrame", "UserSpeakingFrame",
              "UserStartedSpeakingFrame", "UserStoppedSpeakingFrame", "VADUserStartedSpeakingFrame",
              "VADUserStoppedSpeakingFrame", "InterruptionFrame", "CancelFrame", "StartFrame",
              "ClientConnectedFrame", "SpeechControlParamsFrame"}
    return _SYSTEM_LIKE if frame_type in system else _DATA_LIKE


def processors_us_per_call_second(costs: FrameCosts, frames_per_call_s: dict[str, float]) -> float:
    """CPU µs our two processors cost per call-second, from the frames a call pushes through them.

    `frames_per_call_s` has keys `<Processor>:<FrameType>`. The meter and the guard see the same
    frames; the meter's count is used, and the measured cost is that of both processors. The
    spend gates (before the LLM and the TTS) are charged one Pipecat hop per frame they see
    (half of two passthrough hops): for all but one context frame and a few text frames per
    turn they only type-check and pass the frame on.
    """
    total = 0.0
    for key, rate in frames_per_call_s.items():
        processor, _, frame_type = key.partition(":")
        kind = kind_of(frame_type)
        if processor == "UsageMeter":
            total += rate * costs.added_by_ours(kind)
        elif processor in ("LLMSpendGate", "TTSSpendGate"):
            total += rate * costs.hop(kind)
    return total


async def measure_deserialize(count: int) -> dict[str, float]:
    """µs to turn one inbound Twilio media message into a frame: our serializer vs Pipecat's."""
    import base64
    import json

    from pipecat.serializers.twilio import TwilioFrameSerializer

    from pipeline.twilio import CallMeBackTwilioSerializer

    message = json.dumps({"event": "media", "sequenceNumber": "120", "streamSid": "MZ" + "0" * 32, "media": {
        "track": "inbound", "chunk": "119", "timestamp": "2380", "payload": base64.b64encode(b"\xff" * 160).decode()}})
    params = TwilioFrameSerializer.InputParams(twilio_sample_rate=RATE, sample_rate=RATE, auto_hang_up=False)
    out: dict[str, float] = {}
    for label, cls in (("ours", CallMeBackTwilioSerializer), ("pipecat", TwilioFrameSerializer)):
        serializer = cls("MZ" + "0" * 32, params=params)
        await serializer.setup(StartFrame(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE))
        runs = []
        for _ in range(5):
            cpu0 = time.process_time()
            for _ in range(count):
                await serializer.deserialize(message)
            runs.append(1e6 * (time.process_time() - cpu0) / count)
        out[label] = statistics.median(runs)
    return out
