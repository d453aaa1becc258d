"""The pre-call estimate: what a call of N minutes will probably cost.

The assumptions are constants below, stated in plain numbers so users and
operators can check them; `docs/costs.md` explains them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

from agent.books.events import stripe_fee_micros
from agent.books.pricing import PriceBook

TURNS_PER_MINUTE = 4  # caller + persona exchanges per minute
BASE_PROMPT_TOKENS = 350  # instructions beyond the memory context
HISTORY_TOKENS_PER_TURN = 60  # each earlier exchange stays in the context
REPLY_TOKENS = 45  # a short spoken reply
TTS_CHARACTERS_PER_MINUTE = 370  # persona speaks ~45% of the time at ~150 words a minute
EXTRACTION_OUTPUT_TOKENS = 400  # the post-call memory update
TRANSCRIPT_TOKENS_PER_MINUTE = 280
LARGE_MEMORY_TOKENS = 2000


@dataclass(frozen=True)
class CostEstimate:
    minutes: Decimal
    memory_tokens: int
    services: dict[str, int]  # micro-dollars per service
    subtotal_micros: int
    stripe_fee_micros: int
    total_micros: int
    warnings: list[str] = field(default_factory=list)


def estimate_call_cost(minutes: Decimal | int | float | str, memory_tokens: int, *, prices: PriceBook,
                       llm_vendor: str = "cerebras", llm_model: str = "gpt-oss-120b",
                       stt_model: str = "nova-3-general", tts_model: str = "eleven_flash_v2_5",
                       direction: str = "inbound", card_fee: bool = True) -> CostEstimate:
    """Per-service estimate with the Stripe fee; warns when the memory context is large."""
    minutes = Decimal(str(minutes))
    if minutes <= 0 or minutes > 600:
        raise ValueError("minutes must be more than 0 and at most 600")
    if memory_tokens < 0:
        raise ValueError("memory_tokens must not be negative")

    turns = math.ceil(minutes * TURNS_PER_MINUTE)
    # Every turn resends the system prompt plus the conversation so far.
    prompt_tokens = sum(memory_tokens + BASE_PROMPT_TOKENS + HISTORY_TOKENS_PER_TURN * i for i in range(turns))
    completion_tokens = turns * REPLY_TOKENS
    extraction_in = memory_tokens + math.ceil(minutes * TRANSCRIPT_TOKENS_PER_MINUTE)

    llm_in = prices.rate(llm_vendor, "llm", llm_model, "input_token")
    llm_out = prices.rate(llm_vendor, "llm", llm_model, "output_token")
    services = {
        "twilio": prices.rate("twilio", "voice", direction, "minute").cost_micros(math.ceil(minutes)),
        "stt": prices.rate("deepgram", "stt", stt_model, "second").cost_micros(minutes * 60),
        "llm": llm_in.cost_micros(prompt_tokens) + llm_out.cost_micros(completion_tokens),
        "tts": prices.rate("elevenlabs", "tts", tts_model, "character").cost_micros(
            math.ceil(minutes * TTS_CHARACTERS_PER_MINUTE)),
        "memory": prices.rate("callmeback", "memory", "read", "operation").cost_micros(1)
        + prices.rate("callmeback", "memory", "write", "operation").cost_micros(1)
        + llm_in.cost_micros(extraction_in) + llm_out.cost_micros(EXTRACTION_OUTPUT_TOKENS),
    }
    subtotal = sum(services.values())
    fee = stripe_fee_micros(subtotal, prices, charged=card_fee)
    warnings = []
    if memory_tokens > LARGE_MEMORY_TOKENS:
        share = llm_in.cost_micros(memory_tokens * turns)
        warnings.append(
            f"This persona remembers a lot ({memory_tokens} tokens of memory): resending it every turn "
            f"adds about ${Decimal(share) / 1_000_000:.4f} to this call. Deleting old memories makes calls cheaper."
        )
    return CostEstimate(minutes, memory_tokens, services, subtotal, fee, subtotal + fee, warnings)
