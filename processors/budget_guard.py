"""The budget guard: says the warning, and at the cutoff says goodbye and ends the call.

It reads the running total from the call's ledger (in memory) whenever a cost
is recorded and at least once a second (carrier minutes accrue with no event),
and asks the domain's `BudgetMonitor` what to do:

- warn: one short sentence with the amount, waiting until neither the caller
  nor the persona is speaking; it counts as heard once it has played out (on
  Twilio, once its playback mark comes back), and if the caller talks over it,
  it is said once more when it is quiet again;
- cut off: interrupt any reply in progress, stop taking turns (STT muted), say
  goodbye, wait until the goodbye has actually been heard (a Twilio `mark`
  echoed back, where the transport has one), then `EndWorkerFrame`.

A watchdog that does not depend on the pipeline ends the call by force if it
is still alive when the grace period runs out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndWorkerFrame,
    Frame,
    InterruptionWorkerFrame,
    StartFrame,
    STTMuteFrame,
    SystemFrame,
    TTSSpeakFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.books.budgets import Action, BudgetDecision, BudgetMonitor
from agent.books.spend import SpendPlanner

MAX_WARNING_TRIES = 2  # said once, and once more if the caller talked over it
SPEECH_START_SECS = 3.0  # a reply sent to the TTS starts playing within this, or the goodbye comes anyway
SPEECH_WAIT_SECS = 30.0  # the longest a paid-for reply is let finish before the goodbye


class RunningTotal(Protocol):
    listeners: list

    def running_total_micros(self) -> int: ...


class PlaybackMarkFrame(SystemFrame):
    """The transport confirms that audio queued before a named mark has been played."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class BudgetGuard(FrameProcessor):
    def __init__(
        self,
        ledger: RunningTotal,
        monitor: BudgetMonitor,
        *,
        force_end: Callable[[str], Awaitable[None]],
        mark_frame: Callable[[str], Frame] | None = None,
        check_interval: float = 1.0,
        planner: SpendPlanner | None = None,
        on_warning: Callable[[str], None] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self._ledger = ledger
        self._monitor = monitor
        self._force_end = force_end
        self._mark_frame = mark_frame
        self._check_interval = check_interval
        self._planner = planner  # what is left after what is in flight and the goodbye's reserve
        self._on_warning = on_warning  # shows the warning where the call is followed (the room)
        self._wake = asyncio.Event()
        self._pending_warning: BudgetDecision | None = None
        self._user_speaking = False
        self._bot_speaking = False
        self._goodbye_started = False
        self._goodbye_heard = asyncio.Event()
        self._checker: asyncio.Task | None = None
        self._after_speech: asyncio.Task | None = None
        self._speech_done = asyncio.Event()
        self._speech_started = asyncio.Event()
        self._ending: asyncio.Task | None = None
        self._watchdog: asyncio.Task | None = None
        self.warnings_spoken: list[str] = []
        self.warnings_heard: list[str] = []
        self._warning: BudgetDecision | None = None  # said, not yet known to be heard
        self._warning_playing = False
        self._warning_tries = 0
        self.cutoff: BudgetDecision | None = None
        ledger.listeners.append(lambda _ledger: self._wake.set())

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame) and self._checker is None:
            self._checker = self.create_task(self._check_loop(), "budget-check")
        elif isinstance(frame, UserStartedSpeakingFrame):
            self._user_speaking = True
            self._warning_talked_over()
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._user_speaking = False
            await self._maybe_speak_warning()
        elif isinstance(frame, BotStartedSpeakingFrame) and direction == FrameDirection.DOWNSTREAM:
            self._bot_speaking = True
            self._speech_started.set()
            self._warning_playing = self._warning is not None
            if self.cutoff is not None:
                self._goodbye_started = True
        elif isinstance(frame, BotStoppedSpeakingFrame) and direction == FrameDirection.DOWNSTREAM:
            self._bot_speaking = False
            self._speech_done.set()
            if self._goodbye_started and self._ending is None:
                self._ending = self.create_task(self._end_after_goodbye(), "budget-goodbye")
            else:
                await self._warning_played()
                await self._maybe_speak_warning()
        elif isinstance(frame, PlaybackMarkFrame) and frame.name == "goodbye":
            self._goodbye_heard.set()
        elif isinstance(frame, PlaybackMarkFrame) and frame.name == "warning":
            self._warning_heard()
        await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        await super().cleanup()
        for task in (self._checker, self._after_speech):
            if task is not None:
                await self.cancel_task(task)
        self._checker = self._after_speech = None

    async def _check_loop(self) -> None:
        while self.cutoff is None:
            try:
                await asyncio.wait_for(self._wake.wait(), self._check_interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            spent = self._ledger.running_total_micros()
            if self._planner is not None and self._planner.enforce and self._planner.headroom_micros() <= 0:
                await self.out_of_budget()  # minutes and speech so far leave only the goodbye's reserve
                continue
            decision = self._monitor.evaluate(spent)
            if decision.action == Action.WARN:
                self._pending_warning = decision
                await self._maybe_speak_warning()
            elif decision.action == Action.CUTOFF:
                await self._cut_off(decision)

    async def out_of_budget(self, *, after_speech: bool = False) -> None:
        """A gate found the budget spent before the next request or sentence: cut off.

        `after_speech`: what was already sent to the TTS (paid for) is heard first; the
        goodbye follows once the persona stops speaking (or in a few seconds if it never starts).
        """
        if after_speech:
            if self._after_speech is None and self.cutoff is None:
                self._after_speech = self.create_task(self._cut_off_after_speech(), "budget-after-speech")
            return
        decision = self._monitor.out_of_budget(self._ledger.running_total_micros())
        if decision is not None:
            await self._cut_off(decision)

    async def _cut_off_after_speech(self) -> None:
        self._speech_done.clear()
        try:
            if not self._bot_speaking:  # the paid-for sentences are still on their way to the caller
                self._speech_started.clear()
                await asyncio.wait_for(self._speech_started.wait(), SPEECH_START_SECS)
            await asyncio.wait_for(self._speech_done.wait(), SPEECH_WAIT_SECS)
        except asyncio.TimeoutError:
            pass
        await self.out_of_budget()

    def _warning_talked_over(self) -> None:
        """The caller spoke while the warning was due to play: say it once more when it is quiet."""
        if self._warning is None:
            return
        decision, self._warning, self._warning_playing = self._warning, None, False
        if self._warning_tries < MAX_WARNING_TRIES:
            logger.info("budget warning talked over; it is said again when it is quiet")
            self._pending_warning = decision

    async def _warning_played(self) -> None:
        """The warning's audio has played out; on Twilio, heard once the mark queued after it comes back."""
        if self._warning is None or not self._warning_playing:
            return
        if self._mark_frame is not None and self.pipeline_worker is not None:
            await self.pipeline_worker.queue_frame(self._mark_frame("warning"))
        else:
            self._warning_heard()

    def _warning_heard(self) -> None:
        if self._warning is not None:
            self.warnings_heard.append(self._warning.message)
            self._warning, self._warning_playing = None, False

    async def _maybe_speak_warning(self) -> None:
        if self._pending_warning is None or self._user_speaking or self._bot_speaking or self.cutoff:
            return
        decision, self._pending_warning = self._pending_warning, None
        self._warning, self._warning_playing = decision, False
        self._warning_tries += 1
        logger.info(f"budget warning: {decision.message}")
        self.warnings_spoken.append(decision.message)
        if self._on_warning is not None:
            self._on_warning(decision.message)
        if self._planner is not None:
            self._planner.spoken(len(decision.message))
        await self.push_frame(TTSSpeakFrame(decision.message), FrameDirection.UPSTREAM)

    async def _cut_off(self, decision: BudgetDecision) -> None:
        self.cutoff = decision
        grace = self._monitor.allowance.grace_period_seconds
        logger.info(f"budget cutoff at {decision.spent_micros} micro-dollars: ending within {grace} s")
        self._watchdog = asyncio.get_running_loop().create_task(self._watch(grace))
        await self.push_frame(InterruptionWorkerFrame(), FrameDirection.UPSTREAM)
        await self.push_frame(STTMuteFrame(mute=True), FrameDirection.UPSTREAM)
        goodbye = TTSSpeakFrame(decision.message)
        goodbye.interruptible = False
        await self.push_frame(goodbye, FrameDirection.UPSTREAM)

    async def _end_after_goodbye(self) -> None:
        """End once the caller has heard the goodbye (not merely once we sent it)."""
        if self._mark_frame is not None and self.pipeline_worker is not None:
            await self.pipeline_worker.queue_frame(self._mark_frame("goodbye"))
            try:
                await asyncio.wait_for(self._goodbye_heard.wait(), 5.0)
            except asyncio.TimeoutError:
                logger.warning("no playback mark for the goodbye; ending anyway")
        await self.push_frame(EndWorkerFrame(reason="budget cutoff"))

    async def _watch(self, grace: float) -> None:
        await asyncio.sleep(grace)
        worker = self.pipeline_worker
        if worker is not None and not worker.has_finished():
            logger.warning(f"call still alive {grace} s after the budget cutoff: ending it by force")
            await self._force_end("budget cutoff watchdog")
