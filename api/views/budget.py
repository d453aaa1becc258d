"""A user's budget settings as the API shows and changes them (dollars in, micro-dollars stored).

A change is merged onto the current settings and the *result* validated by
`BudgetSettings`, so rules between fields (daily at least per-call, monthly at
least daily) hold whichever fields one request changes; nothing is written
when they do not.
"""

from __future__ import annotations

from pydantic import ValidationError

from agent.books.budgets import BudgetManager, BudgetSettings
from agent.books.money import format_usd, parse_usd, usd
from agent.errors import InvalidInput
from api.schemas import BudgetIn, BudgetOut

_MONEY = {"per_call_limit_usd": "per_call_limit_micros", "daily_limit_usd": "daily_limit_micros",
          "monthly_limit_usd": "monthly_limit_micros"}


def budget_out(settings: BudgetSettings, minimum_call_micros: int) -> BudgetOut:
    data = settings.model_dump()
    out = {api: usd(data.pop(domain)) for api, domain in _MONEY.items()}
    return BudgetOut(**out, **data, minimum_call_usd=usd(minimum_call_micros))


async def read_budget(budgets: BudgetManager, user_id: str) -> BudgetOut:
    return budget_out(await budgets.settings(user_id), budgets.min_call_micros)


async def change_budget(budgets: BudgetManager, user_id: str, change: BudgetIn) -> BudgetOut:
    values = change.model_dump(exclude_unset=True)
    for api, domain in _MONEY.items():
        if api in values:
            values[domain] = parse_usd(values.pop(api))
    merged = {**(await budgets.settings(user_id)).model_dump(), **values}
    try:
        settings = BudgetSettings(**merged)
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc, rename={d: a for a, d in _MONEY.items()}) from None
    if settings.per_call_limit_micros < budgets.min_call_micros:  # every call would be refused with 402
        raise InvalidInput.at(("body", "per_call_limit_usd"),
                              f"must be at least {format_usd(budgets.min_call_micros)}, the minimum call",
                              "greater_than_equal")
    return budget_out(await budgets.save_settings(user_id, settings), budgets.min_call_micros)
