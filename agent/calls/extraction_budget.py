"""What the post-call memory extraction may spend: only what the call's limit leaves."""

from __future__ import annotations

from agent.calls.session import CallSession
from agent.memory.extraction import Affordable

EXTRACTION_MAX_TOKENS = 1500
MIN_EXTRACTION_TOKENS = 200  # an answer shorter than this is cut off mid-JSON: better retried later


def within_call_budget(session: CallSession) -> Affordable:
    """The post-call extraction is on this call's bill: it may spend only what the limit leaves.

    What it cannot afford now is retried later by reconciliation, uncharged, so the
    bill stays within the limit and the memories still arrive.
    """
    tracker = session.tracker

    def afford(vendor: str, model: str, prompt_tokens: int) -> int | None:
        prices = tracker.prices
        rate_in, rate_out = (prices.rate(vendor, "llm", model, unit) for unit in ("input_token", "output_token"))
        room = session.allowance.limit_micros - tracker.total_micros() - rate_in.cost_micros(prompt_tokens)
        per_token = rate_out.cost_micros(1_000_000) / 1_000_000
        most = int(room // per_token) if per_token > 0 else EXTRACTION_MAX_TOKENS
        # The card fee grows with the subtotal: leave it room too (3 % is above 2.9 %).
        most = min(int(most * 0.97) if tracker.card_fee else most, EXTRACTION_MAX_TOKENS)
        return most if most >= MIN_EXTRACTION_TOKENS else None

    return afford
