"""LLM failover that also answers the turn that failed.

Pipecat's stock failover strategy only moves on when a service becomes unusable
(bad credentials and the like) and drops the failed turn; a Cerebras 500,
timeout, connection error or 429 leaves the caller in silence. This strategy
switches on those transient errors too, re-runs the same turn on the fallback,
and records why, so the ledger can say which tokens were a fallback's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from loguru import logger
from pipecat.frames.frames import ErrorFrame
from pipecat.pipeline.service_switcher import ServiceSwitcherStrategyFailover
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.utils.errors import ErrorCategory

SWITCH_ON = {
    ErrorCategory.SERVER, ErrorCategory.CONNECTIVITY, ErrorCategory.RATE_LIMIT, ErrorCategory.QUOTA,
    ErrorCategory.UNKNOWN, ErrorCategory.AUTHENTICATION, ErrorCategory.AUTHORIZATION,
}


class RetryTurnFailover(ServiceSwitcherStrategyFailover):
    """Switch away from a failing LLM on any error that is not the caller's fault."""

    #: Set by the pipeline: re-runs the current turn on the now-active service.
    rerun_turn: Callable[[], Awaitable[None]] | None = None
    #: Set by the pipeline: says something to the caller when no LLM can answer.
    apologise: Callable[[], Awaitable[None]] | None = None
    #: Service name -> why it became active (read by the usage meter).
    reasons: dict[str, str]

    def __init__(self, services: list[FrameProcessor]) -> None:
        super().__init__(services)
        self.reasons = {}

    async def handle_error(self, error: ErrorFrame) -> FrameProcessor | None:
        failed = error.processor or self.active_service
        category = getattr(error, "category", None)
        if failed.is_usable and category not in SWITCH_ON:
            return None  # e.g. a request our own code got wrong: switching would not help
        candidates = [s for s in self.services if s is not failed and s.is_usable]
        if failed is not self.services[0] or not candidates:
            logger.error(f"{failed.name} failed and no fallback is left: {error.error}")
            if self.apologise is not None:
                await self.apologise()
            return None
        reason = f"{failed.name} {category.value if category else 'error'}: {error.error}"[:180]
        switched = await self._set_active_if_available(candidates[0])
        if switched is not None:
            self.reasons[switched.name] = reason
            logger.warning(f"LLM failover to {switched.name} ({reason})")
            if self.rerun_turn is not None:
                await self.rerun_turn()
        return switched
