"""The books of one call: every metered unit becomes a priced cost event.

`CallCostTracker` is called from the audio pipeline, so tracking is synchronous
and in memory; events reach the database in batches from a background flush
(never one round trip per frame), with retries so a database hiccup delays
events but never drops them. Totals are sums of integer micro-dollar events,
so the events, the breakdown and the final subtotal agree exactly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from loguru import logger

from agent.books.events import CostEvent, EventSink, FinalBreakdown, Service, ServiceTotal, Source, stripe_fee_micros
from agent.books.money import round_to_cent
from agent.books.pricing import PriceBook, Rate
from storage.leases import LeaseLost

HEARTBEAT_SECS = 10.0


class CallCostTracker:
    """The running ledger of one call."""

    def __init__(self, call_id: str, user_id: str, prices: PriceBook, sink: EventSink | None = None,
                 *, direction: str = "inbound", flush_interval: float = 1.0,
                 heartbeat_secs: float = HEARTBEAT_SECS, card_fee: bool = True,
                 on_lease_lost: Callable[[], Awaitable[None]] | None = None) -> None:
        self.call_id = call_id
        self.user_id = user_id
        self.prices = prices
        self.sink = sink
        self.direction = direction
        self.flush_interval = flush_interval
        self.heartbeat_secs = heartbeat_secs
        self.card_fee = card_fee  # payments on: the Stripe fee is part of what the caller pays
        self.on_lease_lost = on_lease_lost  # another worker owns the call now: stop spending
        self._events: list[CostEvent] = []
        self._pending: list[CostEvent] = []
        self._totals: dict[str, ServiceTotal] = defaultdict(ServiceTotal)
        self._subtotal = 0
        self._seq = 0
        self._started_monotonic: float | None = None
        self._duration_tracked = False
        self._flush_task: asyncio.Task | None = None
        self._flush_lock = asyncio.Lock()
        self._last_write = time.monotonic()
        self.finalized: FinalBreakdown | None = None
        self.listeners: list[Any] = []  # callables(tracker) after each event: the budget guard, live views

    # -- tracking -------------------------------------------------------

    def track_tts(self, characters: int, *, model: str, vendor: str = "elevenlabs",
                  source: Source = Source.VENDOR, detail: str | None = None) -> CostEvent:
        rate = self.prices.rate(vendor, "tts", model, "character")
        return self._record(Service.TTS, "tts_request", rate, characters, source, detail)

    def track_llm(self, prompt_tokens: int, completion_tokens: int, *, vendor: str, model: str,
                  fallback_reason: str | None = None, source: Source = Source.VENDOR,
                  kind: str = "ai_inference", service: Service = Service.LLM) -> list[CostEvent]:
        detail = f"fallback: {fallback_reason}" if fallback_reason else None
        rate_in = self.prices.rate(vendor, "llm", model, "input_token")
        rate_out = self.prices.rate(vendor, "llm", model, "output_token")
        _check_units(prompt_tokens, completion_tokens)
        return [
            self._record(service, kind, rate_in, prompt_tokens, source, detail),
            self._record(service, kind, rate_out, completion_tokens, source, detail),
        ]

    def track_stt(self, seconds: Decimal, *, model: str, vendor: str = "deepgram",
                  source: Source = Source.MEASURED) -> CostEvent:
        rate = self.prices.rate(vendor, "stt", model, "second")
        return self._record(Service.STT, "stt_chunk", rate, Decimal(seconds), source, None)

    def track_call_duration(self, seconds: int, *, source: Source = Source.VENDOR) -> CostEvent | None:
        """The carrier's minutes, priced per started minute; once per call."""
        _check_units(seconds)
        if self._duration_tracked:
            return None
        self._duration_tracked = True
        rate = self.prices.rate("twilio", "voice", self.direction, "minute")
        minutes = math.ceil(Decimal(seconds) / 60)
        return self._record(Service.TWILIO, "twilio_duration", rate, minutes, source, f"{seconds} s")

    def track_memory(self, operation: str, count: int = 1, *, source: Source = Source.ESTIMATED) -> CostEvent:
        rate = self.prices.rate("callmeback", "memory", operation, "operation")
        return self._record(Service.MEMORY, "memory_operation", rate, count, source, operation)

    def _record(self, service: Service, kind: str, rate: Rate, quantity: Decimal | int, source: Source,
                detail: str | None) -> CostEvent:
        if self.finalized is not None:
            raise RuntimeError(f"call {self.call_id} is finalised; no more costs can be added")
        quantity = Decimal(quantity)
        _check_units(quantity)
        self._seq += 1
        event = CostEvent(
            call_id=self.call_id, user_id=self.user_id, seq=self._seq, service=service.value, kind=kind,
            vendor=rate.vendor, model=rate.model, unit=rate.unit, quantity=quantity,
            unit_price=rate.unit_price, cost_micros=rate.cost_micros(quantity), source=Source(source).value,
            price_version=rate.version, detail=detail, created_at=dt.datetime.now(dt.timezone.utc),
        )
        self._apply(event)
        self._pending.append(event)
        for listener in self.listeners:
            listener(self)
        return event

    def _apply(self, event: CostEvent) -> None:
        self._events.append(event)
        total = self._totals[event.service]
        total.cost_micros += event.cost_micros
        total.units[event.unit] += event.quantity
        self._subtotal += event.cost_micros

    # -- reading --------------------------------------------------------

    @property
    def events(self) -> list[CostEvent]:
        return list(self._events)

    @property
    def subtotal_micros(self) -> int:
        """Sum of the recorded events."""
        return self._subtotal

    def mark_started(self) -> None:
        self._started_monotonic = time.monotonic()

    def provisional_duration_micros(self) -> int:
        """Carrier minutes accrued so far but not yet reported by the carrier."""
        if self._duration_tracked or self._started_monotonic is None:
            return 0
        elapsed = Decimal(time.monotonic() - self._started_monotonic)
        rate = self.prices.rate("twilio", "voice", self.direction, "minute")
        return rate.cost_micros(math.ceil(elapsed / 60) if elapsed > 0 else 0)

    def service_cost_micros(self, service: Service) -> int:
        """What one service has cost so far (its events on the ledger)."""
        total = self._totals.get(service.value)
        return total.cost_micros if total is not None else 0

    def total_micros(self) -> int:
        """Events plus the Stripe fee: what finalising now would make the total."""
        return self._subtotal + self.fee_micros(self._subtotal)

    def running_total_micros(self) -> int:
        """What the user would pay if the call ended now: events, minutes so far, Stripe fee."""
        subtotal = self._subtotal + self.provisional_duration_micros()
        return subtotal + self.fee_micros(subtotal)

    def fee_micros(self, subtotal_micros: int) -> int:
        return stripe_fee_micros(subtotal_micros, self.prices, charged=self.card_fee)

    def breakdown(self) -> dict[str, dict[str, Any]]:
        return {service: total.as_dict() for service, total in sorted(self._totals.items())}

    # -- persistence ----------------------------------------------------

    def start(self) -> None:
        """Begin the periodic background flush (call from a running event loop)."""
        if self._flush_task is None and self.sink is not None:
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        delay = self.flush_interval
        while True:
            await asyncio.sleep(delay)
            try:
                # A quiet call still writes now and then: its heartbeat says it is alive.
                await self.flush(heartbeat=time.monotonic() - self._last_write >= self.heartbeat_secs)
                delay = self.flush_interval
            except LeaseLost as exc:
                logger.warning(f"call {self.call_id}: {exc}; this worker stops the call")
                if self.on_lease_lost is not None:
                    await self.on_lease_lost()
                return
            except Exception as exc:  # keep the events; try again, more slowly (within a heartbeat)
                delay = min(delay * 2, max(self.heartbeat_secs, self.flush_interval))
                logger.warning(f"call {self.call_id}: cost flush failed ({exc}); retrying in {delay:.0f} s")

    async def flush(self, *, heartbeat: bool = False) -> None:
        """Persist pending events with the running total. On failure nothing is lost."""
        if self.sink is None:
            return
        async with self._flush_lock:
            batch = self._pending
            if not batch and not heartbeat:
                return
            self._pending = []
            try:
                await self.sink.append_events([e.row() for e in batch], (self.call_id, self.running_total_micros()))
                self._last_write = time.monotonic()
            except BaseException:
                self._pending = batch + self._pending
                raise

    async def _stop_flushing(self) -> None:
        """Stop the background flush (from outside it: a lost lease may stop it from within)."""
        task, self._flush_task = self._flush_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def close_quietly(self) -> None:
        """Stop the background flush and write nothing more (the call is another worker's now)."""
        await self._stop_flushing()
        self._pending = []

    async def close(self, *, attempts: int = 5) -> None:
        """Stop the background flush and write everything that is left, retrying."""
        await self._stop_flushing()
        for attempt in range(attempts):
            try:
                await self.flush()
                return
            except LeaseLost:
                raise
            except Exception as exc:
                if attempt == attempts - 1:
                    raise
                logger.warning(f"call {self.call_id}: final cost flush failed ({exc}); retrying")
                await asyncio.sleep(0.2 * 2**attempt)

    # -- the end --------------------------------------------------------

    def finalize(self, *, amount_charged_micros: int | None = None) -> FinalBreakdown:
        """Close the books: subtotal, Stripe fee, total and margin.

        `amount_charged_micros` is what was actually captured; by default the
        total rounded half-up to a cent (what would be charged).
        """
        if self.finalized is not None:
            return self.finalized
        subtotal = self._subtotal
        fee = self.fee_micros(subtotal)
        total = subtotal + fee
        charged = round_to_cent(total) if amount_charged_micros is None else amount_charged_micros
        self.finalized = FinalBreakdown(
            call_id=self.call_id, services=self.breakdown(), subtotal_micros=subtotal, stripe_fee_micros=fee,
            total_micros=total, amount_charged_micros=charged, profit_margin_micros=charged - total,
            price_version=self.prices.version, finalized_at=dt.datetime.now(dt.timezone.utc),
        )
        return self.finalized

    @classmethod
    def from_events(cls, call_id: str, user_id: str, prices: PriceBook, rows: list[dict[str, Any]],
                    sink: EventSink | None = None, *, direction: str = "inbound",
                    card_fee: bool = True) -> "CallCostTracker":
        """Rebuild a ledger from stored events (start-up reconciliation after a crash)."""
        tracker = cls(call_id, user_id, prices, sink, direction=direction, card_fee=card_fee)
        for row in sorted(rows, key=lambda r: r["seq"]):
            event = CostEvent.from_row(row)
            tracker._apply(event)
            tracker._seq = max(tracker._seq, event.seq)
            if event.kind == "twilio_duration":
                tracker._duration_tracked = True
        return tracker


def _check_units(*quantities: Decimal | int) -> None:
    for quantity in quantities:
        if quantity < 0:
            raise ValueError(f"units must not be negative (got {quantity})")
