"""A user's spending today and this month, by service and by persona, beside their limits.

Days and months are the user's own (their time zone), the same windows the
budget checks use, so "remaining" here is what the next call can reserve.
"""

from __future__ import annotations

import datetime as dt

from agent.books.budgets import budget_windows
from agent.books.money import usd
from agent.runtime import Runtime
from api.schemas import CostSummaryOut, PeriodOut, PersonaSpendOut, ServiceSpendOut
from storage.reports import Reports


async def cost_summary(rt: Runtime, user: dict, *, now: dt.datetime | None = None) -> CostSummaryOut:
    reports = Reports(rt.db)
    settings = await rt.budgets.settings(user["id"])
    day_start, month_start = budget_windows(user["time_zone"], now)

    async def period(start: dt.datetime, limit: int) -> PeriodOut:
        spent, committed = await reports.spending_since(user["id"], start)
        return PeriodOut(starts_at=start, spent_usd=usd(spent), committed_usd=usd(committed), limit_usd=usd(limit),
                         remaining_usd=usd(max(limit - committed, 0)))

    by_service = await reports.cost_by_service_since(user["id"], month_start)
    return CostSummaryOut(
        time_zone=user["time_zone"] or "UTC",
        today=await period(day_start, settings.daily_limit_micros),
        this_month=await period(month_start, settings.monthly_limit_micros),
        per_call_limit_usd=usd(settings.per_call_limit_micros),
        by_service=[ServiceSpendOut(service=s, cost_usd=usd(m))
                    for s, m in sorted(by_service.items(), key=lambda kv: (-kv[1], kv[0]))],
        by_persona=[PersonaSpendOut(persona_id=p["persona_id"], name=p["name"], calls=p["calls"],
                                    spent_usd=usd(p["spent_micros"]))
                    for p in await reports.spending_by_persona_since(user["id"], month_start)],
        live_calls=await reports.live_call_count(user["id"]),
    )
