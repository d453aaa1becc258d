"""The ledger's vocabulary: cost events, their sources and services, a call's final breakdown.

Kept apart from the tracker that records them (agent/books/costs.py) because
the API, the bill, reconciliation and the meter all speak these types
without recording anything.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from agent.books.money import round_micros
from agent.books.pricing import PriceBook


class Source(StrEnum):
    MEASURED = "measured"  # counted by us from what we sent or received
    VENDOR = "vendor"  # reported by the vendor (usage chunk, call duration)
    ESTIMATED = "estimated"  # derived: an estimate, or a local engine priced as the vendor would


class Service(StrEnum):
    TWILIO = "twilio"
    STT = "stt"
    LLM = "llm"
    TTS = "tts"
    MEMORY = "memory"


@dataclass(frozen=True)
class CostEvent:
    call_id: str
    user_id: str
    seq: int
    service: str
    kind: str
    vendor: str
    model: str
    unit: str
    quantity: Decimal
    unit_price: Decimal
    cost_micros: int
    source: str
    price_version: str
    detail: str | None
    created_at: dt.datetime

    def row(self) -> dict[str, Any]:
        data = asdict(self)
        data["quantity"] = str(self.quantity)
        data["unit_price"] = str(self.unit_price)
        return data

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "CostEvent":
        fields = {k: row[k] for k in cls.__dataclass_fields__}
        fields["quantity"] = Decimal(row["quantity"])
        fields["unit_price"] = Decimal(row["unit_price"])
        return cls(**fields)


@dataclass
class ServiceTotal:
    cost_micros: int = 0
    units: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    def as_dict(self) -> dict[str, Any]:
        return {"cost_micros": self.cost_micros, "units": {u: str(q) for u, q in sorted(self.units.items())}}


@dataclass(frozen=True)
class FinalBreakdown:
    call_id: str
    services: dict[str, dict[str, Any]]
    subtotal_micros: int
    stripe_fee_micros: int
    total_micros: int
    amount_charged_micros: int
    profit_margin_micros: int
    price_version: str
    finalized_at: dt.datetime


class EventSink(Protocol):
    """Where events go: the call store, or anything that persists them."""

    async def append_events(self, events: list[dict[str, Any]], spent: tuple[str, int] | None = None) -> None:
        """Persist; raises `storage.leases.LeaseLost` if this process no longer owns the call."""


def stripe_fee_micros(subtotal_micros: int, prices: PriceBook, *, charged: bool = True) -> int:
    """Seed rule: 2.9% + 30¢ of the subtotal; nothing to charge, or payments off, means no fee.

    `charged` is whether this server charges cards at all (STRIPE_SECRET_KEY):
    a fee nobody pays must not count against anyone's budget.
    """
    if subtotal_micros <= 0 or not charged:
        return 0
    percent = prices.rate("stripe", "payments", "card", "percent")
    fixed = prices.rate("stripe", "payments", "card", "charge")
    return round_micros(Decimal(subtotal_micros) * percent.price / percent.per) + fixed.cost_micros(1)
