"""What one live call carries through its life: who, what it may spend, its prompt, ledger and fence."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agent.accounts.personas import Persona
from agent.books.budgets import BudgetMonitor, CallAllowance
from agent.books.costs import CallCostTracker
from agent.memory.in_call import InCallMemory
from agent.memory.prompt import CompositePrompt
from agent.memory.transcript import Transcript
from storage.calls import CallStore
from storage.leases import Fence


@dataclass
class CallSession:
    """Everything a live call carries: who, what it may spend, its prompt and its ledger."""

    call_id: str
    direction: str
    user: dict
    persona: Persona
    allowance: CallAllowance
    prompt: CompositePrompt
    tracker: CallCostTracker
    monitor: BudgetMonitor
    memory_loaded: bool
    fence: Fence
    twilio_call_sid: str | None = None
    started_monotonic: float = field(default_factory=time.monotonic)
    ending: asyncio.Task | None = None  # the one task that closes this call's books
    # Set by whoever runs the call's media (server.py): stops the pipeline and the phone line.
    hang_up: Callable[[], Awaitable[None]] | None = None
    end_requested: str | None = None  # why someone asked this call to end (e.g. "operator_ended")
    transcript: Transcript = field(default_factory=Transcript)
    warnings: list[str] = field(default_factory=list)  # budget warnings said so far, for the room to show
    lease_lost: bool = False  # another worker took the call over: this one writes and says nothing more
    memory_tool: InCallMemory | None = None  # the persona's own writes to memory during the call
    # The newest memory deletion the prompt reflects; a newer one recomposes it (agent/calls/live_memory.py).
    memory_mark: int = 0
    # Set by the pipeline: use this prompt from the next turn on, and redact what was said with this.
    on_memory_deleted: Callable[[CompositePrompt, Callable[[str], str]], Awaitable[None]] | None = None

    def elapsed_seconds(self) -> int:
        return int(round(time.monotonic() - self.started_monotonic))


class FencedSink:
    """The ledger's sink for a live call: every write carries the call's fence."""

    def __init__(self, calls: CallStore, fence: Fence) -> None:
        self.calls, self.fence = calls, fence

    async def append_events(self, events: list[dict], spent: tuple[str, int] | None = None) -> None:
        await self.calls.append_events(events, spent, fence=self.fence)
