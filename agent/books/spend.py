"""Spend only what is left: price what is about to go to a vendor before it goes.

The ledger learns a cost after the vendor has billed it (usage comes back with
the answer), so a guard that only reads the ledger acts one reply too late. The
planner is asked *before* spending: how many tokens the next LLM request may
generate, and whether the next sentence may be sent to the TTS vendor. It
counts what is in flight (asked for but not yet on the ledger) and holds a
reserve from the start of the call for what the cutoff itself costs: the
goodbye's characters, and the carrier and STT minutes of the grace period.
So the call's total stays within its limit; only the watchdog's forced end,
which gives up waiting for the goodbye, can pass it, and then by no more than
the grace period's carrier minutes.

Pure and synchronous (no Pipecat, no I/O): the processors that host it call it
per request and per sentence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from agent.books.costs import CallCostTracker
from agent.books.events import Service, Source
from agent.books.pricing import PriceBook, Rate

GOODBYE_CHARACTERS = 120  # the longest goodbye BudgetDecision.message says
CHARACTERS_PER_TOKEN = 5  # a spoken reply's characters per completion token (English, generous)
MIN_REPLY_TOKENS = 24  # below this a reply is not worth starting: say goodbye instead


@dataclass(frozen=True)
class Rates:
    """The price-book rates of the units the planner weighs."""

    llm_input: Rate
    llm_output: Rate
    tts_character: Rate
    carrier_minute: Rate
    stt_second: Rate
    memory_write: Rate

    @classmethod
    def for_call(cls, prices: PriceBook, *, llm_vendor: str, llm_model: str, tts_vendor: str, tts_model: str,
                 stt_vendor: str, stt_model: str, direction: str) -> "Rates":
        return cls(prices.rate(llm_vendor, "llm", llm_model, "input_token"),
                   prices.rate(llm_vendor, "llm", llm_model, "output_token"),
                   prices.rate(tts_vendor, "tts", tts_model, "character"),
                   prices.rate("twilio", "voice", direction, "minute"),
                   prices.rate(stt_vendor, "stt", stt_model, "second"),
                   prices.rate("callmeback", "memory", "write", "operation"))


@dataclass
class SpendPlanner:
    tracker: CallCostTracker
    limit_micros: int
    rates: Rates
    grace_seconds: int
    phone: bool  # a phone call pays carrier minutes for its grace period; a room call does not
    enforce: bool = True  # the user's auto-cutoff: off, the planner only counts, it never stops a reply
    _llm_reserved: int = 0
    _llm_metered_at: int = 0
    _tts_sent: int = 0
    _tts_metered_at: int = 0
    exhausted: bool = field(default=False)
    capped: bool = field(default=False)  # the last LLM request was shortened to what the budget pays for
    # The outstanding LLM request: its prompt as we counted it, the tokens seen streaming, and whether
    # it was interrupted (a cancelled stream reports no usage, yet the vendor bills it).
    _request_prompt: int = 0
    _request_generated: int = 0
    _request_interrupted: bool = False
    llm_vendor: str = ""
    llm_model: str = ""

    def __post_init__(self) -> None:
        self._tts_metered_at = self._service_cost(Service.TTS)

    @property
    def reserve_micros(self) -> int:
        """Held back from the start of the call: what saying goodbye and hanging up costs.

        (The post-call memory extraction is priced when it runs, against what is left.)
        """
        goodbye = self.rates.tts_character.cost_micros(GOODBYE_CHARACTERS) + self.rates.memory_write.cost_micros(1)
        grace = self.rates.stt_second.cost_micros(self.grace_seconds)
        if self.phone:  # the minute in progress may end during the grace period: one more started minute
            grace += self.rates.carrier_minute.cost_micros(math.ceil(self.grace_seconds / 60) + 1)
        return goodbye + grace

    def headroom_micros(self) -> int:
        """What may still be spent: the limit, less the ledger, less what is in flight, less the reserve."""
        return self.limit_micros - self.tracker.running_total_micros() - self._in_flight() - self.reserve_micros

    def _service_cost(self, service: Service) -> int:
        return self.tracker.service_cost_micros(service)

    def _in_flight(self) -> int:
        llm = self._llm_reserved if self._service_cost(Service.LLM) == self._llm_metered_at else 0
        tts = max(self._tts_sent - (self._service_cost(Service.TTS) - self._tts_metered_at), 0)
        return llm + tts

    def completion_tokens(self, prompt_tokens: int, most: int) -> int | None:
        """The `max_completion_tokens` the next LLM request may have, or None: cut off instead.

        Each completion token is weighed with the characters it will become at the TTS.
        """
        self.settle_unreported()
        self._llm_reserved = 0  # the previous request's usage is on the ledger, or it was cancelled
        prompt = self.rates.llm_input.cost_micros(prompt_tokens)
        per_token = (self.rates.llm_output.cost_micros(1_000_000)
                     + self.rates.tts_character.cost_micros(CHARACTERS_PER_TOKEN * 1_000_000)) / 1_000_000
        room = self.headroom_micros() - prompt
        tokens = most if per_token <= 0 else min(most, int(room // per_token)) if room > 0 else 0
        if not self.enforce:
            tokens = most
        if tokens < MIN_REPLY_TOKENS:
            self.exhausted = True
            return None
        self.capped = tokens < most
        self._llm_reserved = prompt + self.rates.llm_output.cost_micros(tokens)
        self._llm_metered_at = self._service_cost(Service.LLM)
        self._request_prompt, self._request_generated, self._request_interrupted = prompt_tokens, 0, False
        return tokens

    def llm_switched_to(self, vendor: str, model: str) -> None:
        """The call failed over to another LLM: its replies are planned, and estimated, at that one's rates."""
        prices = self.tracker.prices
        self.rates = replace(self.rates, llm_input=prices.rate(vendor, "llm", model, "input_token"),
                             llm_output=prices.rate(vendor, "llm", model, "output_token"))
        self.llm_vendor, self.llm_model = vendor, model

    def generated(self, tokens: int) -> None:
        """Tokens of the outstanding request's reply, as they stream."""
        self._request_generated += tokens

    def interrupted(self) -> None:
        """The caller (or our cutoff) cut the reply short: its stream may end without usage."""
        if self._request_prompt:
            self._request_interrupted = True

    def settle_unreported(self, *, call_ended: bool = False) -> None:
        """An interrupted request whose usage never came: put our own count on the ledger, as estimated.

        At the end of the call a request that streamed text and reported nothing was cut off by the
        hang-up: billed too. (A request that failed before any text is the vendor's error, not billed.)
        """
        if call_ended and self._request_generated:
            self._request_interrupted = True
        if self._request_interrupted and self._service_cost(Service.LLM) == self._llm_metered_at:
            self.tracker.track_llm(self._request_prompt, self._request_generated, vendor=self.llm_vendor,
                                   model=self.llm_model, source=Source.ESTIMATED)
        self._request_prompt, self._request_generated, self._request_interrupted = 0, 0, False

    def spoken(self, characters: int) -> None:
        """Speech that is said whatever the budget (the greeting, a warning): in flight until metered."""
        self._tts_sent += self.rates.tts_character.cost_micros(characters)

    def may_say(self, characters: int) -> bool:
        """Whether a sentence of `characters` may go to the TTS vendor; if not, the call is out of budget."""
        cost = self.rates.tts_character.cost_micros(characters)
        if self.enforce and (self.exhausted or cost > self.headroom_micros()):
            self.exhausted = True
            return False
        self._tts_sent += cost
        return True
