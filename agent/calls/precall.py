"""Before a call: the prompt it would start with, what it will probably cost, and how long it may last.

The pre-call estimate (`GET /api/estimate`) and the carrier's time limit of a
"call me back" come from the same function with the same inputs (the persona's
models, the memory its prompt carries, whether card fees apply), so Twilio's
`TimeLimit` is exactly the longest call the estimate says the budget buys.
"""

from __future__ import annotations

from decimal import Decimal

from agent.accounts.personas import Persona
from agent.books.estimate import CostEstimate, estimate_call_cost
from agent.engines import prompt_budgets
from agent.memory.prompt import CompositePrompt, build_composite_prompt, count_tokens
from agent.runtime import Runtime

MAX_TIME_LIMIT_SECS = 4 * 3600  # Twilio's own ceiling
MIN_TIME_LIMIT_SECS = 60


async def next_prompt(rt: Runtime, user: dict, persona_row: dict) -> CompositePrompt:
    """The composite prompt the next call between this user and persona would use."""
    budget = await rt.budgets.settings(user["id"])
    return await build_composite_prompt(rt.memory, user, Persona.from_row(persona_row),
                                        prompt_budgets(rt.settings)[0], memory_token_limit=budget.memory_token_limit)


def memory_tokens(prompt: CompositePrompt) -> int:
    """What the persona's memory adds to every turn's prompt (the core identity aside)."""
    return max(prompt.token_count - count_tokens(prompt.parts["core_identity"]), 0)


def estimate(rt: Runtime, persona_row: dict, minutes: Decimal | float | int | str, memory: int,
             direction: str) -> CostEstimate:
    s = rt.settings
    return estimate_call_cost(
        minutes, memory, prices=rt.prices, llm_model=persona_row["llm_model"] or s.cerebras_model,
        stt_model=s.deepgram_model, tts_model=persona_row["tts_model"] or s.elevenlabs_model, direction=direction,
        card_fee=s.payments_enabled)


def carrier_time_limit(rt: Runtime, persona_row: dict, memory: int, limit_micros: int, grace_seconds: int,
                       direction: str = "outbound") -> int:
    """Twilio's `TimeLimit`: the longest call the budget buys by the estimate, less the grace period.

    The estimate grows with every second (minutes, turns, a prompt that grows), so
    the longest affordable call is found by bisection over whole seconds; the grace
    period is held back for the goodbye, which our own cutoff says before Twilio would drop the line.
    """
    def fits(seconds: int) -> bool:
        return seconds == 0 or estimate(rt, persona_row, Decimal(seconds) / 60, memory,
                                        direction).total_micros <= limit_micros

    low, high = 0, MAX_TIME_LIMIT_SECS + grace_seconds
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return min(max(low - grace_seconds, MIN_TIME_LIMIT_SECS), MAX_TIME_LIMIT_SECS)
