"""Usage metrics in, priced cost events out.

Pipecat reports usage as `MetricsFrame`s (system frames travelling downstream):
STT audio seconds measured from the bytes the STT service sent, LLM tokens from
the vendor's usage chunk, TTS characters per chunk sent. This processor sits
after the output transport, where every service's metrics have passed, and
hands them to the call's ledger. Audio frames only cost it one type check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from loguru import logger
from pipecat.frames.frames import Frame, MetricsFrame
from pipecat.metrics.metrics import LLMUsageMetricsData, STTUsageMetricsData, TTSUsageMetricsData
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.books.events import Source


class CostRecorder(Protocol):
    """The slice of `CallCostTracker` the meter needs."""

    def track_stt(self, seconds: Decimal, *, model: str, vendor: str = ..., source: Source = ...) -> object: ...
    def track_tts(self, characters: int, *, model: str, vendor: str = ..., source: Source = ...) -> object: ...
    def track_llm(self, prompt_tokens: int, completion_tokens: int, *, vendor: str, model: str,
                  fallback_reason: str | None = None, source: Source = ...) -> object: ...


@dataclass(frozen=True)
class PricedAs:
    """How usage from one service is priced: which vendor's rate, which model, what source."""

    vendor: str
    model: str
    source: Source = Source.VENDOR


@dataclass
class MeterConfig:
    stt: PricedAs
    tts: PricedAs
    llms: dict[str, PricedAs]  # LLM service name -> pricing
    fallback_reasons: dict[str, str] = field(default_factory=dict)  # LLM service name -> why it is in use


class UsageMeter(FrameProcessor):
    def __init__(self, ledger: CostRecorder, config: MeterConfig, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._ledger = ledger
        self._config = config

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, MetricsFrame):
            for data in frame.data:
                try:
                    self._meter(data)
                except Exception as exc:  # a pricing gap must not kill the call; it is logged loudly
                    logger.error(f"metering failed for {data}: {exc}")
        await self.push_frame(frame, direction)

    def _meter(self, data: object) -> None:
        if isinstance(data, STTUsageMetricsData):
            seconds = Decimal(repr(data.value.audio_seconds)).quantize(Decimal("1e-6"))
            if seconds > 0:
                stt = self._config.stt
                self._ledger.track_stt(seconds, model=stt.model, vendor=stt.vendor, source=stt.source)
        elif isinstance(data, TTSUsageMetricsData):
            if data.value > 0:
                tts = self._config.tts
                self._ledger.track_tts(int(data.value), model=tts.model, vendor=tts.vendor, source=tts.source)
        elif isinstance(data, LLMUsageMetricsData):
            llm = self._config.llms.get(data.processor)
            if llm is None:
                raise LookupError(f"no pricing for LLM service {data.processor!r}")
            usage = data.value
            self._ledger.track_llm(usage.prompt_tokens, usage.completion_tokens, vendor=llm.vendor,
                                   model=llm.model, source=llm.source,
                                   fallback_reason=self._config.fallback_reasons.get(data.processor))
