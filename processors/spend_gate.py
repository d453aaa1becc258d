"""Two gates that ask the call's `SpendPlanner` before money is spent, not after.

- `LLMSpendGate` (right after the user aggregator): stops the caller's raw
  audio, which nothing downstream uses (a hop saved per frame for every later
  processor); keeps the conversation within its
  token budget (`ConversationWindow`: the prompt per turn stays flat on a
  long call), then prices each request's prompt and caps its
  `max_completion_tokens` at what the remaining budget can pay for (the reply's
  speech included); when not even a short reply fits, it does not run the LLM
  and the call says goodbye instead.
- `TTSSpendGate` (before the TTS): lets a reply through a whole sentence at a
  time, each priced before it reaches the TTS vendor; the first sentence that
  does not fit is not sent, nor anything after it, and the call says goodbye.
  A reply the LLM gate had to shorten ends with its last whole sentence, then
  the goodbye: the budget is spent.
  The TTS aggregates by sentence anyway, so the gate adds no delay of its own.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from loguru import logger
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    LLMUpdateSettingsFrame,
    TTSSpeakFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.llm import OpenAILLMService

from agent.books.spend import SpendPlanner
from agent.memory.conversation import ConversationWindow
from engines.tokenizer import count_tokens

TOKENS_PER_MESSAGE = 4
_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*(\s+|$)")


class LLMSpendGate(FrameProcessor):
    def __init__(self, planner: SpendPlanner, *, system_tokens: int, most_tokens: int,
                 out_of_budget: Callable[[], Awaitable[None]], window: ConversationWindow | None = None,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.window = window  # keeps the conversation resent with each request within its budget
        self._planner = planner
        self.system_tokens = system_tokens  # the system prompt and tools, resent with every request
        self._most = most_tokens
        self._current = most_tokens
        self._out_of_budget = out_of_budget

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            # The caller's raw audio has done its work by here (STT, VAD, smart-turn are before us) and
            # nothing after needs it: stopping it saves every later processor a hop every 20 ms.
            return
        if isinstance(frame, LLMContextFrame) and direction == FrameDirection.DOWNSTREAM:
            if self.window is not None and (kept := self.window.fit(frame.context.get_messages())) is not None:
                frame.context.set_messages(kept)
            tokens = self._planner.completion_tokens(self._prompt_tokens(frame), self._most)
            if tokens is None:
                logger.info("budget: not even a short reply fits; saying goodbye instead of answering")
                await self._out_of_budget()
                return
            if tokens != self._current:
                self._current = tokens
                await self.push_frame(LLMUpdateSettingsFrame(
                    delta=OpenAILLMService.Settings(max_completion_tokens=tokens)), direction)
        await self.push_frame(frame, direction)

    def _prompt_tokens(self, frame: LLMContextFrame) -> int:
        messages = frame.context.get_messages()
        return self.system_tokens + sum(count_tokens(_text(m)) + TOKENS_PER_MESSAGE for m in messages)


class TTSSpendGate(FrameProcessor):
    def __init__(self, planner: SpendPlanner, *, out_of_budget: Callable[..., Awaitable[None]],
                 **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._planner = planner
        self._out_of_budget = out_of_budget
        self._sentence = ""
        self._closed = False  # this reply ran out of budget: nothing more of it is spoken

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction != FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
        elif isinstance(frame, LLMTextFrame) and not frame.skip_tts:
            self._planner.generated(count_tokens(frame.text))
            if not self._closed:
                self._sentence += frame.text
                await self._release_sentences(final=False)
        elif isinstance(frame, LLMFullResponseEndFrame):
            # A reply shortened to what the budget pays for ends mid-sentence: that fragment is not said,
            # and with the budget spent the call says goodbye after the last whole sentence.
            await self._release_sentences(final=not self._planner.capped)
            self._sentence, self._closed = "", False
            await self.push_frame(frame, direction)
            if self._planner.capped:
                await self._out_of_budget(after_speech=True)
        elif isinstance(frame, (LLMFullResponseStartFrame, InterruptionFrame)):
            if isinstance(frame, InterruptionFrame):
                self._planner.interrupted()
            self._sentence, self._closed = "", False
            await self.push_frame(frame, direction)
        else:
            if isinstance(frame, TTSSpeakFrame):
                self._planner.spoken(len(frame.text))  # the greeting or an apology: billed like any speech
            await self.push_frame(frame, direction)

    async def _release_sentences(self, *, final: bool) -> None:
        while self._sentence and not self._closed:
            end = _SENTENCE_END.search(self._sentence)
            if end is None and not final:
                return
            cut = end.end() if end is not None else len(self._sentence)
            sentence, self._sentence = self._sentence[:cut], self._sentence[cut:]
            if not self._planner.may_say(len(sentence)):
                self._closed, self._sentence = True, ""
                logger.info(f"budget: the next sentence ({len(sentence)} characters) does not fit; stopping here")
                await self._out_of_budget(after_speech=True)
                return
            await self.push_frame(LLMTextFrame(sentence))


def _text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""
