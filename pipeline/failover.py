"""One LLM processor that owns every vendor's client and fails over within the turn.

Pipecat's `LLMSwitcher` runs each LLM in a branch of a parallel pipeline with
filters in front: every frame of the call (20 ms of audio at a time) passes
through both branches and their filters, so a fallback that is idle 99.9 % of
the time still costs every frame several hops. And its stock failover strategy
only moves on when a service becomes unusable, dropping the failed turn.

Here the LLM is one `OpenAILLMService` (Cerebras and OpenAI speak the same
wire) with a list of routes. A healthy call costs exactly one hop, as bare
Pipecat's single LLM does. When a request to the active route fails (a 5xx,
timeout, connection error, 429, or its key is refused) before the persona said
anything, the same request is sent to the next route at once, so the caller
still gets an answer to what they just said; the call stays on that route,
and the reason is recorded for the ledger. When every route fails a turn,
the next turn starts over from the first. If the persona had already spoken
part of the reply, the turn ends there (repeating its start would sound worse)
and the next turn uses the fallback. With no route left, or an error that
another vendor would give too (our request was wrong), the persona apologises
rather than leave the caller in silence.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from loguru import logger
from openai import AsyncOpenAI
from openai.types import CompletionUsage
from pipecat.frames.frames import TTSSpeakFrame
from pipecat.metrics.metrics import MetricsData
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.utils.errors import ErrorCategory, classify_http_exception

from processors.metering import PricedAs

#: Errors that say our request was wrong: another vendor would refuse it too.
NO_FAILOVER = {ErrorCategory.INVALID_REQUEST, ErrorCategory.APPLICATION}
APOLOGY = "Sorry, I lost my train of thought for a second. Could you say that again?"


@dataclass(frozen=True)
class LLMRoute:
    """One vendor the call can ask: its name on the ledger, how it is priced, its model and client."""

    name: str
    price: PricedAs
    model: str
    client: AsyncOpenAI
    #: Reads a prompt's start into the model ahead of the first request (a model in this process).
    prefill: Callable[[list[dict[str, str]]], Awaitable[None]] | None = None


class FailoverLLMService(OpenAILLMService):
    """`OpenAILLMService` over several routes, in order; usage is reported under the active route's name."""

    def __init__(self, routes: Sequence[LLMRoute], *, settings: OpenAILLMService.Settings,
                 on_route_change: Callable[[LLMRoute], None] | None = None, **kwargs: object) -> None:
        if not routes:
            raise ValueError("an LLM needs at least one route")
        self._routes = list(routes)  # set before the base class asks `create_client` for one
        self._active = 0
        self._spoke = False
        #: Route name -> why it became active (read by the usage meter).
        self.reasons: dict[str, str] = {}
        self.on_route_change = on_route_change
        settings.model = self._routes[0].model
        kwargs.setdefault("name", "llm")
        super().__init__(settings=settings, **kwargs)

    @property
    def route(self) -> LLMRoute:
        return self._routes[self._active]

    @property
    def routes(self) -> list[LLMRoute]:
        return list(self._routes)

    async def set_system_prompt(self, prompt: str) -> None:
        """A new system prompt for the requests that follow (memory written during the call); the same
        path as an `LLMUpdateSettingsFrame`, so Pipecat's composed instruction follows it."""
        await self._update_settings(OpenAILLMService.Settings(system_instruction=prompt))

    async def prefill(self) -> None:
        """Let the active route read the system prompt in now (while the greeting plays), if it can:
        a CPU model's first reply then only reads the caller's words. Never fails the call."""
        route = self.route
        if route.prefill is None:
            return
        try:
            await route.prefill([{"role": "system", "content": str(self._settings.system_instruction or "")}])
        except Exception as exc:
            logger.warning(f"{route.name} could not read the prompt in ahead of the first turn: {exc!r}")

    async def complete(self, messages: list[dict[str, str]], most_tokens: int
                       ) -> tuple[str, CompletionUsage | None, LLMRoute]:
        """A one-off completion on the active route (the call's running summary): its text, the usage
        the vendor reported (for the caller to meter: Pipecat's own out-of-band inference drops it)."""
        route = self.route
        response = await route.client.chat.completions.create(
            model=route.model, messages=messages, max_completion_tokens=most_tokens, temperature=0)
        return response.choices[0].message.content or "", response.usage, route

    def create_client(self, *args: object, **kwargs: object) -> AsyncOpenAI:
        return self.route.client

    def _sync_model_name_to_metrics(self) -> None:
        # Pipecat labels metrics with the processor's name; ours is the route's, so the meter prices it right.
        self.set_core_metrics_data(MetricsData(processor=self.route.name, model=str(self._settings.model)))

    async def _push_llm_text(self, text: str) -> None:
        self._spoke = True
        await super()._push_llm_text(text)

    async def _process_context(self, context: LLMContext) -> None:
        while True:
            self._spoke = False
            try:
                await super()._process_context(context)
                return
            except Exception as exc:
                if not self._fail_over(exc):
                    # No route can answer this turn: say so rather than leave the caller in silence.
                    await self.push_frame(TTSSpeakFrame(APOLOGY))
                    raise
                if self._spoke:
                    return  # part of the reply was said: the next turn goes to the fallback

    def _fail_over(self, exc: Exception) -> bool:
        """Make the next route active if this error warrants it; False leaves the error to Pipecat."""
        category = classify_http_exception(exc)
        if category in NO_FAILOVER:
            return False
        failed = self.route
        if self._active + 1 >= len(self._routes):
            logger.error(f"{failed.name} failed and no fallback is left: {exc}")
            if self._active:
                self._use(0)  # every route failed this turn: the next turn starts over from the first
            return False
        reason = f"{failed.name} {category.value}: {exc}"[:180]
        self._use(self._active + 1)
        self.reasons[self.route.name] = reason
        logger.warning(f"LLM failover to {self.route.name} ({reason})")
        return True

    def _use(self, index: int) -> None:
        self._active = index
        self._client = self.route.client
        self._settings.model = self.route.model
        self._sync_model_name_to_metrics()
        if self.on_route_change is not None:
            self.on_route_change(self.route)
