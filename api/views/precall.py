"""Before a call, in API shapes: the prompt it would start with, and what it will probably cost.

Both answer "what happens if I call now?" from the same inputs the call itself
uses (the user's memory, their memory token limit, their remaining budget),
so the preview and the estimate never disagree with the real call.
"""

from __future__ import annotations

from agent.books.budgets import LimitKind, budget_windows
from agent.books.money import format_usd, usd
from agent.calls import precall
from agent.calls.precall import memory_tokens, next_prompt
from agent.runtime import Runtime
from api.schemas import EstimateOut, PromptPreviewOut
from storage.reports import Reports


async def prompt_preview(rt: Runtime, user: dict, persona_row: dict) -> PromptPreviewOut:
    prompt = await next_prompt(rt, user, persona_row)
    return PromptPreviewOut(persona_id=persona_row["id"], prompt=prompt.prompt, token_count=prompt.token_count,
                            token_budget=prompt.token_budget, sections=prompt.parts, trimmed=prompt.trimmed)


async def estimate_next_call(rt: Runtime, user: dict, persona_row: dict, minutes: float,
                             direction: str) -> EstimateOut:
    """The pre-call estimate, with the memory this persona carries and the budget the call would get."""
    memory = memory_tokens(await next_prompt(rt, user, persona_row))
    estimate = precall.estimate(rt, persona_row, minutes, memory, direction)
    limit, kind = await _call_limit(rt, user)
    warnings = list(estimate.warnings)
    if limit < rt.budgets.min_call_micros:
        warnings.append(f"Your {_words(kind)} budget has only {format_usd(limit)} left: a call cannot start now.")
    elif estimate.total_micros > limit:
        warnings.append(f"This call would cost about {format_usd(estimate.total_micros)}, more than the "
                        f"{format_usd(limit)} your {_words(kind)} budget allows: it would be cut off early.")
    return EstimateOut(
        persona_id=persona_row["id"], minutes=minutes, direction=direction, memory_tokens=memory,
        services={k: usd(v) for k, v in estimate.services.items()}, subtotal_usd=usd(estimate.subtotal_micros),
        stripe_fee_usd=usd(estimate.stripe_fee_micros), total_usd=usd(estimate.total_micros),
        call_limit_usd=usd(limit), limit_kind=kind.value,
        within_budget=rt.budgets.min_call_micros <= limit and estimate.total_micros <= limit, warnings=warnings)


async def _call_limit(rt: Runtime, user: dict) -> tuple[int, LimitKind]:
    """The effective limit a call started now would get: the reservation's rule, read without reserving
    (no budget lock taken, so estimates never queue behind calls starting)."""
    settings = await rt.budgets.settings(user["id"])
    day_start, month_start = budget_windows(user["time_zone"])
    reports = Reports(rt.db)
    _spent, today = await reports.spending_since(user["id"], day_start)
    _spent, month = await reports.spending_since(user["id"], month_start)
    return min((settings.per_call_limit_micros, LimitKind.PER_CALL),
               (max(settings.daily_limit_micros - today, 0), LimitKind.DAILY),
               (max(settings.monthly_limit_micros - month, 0), LimitKind.MONTHLY), key=lambda pair: pair[0])


def _words(kind: LimitKind) -> str:
    return {LimitKind.PER_CALL: "per-call", LimitKind.DAILY: "daily", LimitKind.MONTHLY: "monthly"}[kind]
