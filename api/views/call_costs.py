"""What a call costs right now, and what it went on, from the best source there is.

1. The call is live in this process: its `CallCostTracker` (every event, even
   ones not yet flushed, plus carrier minutes so far).
2. The call has closed books: its stored final breakdown.
3. Otherwise (live in another worker, or its process died): the stored
   events and the running total that every flush writes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from agent.books.events import stripe_fee_micros
from agent.books.money import usd
from agent.calls.lifecycle import CallLifecycle
from api.schemas import CallCostOut, CostDriverOut, CostEventOut, CostEventsOut, ServiceCostOut
from storage.calls import LIVE_STATUSES


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _pct(part: int, whole: int) -> float:
    return round(part * 100 / whole, 2) if whole > 0 else 0.0


def _services(breakdown: dict[str, dict[str, Any]]) -> dict[str, ServiceCostOut]:
    return {name: ServiceCostOut(cost_usd=usd(int(s["cost_micros"])), units={u: str(q) for u, q in s["units"].items()})
            for name, s in breakdown.items()}


def _from_events(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = totals.setdefault(row["service"], {"cost_micros": 0, "units": defaultdict(Decimal)})
        entry["cost_micros"] += int(row["cost_micros"])
        entry["units"][row["unit"]] += Decimal(row["quantity"])
    return dict(sorted(totals.items()))


async def call_cost(lifecycle: CallLifecycle, call: dict[str, Any]) -> CallCostOut:
    """The cost of `call` (a stored call row) as of now."""
    rt = lifecycle.rt
    limit = int(call["reserved_micros"])
    base = {"call_id": call["id"], "limit_usd": usd(limit), "limit_kind": call["limit_kind"], "as_of": _now()}
    session = lifecycle.live.get(call["id"])
    if session is not None and call["status"] != "ended":  # (a session whose books just closed is not live)
        tracker = session.tracker
        provisional = tracker.provisional_duration_micros()
        subtotal = tracker.subtotal_micros + provisional
        total = subtotal + tracker.fee_micros(subtotal)
        return CallCostOut(**base, status="live", live=True, source="live", total_usd=usd(total),
                           subtotal_usd=usd(tracker.subtotal_micros), stripe_fee_usd=usd(total - subtotal),
                           provisional_carrier_usd=usd(provisional), used_pct=_pct(total, limit),
                           amount_charged_usd=None, services=_services(tracker.breakdown()),
                           event_count=len(tracker.events), warnings=list(session.warnings))
    final = await rt.calls.breakdown(call["id"]) if call["status"] == "ended" else None
    if final is not None:
        return CallCostOut(**base, status=call["status"], live=False, source="final",
                           total_usd=usd(final["total_micros"]), subtotal_usd=usd(final["subtotal_micros"]),
                           stripe_fee_usd=usd(final["stripe_fee_micros"]), provisional_carrier_usd=usd(0),
                           used_pct=_pct(final["total_micros"], limit),
                           amount_charged_usd=usd(final["amount_charged_micros"]),
                           services=_services(final["services"]), event_count=len(await rt.calls.events(call["id"])))
    rows = await rt.calls.events(call["id"])
    subtotal = sum(int(r["cost_micros"]) for r in rows)
    fee = stripe_fee_micros(subtotal, rt.prices, charged=rt.settings.payments_enabled)
    total = max(int(call["spent_micros"]), subtotal + fee)  # the flushed total also counts minutes so far
    return CallCostOut(**base, status=call["status"], live=call["status"] in LIVE_STATUSES, source="stored",
                       total_usd=usd(total), subtotal_usd=usd(subtotal), stripe_fee_usd=usd(fee),
                       provisional_carrier_usd=usd(total - subtotal - fee), used_pct=_pct(total, limit),
                       amount_charged_usd=None, services=_services(_from_events(rows)), event_count=len(rows))


def _event_out(row: dict[str, Any]) -> CostEventOut:
    return CostEventOut(
        seq=row["seq"], service=row["service"], kind=row["kind"], vendor=row["vendor"], model=row["model"],
        unit=row["unit"], quantity=format(Decimal(row["quantity"]).normalize(), "f"),
        unit_price_usd=format(Decimal(row["unit_price"]).normalize(), "f"), cost_usd=usd(int(row["cost_micros"])),
        source=row["source"], price_version=row["price_version"], detail=row["detail"], created_at=row["created_at"])


async def call_cost_events(lifecycle: CallLifecycle, call: dict[str, Any]) -> CostEventsOut:
    """Every cost event of the call, and the drivers: "why was this call expensive?"."""
    session = lifecycle.live.get(call["id"])
    rows = [e.row() for e in session.tracker.events] if session is not None \
        else await lifecycle.rt.calls.events(call["id"])
    total = sum(int(r["cost_micros"]) for r in rows)
    drivers: dict[tuple[str, str, str, str], list[int]] = {}
    for row in rows:
        entry = drivers.setdefault((row["service"], row["kind"], row["vendor"], row["model"]), [0, 0])
        entry[0] += 1
        entry[1] += int(row["cost_micros"])
    ranked = sorted(drivers.items(), key=lambda item: (-item[1][1], item[0]))
    return CostEventsOut(
        call_id=call["id"], live=session is not None or call["status"] in LIVE_STATUSES, events_total_usd=usd(total),
        drivers=[CostDriverOut(service=s, kind=k, vendor=v, model=m, events=n, cost_usd=usd(c),
                               share_pct=_pct(c, total)) for (s, k, v, m), (n, c) in ranked],
        events=[_event_out(r) for r in rows])


async def cost_updates(lifecycle: CallLifecycle, call_id: str, *, interval: float) -> AsyncIterator[CallCostOut]:
    """The call's cost every `interval` seconds while it runs, then once more when it has ended.

    Reads the live tracker when this process holds the call and the database
    otherwise, so a stream works from any worker.
    """
    while True:
        call = await lifecycle.rt.calls.get(call_id)
        if call is None:
            return
        view = await call_cost(lifecycle, call)
        yield view
        if not view.live:
            return
        await asyncio.sleep(interval)
